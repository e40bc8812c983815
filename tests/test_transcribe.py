"""`tinyaudio transcribe` end to end on real media (espeak-ng speech through ffmpeg) with a tiny random model.

The model's words are gibberish (random weights); what is checked is everything around it: decoding,
speech detection, timing, batching, the output files and how bad input is handled.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import srt
import torch
import webvtt
from conftest import probe_duration, run_ffmpeg
from tinystack import build_checkpoint
from typer.testing import CliRunner

from tinyaudio_cli.audio.media import load_audio
from tinyaudio_cli.cli import app
from tinyaudio_cli.inference.transcribe import TranscribeOptions, transcribe, transcribe_files
from tinyaudio_cli.model import load_model
from tinyaudio_cli.model.decoding import REPEAT_CHECK_EVERY, cut_repetition

FORMATS = ("txt", "srt", "vtt", "json", "tsv")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("stack"), "smollm3")


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_model(str(checkpoint), device="cpu")


def run(checkpoint: Path, *args: str | Path):
    result = CliRunner().invoke(app, ["transcribe", *map(str, args), "-m", str(checkpoint), "--max-new-tokens", "6"])
    return result


def test_every_container_and_codec_gives_valid_outputs(checkpoint, encoded, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, path in encoded.items():
        shutil.copy(path, inputs / f"{name.replace(' ', '_').replace('.', '_')}{path.suffix}")
    out = tmp_path / "out"
    result = run(checkpoint, inputs, "-f", "all", "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    for media in inputs.iterdir():
        duration = probe_duration(media)
        stem = out / media.stem
        data = json.loads(stem.with_suffix(".json").read_text())
        assert set(data) == {"text", "segments", "language", "duration", "model"}
        assert abs(data["duration"] - duration) < 0.1, media.name
        assert data["segments"], f"no speech found in {media.name}"
        for segment in data["segments"]:
            assert 0 <= segment["start"] < segment["end"] <= duration + 0.05
            assert segment["tokens"] and all(isinstance(t, int) for t in segment["tokens"])
        cues = list(srt.parse(stem.with_suffix(".srt").read_text()))
        vtt = webvtt.read(str(stem.with_suffix(".vtt")))
        assert len(cues) == len(vtt.captions) >= 1
        assert all(a.end <= b.start for a, b in itertools.pairwise(cues))
        assert cues[-1].end.total_seconds() <= duration + 0.05
        for fmt in ("srt", "vtt"):  # ffmpeg itself reads the subtitles
            run_ffmpeg("-i", stem.with_suffix(f".{fmt}"), "-f", "srt", tmp_path / "check.srt")
        assert stem.with_suffix(".txt").read_text().strip() == data["text"]
        assert stem.with_suffix(".tsv").read_text().startswith("start\tend\ttext")
    # no temporary files left: the one hidden file is tinyaudio's record of the outputs it wrote
    assert [path.name for path in out.rglob(".*")] == [".tinyaudio-outputs.jsonl"]


def test_tree_with_colliding_names_is_mirrored_and_resumes(checkpoint, encoded, tmp_path):
    tree = tmp_path / "tree"
    for relative in ("a/talk.wav", "b/talk.wav", "a/deep/talk.mp3", "a/deep/talk.flac"):
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(encoded["wav 22.05k s16"], tree / relative)
    (tree / "a" / "notes.txt").write_text("not media")
    out = tmp_path / "out"
    assert run(checkpoint, tree, "--srt", "-o", out, "-q").exit_code == 0
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.srt"))
    assert written == ["a/deep/talk.flac.srt", "a/deep/talk.mp3.srt", "a/talk.srt", "b/talk.srt"]
    stamp = (out / "a" / "talk.srt").stat().st_mtime_ns
    again = run(checkpoint, tree, "--srt", "-o", out)
    assert again.exit_code == 0 and "4" in again.output and "skipped" in again.output
    assert (out / "a" / "talk.srt").stat().st_mtime_ns == stamp
    assert run(checkpoint, tree, "--srt", "-o", out, "--overwrite", "-q").exit_code == 0
    assert (out / "a" / "talk.srt").stat().st_mtime_ns != stamp


def test_outputs_go_next_to_inputs_by_default(checkpoint, encoded, tmp_path):
    media = tmp_path / "meeting.mp4"
    shutil.copy(encoded["mp4 video"], media)
    assert run(checkpoint, media, "--srt", "--json", "-q").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".tinyaudio-outputs.jsonl",
        "meeting.json",
        "meeting.mp4",
        "meeting.srt",
    ]


def test_silence_and_noise_give_empty_transcripts(checkpoint, silence_wav, noise_wav, tmp_path):
    result = run(checkpoint, silence_wav, noise_wav, "--json", "-o", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    for name in ("silence", "noise"):
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert data["segments"] == [] and data["text"] == ""


def test_bad_files_are_reported_and_the_rest_goes_on(checkpoint, broken, encoded, tmp_path):
    out = tmp_path / "out"
    good = encoded["flac 44.1k"]
    result = run(checkpoint, *broken.values(), good, "--json", "-o", out)
    assert result.exit_code == 1
    for path in broken.values():
        assert str(path) in result.output
        assert not (out / f"{path.stem}.json").exists()
    assert (out / f"{good.stem}.json").is_file()
    assert "failed" in result.output


def test_missing_input_is_one_clear_error(checkpoint, tmp_path):
    result = run(checkpoint, tmp_path / "nope.wav")
    assert result.exit_code == 1
    assert "no such file" in result.output and "Traceback" not in result.output


def test_stdout_output(checkpoint, encoded):
    result = CliRunner().invoke(
        app,
        ["transcribe", str(encoded["mp3"]), "-o", "-", "--vtt", "-q", "-m", str(checkpoint), "--max-new-tokens", "4"],
    )
    assert result.exit_code == 0
    assert result.stdout.startswith("WEBVTT")


def test_paused_speech_segments_are_timed_at_the_speech(model, paused_speech):
    transcript = transcribe(model, paused_speech.path, TranscribeOptions(max_new_tokens=4))
    assert len(transcript.segments) == len(paused_speech.spans)
    for segment, (start, end) in zip(transcript.segments, paused_speech.spans, strict=True):
        assert abs(segment.start - start) < 0.5 and abs(segment.end - end) < 0.5


def test_long_speech_is_split_into_windows_with_increasing_segments(model, long_speech):
    transcript = transcribe(model, long_speech.path, TranscribeOptions(max_new_tokens=3))
    assert len(transcript.segments) >= 2
    ends = [(s.start, s.end) for s in transcript.segments]
    assert all(a[1] <= b[0] + 1e-6 for a, b in itertools.pairwise(ends))
    assert ends[-1][1] <= long_speech.duration + 0.05
    assert sum(e - s for s, e in ends) > 0.8 * sum(e - s for s, e in long_speech.spans)


def test_no_vad_reference_mode_equals_the_model_core(model, checkpoint, encoded, tmp_path):
    media = encoded["wav 22.05k s16"]
    result = run(checkpoint, media, "--json", "-o", tmp_path, "--no-vad", "--reference-mode", "-q")
    assert result.exit_code == 0
    segment = json.loads((tmp_path / f"{media.stem}.json").read_text())["segments"][0]
    expected = model.generate_ids([load_audio(media)], mode="reference", max_new_tokens=6)[0]
    assert segment["tokens"] == expected
    assert segment["start"] == 0.0


def test_windows_from_many_files_share_batches_without_changing_results(model, encoded, paused_speech):
    paths = [encoded["mp3"], paused_speech.path, encoded["opus"], encoded["mp4 video"]]
    one = list(transcribe_files(model, paths, TranscribeOptions(batch_size=1, max_new_tokens=5)))
    many = list(transcribe_files(model, paths, TranscribeOptions(batch_size=8, max_new_tokens=5)))
    assert [r.path for r in many] == paths
    assert [[s.tokens for s in r.transcript.segments] for r in one] == [
        [s.tokens for s in r.transcript.segments] for r in many
    ]


def test_a_python_caller_transcribes_arrays_as_it_transcribes_files(model, long_speech):
    """Audio in memory (as eval hands over its clips, with no temporary file) goes through the file pipeline:
    over 30 s, read by soundfile, it gives the file's segments; it is named as given; a bad array is one error."""
    from tinyaudio_cli.transcribe import NamedAudio
    from tinyaudio_cli.transcribe import transcribe_files as public

    audio, rate = sf.read(long_speech.path, dtype="float32")
    assert rate == 16_000 and audio.ndim == 1 and len(audio) > 30 * rate
    pcm = np.zeros(800, np.int16)  # PCM read as integers: refused, not taken as samples 32768 times too loud
    inputs = [long_speech.path, NamedAudio("speech", audio), audio, np.zeros(0, np.float32), np.zeros((2, 800)), pcm]
    results = sorted(public(model, inputs, TranscribeOptions(max_new_tokens=5)), key=lambda result: result.index)
    assert [result.index for result in results] == [0, 1, 2, 3, 4, 5]
    file, named, bare = (result.transcript for result in results[:3])
    assert len(file.segments) > 1
    for transcript in (named, bare):
        assert [(s.start, s.end, s.tokens) for s in transcript.segments] == [
            (s.start, s.end, s.tokens) for s in file.segments
        ]
        assert transcript.duration == file.duration
    assert (file.source, named.source, bare.source) == (str(long_speech.path), "speech", "array-2")
    assert results[3].transcript is None and results[3].error == "array-3 contains no audio"
    assert results[4].error == "array-4: expected mono audio (one dimension), got shape (2, 800)"
    assert results[5].error == "array-5: expected float samples in [-1, 1], got int16 (divide PCM by 32768)"


