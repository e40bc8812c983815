"""`tinyaudio align`: a transcript the user has, timed word by word; the text spread over speech regions; bad
input refused before model work; openai-whisper's option spellings accepted by `transcribe`."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import srt
from conftest import compose, espeak, need
from tinystack import build_checkpoint
from typer.testing import CliRunner

from tinyaudio_cli.cli.app import app, whisper_style
from tinyaudio_cli.inference.align import read_text, spread_words

REALSTACK = Path(os.environ.get("TINYAUDIO_REALSTACK_DIR", Path.home() / ".cache" / "tinyaudio" / "realstack"))
BASES = (
    f"openai/whisper-tiny.en={REALSTACK / 'whisper-tiny.en'},"
    f"HuggingFaceTB/SmolLM2-135M-Instruct={REALSTACK / 'smollm2-135m-instruct'}"
)
SENTENCES = ["We will meet at two on Saturday.", "Where did you put the dark table?", "Please bring the report."]


def tinyaudio(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tinyaudio_cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        timeout=600,
    )


def test_words_are_spread_over_regions_in_order_by_their_rough_transcripts():
    words = [
        "We",
        "will",
        "meet",
        "at",
        "two",
        "on",
        "Saturday.",
        "Where",
        "did",
        "you",
        "put",
        "the",
        "dark",
        "table?",
    ]
    rough = ["we will meat at to on saturday", "where did you put the dog table"]
    shares = spread_words(words, rough)
    assert shares == [words[:7], words[7:]]
    # a word Whisper missed goes with its neighbours; an empty region gets nothing
    assert spread_words(["a", "b", "c"], ["a", "", "c"]) == [["a", "b"], [], ["c"]]


def test_text_files_and_subtitles_give_their_words(tmp_path):
    plain = tmp_path / "a.txt"
    plain.write_text("Hello   there,\nworld.\n")
    assert read_text(plain) == "Hello there, world."
    subtitles = tmp_path / "a.srt"
    subtitles.write_text(
        "1\n00:00:01,000 --> 00:00:02,000\n<i>Hello</i> there,\n\n2\n00:00:02,500 --> 00:00:03,000\nworld.\n"
    )
    assert read_text(subtitles) == "Hello there, world."


def test_whisper_option_spellings_are_ours():
    argv = ["transcribe", "a.wav", "--output_format", "srt", "--output_dir=out", "--word_timestamps", "True"]
    argv += ["--highlight_words", "False", "--max_line_width", "30", "--max_words_per_line=5"]
    assert whisper_style(argv) == [
        "transcribe", "a.wav", "--format", "srt", "--output-dir=out", "--word-timestamps",
        "--max-line-width", "30", "--max-words-per-line=5",
    ]  # fmt: skip
    assert whisper_style(["transcribe", "--", "--output_dir"]) == ["transcribe", "--", "--output_dir"]  # a file name


@pytest.mark.slow  # a process of its own: the spellings are translated in main()
def test_a_whisper_style_command_line_runs(tmp_path, source_wav):
    checkpoint = build_checkpoint(tmp_path / "stack", "smollm3")
    result = tinyaudio(
        "transcribe", source_wav, "-m", checkpoint, "--max-new-tokens", "2", "--output_format", "srt",
        "--output_dir", tmp_path / "out", "--word_timestamps", "False", "--max_line_width", "30",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "source.srt").is_file()


def test_bad_align_input_is_one_line_before_any_model_work(tmp_path, source_wav):
    unloadable = tmp_path / "no-model"  # never loaded: every case fails before model work
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = [
        (("align", folder, source_wav), 2, "a folder takes no TEXT"),
        (("align", source_wav, "-f", "txt"), 2, "align writes json, srt, vtt, tsv"),
        (("align", tmp_path / "missing.wav"), 2, "does not exist"),
        (("align", source_wav, "-o", tmp_path / "out"), 1, "no text source.txt to align"),
    ]
    for args, code, message in cases:
        result = CliRunner().invoke(app, [*map(str, args), "-m", str(unloadable)])
        assert result.exit_code == code, (args, result.output)
        assert message in result.output and "no-model" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback


@pytest.mark.slow
@pytest.mark.skipif(not (REALSTACK / "BUILD_INFO.json").is_file(), reason=f"real bases not built at {REALSTACK}")
def test_align_times_a_script_and_warns_on_text_that_does_not_belong(tmp_path):
    need("espeak-ng")
    pieces: list = [0.5]
    for sentence in SENTENCES:
        pieces += [espeak(tmp_path, sentence, speed=150), 1.25]
    speech = compose(tmp_path, "talk", pieces)
    talk, starts = speech.path, [start for start, _ in speech.spans]
    (tmp_path / "talk.txt").write_text(" ".join(SENTENCES) + "\n")
    result = tinyaudio("align", talk, "--srt", "--json", "-m", "tiny-en", env={"TINYAUDIO_BASES": BASES})
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    data = json.loads((tmp_path / "talk.json").read_text())
    words = [w for segment in data["segments"] for w in segment["words"]]
    assert [w["word"].strip() for w in words] == " ".join(SENTENCES).split()
    assert all(a["start"] <= b["start"] for a, b in itertools.pairwise(words))
    firsts = [segment["words"][0]["start"] for segment in data["segments"]]
    assert len(firsts) == 3 and all(abs(a - b) < 0.2 for a, b in zip(firsts, starts, strict=True)), firsts
    for segment in data["segments"]:  # confidence as transcribe gives it: the VAD's, and the words' mean log
        assert 0.5 < segment["speech_probability"] <= 1, segment
        logs = [math.log(max(w["probability"], 1e-4)) for w in segment["words"]]
        assert segment["avg_logprob"] == pytest.approx(sum(logs) / len(logs), abs=1e-4)
    matching = min(segment["avg_logprob"] for segment in data["segments"])
    cues = list(srt.parse((tmp_path / "talk.srt").read_text()))
    assert " ".join(cue.content.replace("\n", " ") for cue in cues) == " ".join(SENTENCES)
    assert (tmp_path / "talk.txt").read_text() == " ".join(SENTENCES) + "\n"  # the text is never replaced

    (tmp_path / "other.txt").write_text("The stock market closed higher today after a volatile week of trading.\n")
    result = tinyaudio(
        "align", talk, tmp_path / "other.txt", "-o", tmp_path / "out", "-m", "tiny-en", env={"TINYAUDIO_BASES": BASES}
    )
    assert result.returncode == 0, result.stderr
    assert "low alignment score" in result.stderr
    unrelated = json.loads((tmp_path / "out" / "talk.json").read_text())["segments"]
    assert max(segment["avg_logprob"] for segment in unrelated) < matching  # every segment below the real text's