@pytest.mark.slow  # several processes or a long decode: out of the fast loop
def test_loops_stop_early_unless_turned_off(checkpoint, paused_speech):
    stuck = load_model(str(checkpoint), device="cpu")
    word = 42  # an LM that can only say one word: every segment is a loop
    bias = torch.full((stuck.lm.lm_head.out_features,), -1e4)
    bias[word] = 1e4
    stuck.lm.lm_head.bias = torch.nn.Parameter(bias, requires_grad=False)
    stopped = transcribe(stuck, paused_speech.path, TranscribeOptions(max_new_tokens=40))
    full = transcribe(stuck, paused_speech.path, TranscribeOptions(max_new_tokens=40, stop_loops=False))
    assert len(stopped.segments) == len(full.segments) == len(paused_speech.spans)
    for early, whole in zip(stopped.segments, full.segments, strict=True):
        assert early.text == whole.text and early.repetition_cut and whole.repetition_cut
        # the loop is cut from the tokens as from the text (the loop stopped at the first check either way)
        assert early.tokens == whole.tokens == [word]
        assert stuck.decode_text(early.tokens) == early.text
    audio = [load_audio(paused_speech.path)]
    assert stuck.generate_ids(audio, max_new_tokens=40, stop_loops=True) == [[word] * REPEAT_CHECK_EVERY]
    assert stuck.generate_ids(audio, max_new_tokens=40) == [[word] * 40]


def test_repetition_guard():
    loop = [5, 6, 7, 8] * 10
    assert cut_repetition([1, 2, *loop]) == ([1, 2, 5, 6, 7, 8], True)
    assert cut_repetition([9] * 30) == ([9], True)
    speech = [*range(40), 3, 3, 3]  # a short stutter is speech, not a loop
    assert cut_repetition(speech) == (speech, False)


def test_help_lists_examples_and_panels():
    result = CliRunner().invoke(app, ["transcribe", "--help"], env={"COLUMNS": "120"})
    assert "tinyaudio transcribe meeting.mp4 --srt" in result.output
    for panel in ("Input", "Output", "Model", "Performance"):
        assert panel in result.output


@pytest.mark.skipif(os.environ.get("CI") is None and shutil.which("tinyaudio") is None, reason="console script")
def test_console_script_version():
    assert subprocess.run(["tinyaudio", "--version"], capture_output=True, text=True).stdout.startswith("tinyaudio ")


def test_regions_are_packed_into_full_windows_without_pauses(model, long_speech, paused_speech):
    from tinyaudio_cli.audio.media import stream_audio
    from tinyaudio_cli.audio.vad import iter_speech_windows
    from tinyaudio_cli.inference.transcribe import pack_regions

    for speech in (long_speech, paused_speech):
        vad_windows = list(iter_speech_windows(stream_audio(speech.path)))
        regions = [r for w in vad_windows for r in w.regions]
        packed = list(pack_regions(0, vad_windows, model.samples_per_token))
        alone = list(pack_regions(0, vad_windows, model.samples_per_token, pack=False))
        assert [[p.region for p in w.placements] for w in alone] == [[r] for r in regions]
        assert all(w.placements[0].offset == 0 for w in alone)
        assert [p.region for w in packed for p in w.placements] == regions
        speech_seconds = sum(r.end - r.start for r in regions)
        assert len(packed) <= int(speech_seconds // 30) + 2
        for window in packed:
            assert len(window.samples) <= 30 * 16_000
            for placement, following in itertools.pairwise(window.placements):
                assert placement.offset + placement.length + model.samples_per_token <= following.offset
            for placement in window.placements:  # the region's own audio sits at its offset
                start = round(placement.region.start * 16_000)
                expected = speech.audio[start : start + placement.length]
                got = window.samples[placement.offset : placement.offset + placement.length]
                assert abs(len(expected) - len(got)) <= 1
                n = min(len(expected), len(got))
                assert abs(got[:n] - expected[:n]).max() < 1e-3


def test_out_of_memory_halves_the_batch_and_retries():
    import torch

    from tinyaudio_cli.model.batching import with_backoff

    calls, splits = [], []

    def decode(batch):  # fits at most 3 items, as an accelerator with little free memory would
        calls.append(len(batch))
        if len(batch) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return [item * 10 for item in batch]

    assert with_backoff(decode, list(range(10)), splits.append) == [i * 10 for i in range(10)]
    assert calls[0] == 10 and max(calls[1:]) <= 5 and splits[0] == 5
    with pytest.raises(torch.OutOfMemoryError):
        with_backoff(lambda batch: decode(batch * 4), [1])
