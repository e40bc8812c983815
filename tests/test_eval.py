"""`tinyaudio eval` end to end on tiny random checkpoints and real (espeak-ng) speech, offline.

The checkpoints' transcripts are gibberish, which is what these tests want: the point is that every
number the command prints and saves is the number jiwer gives on the pairs it saved, that broken
audio is reported rather than dropped, and that compared models see exactly the same samples.
"""

from __future__ import annotations

import io
import json
import os
import struct
import threading
from dataclasses import replace
from itertools import count
from pathlib import Path

import jiwer
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from conftest import SENTENCES, Speech, espeak
from tinystack import build_checkpoint
from typer.testing import CliRunner

from tinyaudio_cli.cli import app
from tinyaudio_cli.data.prefetch import Prefetched
from tinyaudio_cli.errors import TinyAudioError
from tinyaudio_cli.evaluation.runner import EvalOptions, EvalSource, run_evaluation
from tinyaudio_cli.model.batching import CPU_BATCH_SIZE

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

SR = 16_000
BROKEN_WAV = b"RIFF\x24\x00\x00\x00WAVEfmt this is not audio at all"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WIDE = {"COLUMNS": "250"}  # so no table cell is folded in the captured output
FAST = ["--device", "cpu", "--dtype", "float32", "--warmup-batches", "0", "--max-new-tokens", "12"]
LOQUACIOUS_SCHEMA = pa.schema(
    [
        ("ID", pa.string()),
        ("duration", pa.float64()),
        ("wav", pa.binary()),
        ("spk_id", pa.string()),
        ("sex", pa.string()),
        ("text", pa.string()),
    ]
)
SUMMARY_KEYS = {
    "model", "dataset", "config", "split", "samples", "scored_samples", "failed_samples", "failed", "wer", "cer",
    "substitutions", "deletions", "insertions", "rtfx", "speed", "wer_by_duration", "top_substitutions",
    "long_form", "settings", "versions", "date",
}  # fmt: skip

runner = CliRunner()


def wav_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, SR, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def invoke(*args: str | Path) -> object:
    return runner.invoke(app, ["eval", *map(str, args)], env=WIDE)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def summary_of(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return [build_checkpoint(root / "a", "smollm3"), build_checkpoint(root / "b", "llama")]


@pytest.fixture(scope="module")
def speech(media_dir: Path) -> list[np.ndarray]:
    return [espeak(media_dir, sentence) for sentence in SENTENCES[:3]]


@pytest.fixture(scope="module")
def loquacious(tmp_path_factory: pytest.TempPathFactory, speech: list[np.ndarray], long_speech: Speech) -> Path:
    """A LoquaciousSet-shaped local copy: test/ holds one Parquet shard of the set's exact schema, with
    three short utterances, one blob that is no audio, and one utterance over 30 s (the long-form path)."""
    root = tmp_path_factory.mktemp("loquacious")
    clips = [*zip(speech, SENTENCES, strict=False), (long_speech.audio, " ".join(SENTENCES))]
    rows = [
        {"ID": f"utt-{i}", "duration": len(a) / SR, "wav": wav_bytes(a), "spk_id": f"spk-{i}", "sex": "F", "text": t}
        for i, (a, t) in enumerate(clips)
    ]
    rows.insert(1, {"ID": "utt-broken", "duration": 4.25, "wav": BROKEN_WAV, "spk_id": "x", "sex": "M", "text": "Hi."})
    (root / "test").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=LOQUACIOUS_SCHEMA), root / "test" / "test-00000-of-00001.parquet")
    return root


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory, speech: list[np.ndarray]) -> Path:
    """Three clips, paths relative to the manifest; clip-1's reference needs normalising."""
    root = tmp_path_factory.mktemp("manifest")
    (root / "clips").mkdir()
    clips = [(speech[0], SENTENCES[0]), (speech[1], "THE Speech, recognised; 2 words!"), (speech[2], SENTENCES[2])]
    entries = []
    for index, (audio, text) in enumerate(clips):
        sf.write(root / "clips" / f"c{index}.wav", audio, SR)
        entries.append({"audio": f"clips/c{index}.wav", "text": text, "id": f"clip-{index}"})
    path = root / "manifest.jsonl"
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, speech: list[np.ndarray]) -> Path:
    root = tmp_path_factory.mktemp("folder")
    for index, audio in enumerate(speech[:2]):
        sf.write(root / f"s{index}.wav", audio, SR)
        (root / f"s{index}.txt").write_text(SENTENCES[index] + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def loquacious_run(tmp_path_factory: pytest.TempPathFactory, checkpoints: list[Path], loquacious: Path) -> dict:
    """The headline run: a registry name re-pointed at a local copy, with the default warm-up batch."""
    out = tmp_path_factory.mktemp("loquacious-out")
    result = invoke("--data", f"loquacious,data_dir={loquacious}", "-m", checkpoints[0], "-o", out,
                    "--device", "cpu", "--dtype", "float32", "--max-new-tokens", "12")  # fmt: skip
    assert result.exit_code == 0, result.output
    return {"out": out, "stdout": result.stdout, "stderr": result.stderr}


@pytest.fixture(scope="module")
def comparison_run(tmp_path_factory: pytest.TempPathFactory, checkpoints: list[Path], manifest: Path) -> dict:
    out = tmp_path_factory.mktemp("compare-out")
    result = invoke("--data", manifest, "-m", checkpoints[0], "-m", checkpoints[1], "-o", out, *FAST)
    assert result.exit_code == 0, result.output
    return {"out": out, "stdout": result.stdout}


def test_saved_and_printed_wer_are_jiwers_on_the_saved_pairs(loquacious_run: dict) -> None:
    summary = summary_of(loquacious_run["out"])
    scored = [p for p in read_jsonl(loquacious_run["out"] / "predictions.jsonl") if p["error"] is None]
    references = [p["reference_norm"] for p in scored]
    hypotheses = [p["hypothesis_norm"] for p in scored]
    words = jiwer.process_words(references, hypotheses)

    assert summary["wer"] == pytest.approx(words.wer)
    assert summary["cer"] == pytest.approx(jiwer.cer(references, hypotheses))
    assert (summary["substitutions"], summary["deletions"], summary["insertions"]) == (
        words.substitutions,
        words.deletions,
        words.insertions,
    )
    assert f"{100 * words.wer:.2f}%" in loquacious_run["stdout"]
    for prediction in scored:  # per-sample WER too
        expected = jiwer.wer(prediction["reference_norm"], prediction["hypothesis_norm"])
        assert prediction["wer"] == pytest.approx(expected)
    # normalised by Whisper's normaliser: lowercase, no punctuation
    assert scored[0]["reference_norm"] == "the quick brown fox jumps over the lazy dog"


def test_broken_sample_is_reported_not_dropped(loquacious_run: dict) -> None:
    summary = summary_of(loquacious_run["out"])
    assert (summary["samples"], summary["scored_samples"], summary["failed_samples"]) == (5, 4, 1)
    assert [failure["id"] for failure in summary["failed"]] == ["utt-broken"]
    assert summary["failed"][0]["error"] and summary["failed"][0]["duration"] == 4.25
    predictions = read_jsonl(loquacious_run["out"] / "predictions.jsonl")
    assert [p["id"] for p in predictions] == ["utt-0", "utt-broken", "utt-1", "utt-2", "utt-3"]  # source order
    broken = predictions[1]
    assert broken["error"] and broken["hypothesis"] is None and broken["wer"] is None
    assert "utt-broken" in loquacious_run["stdout"]
    assert "excluded from WER" in loquacious_run["stdout"]


def test_summary_describes_the_run(loquacious_run: dict) -> None:
    summary = summary_of(loquacious_run["out"])
    assert set(summary) >= SUMMARY_KEYS
    assert (summary["dataset"], summary["config"], summary["split"]) == ("loquacious", "medium", "test")
    assert {"tinyaudio", "torch", "transformers"} <= set(summary["versions"])
    assert summary["settings"]["device"] == "cpu" and summary["settings"]["dtype"] == "float32"
    assert summary["settings"]["max_new_tokens"] == 12
    assert summary["settings"]["batch_size"] == CPU_BATCH_SIZE  # none given: a CPU's default
    assert len(summary["top_substitutions"]) <= 20
    assert all(set(s) == {"reference", "hypothesis", "count"} for s in summary["top_substitutions"])
    # RTFx is audio over model seconds, audio being the scored samples only
    speed = summary["speed"]
    scored = [p for p in read_jsonl(loquacious_run["out"] / "predictions.jsonl") if p["error"] is None]
    assert speed["audio_seconds"] == pytest.approx(sum(p["duration"] for p in scored))
    assert summary["rtfx"] == pytest.approx(speed["audio_seconds"] / speed["model_seconds"])
    assert speed["data_seconds"] > 0 and speed["load_seconds"] > 0
    assert [bucket["samples"] for bucket in summary["wer_by_duration"]] == [3, 1]  # <5s, >=30s


def test_plot_is_a_png(loquacious_run: dict) -> None:
    data = (loquacious_run["out"] / "wer_by_duration.png").read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100


def test_two_models_are_compared_on_the_same_samples(comparison_run: dict, checkpoints: list[Path]) -> None:
    out = comparison_run["out"]
    comparison = json.loads((out / "comparison.json").read_text())
    assert [row["model"] for row in comparison["models"]] == [str(c) for c in checkpoints]
    folders = [out / row["folder"] for row in comparison["models"]]
    assert len(set(folders)) == 2  # both checkpoints are named checkpoint-*: the folders still differ
    summaries = [summary_of(folder) for folder in folders]
    assert [s["model"] for s in summaries] == [str(c) for c in checkpoints]
    assert [row["wer"] for row in comparison["models"]] == [s["wer"] for s in summaries]
    ids = [[p["id"] for p in read_jsonl(folder / "predictions.jsonl")] for folder in folders]
    assert ids[0] == ids[1] == ["clip-0", "clip-1", "clip-2"]
    assert (out / "wer_by_duration.png").read_bytes()[:8] == PNG_MAGIC
    for checkpoint in checkpoints:
        assert str(checkpoint) in comparison_run["stdout"]


def test_clips_over_30_seconds_take_the_long_form_path(loquacious_run: dict) -> None:
    predictions = {p["id"]: p for p in read_jsonl(loquacious_run["out"] / "predictions.jsonl")}
    assert predictions["utt-3"]["duration"] > 30 and predictions["utt-3"]["long_form"]
    assert not predictions["utt-0"]["long_form"]
    assert summary_of(loquacious_run["out"])["long_form"]["samples"] == 1


def test_folder_and_max_samples(folder: Path, checkpoints: list[Path], tmp_path: Path) -> None:
    args = ["--data", folder, "--max-samples", "1", "-m", checkpoints[0], "-o", tmp_path, "--warmup-batches", "0"]
    result = invoke(*args, "--device", "cpu", "--dtype", "float32")
    assert result.exit_code == 0, result.output
    summary = summary_of(tmp_path)
    assert summary["samples"] == 1 and summary["dataset"] == folder.name
    assert summary["settings"]["max_new_tokens"] is None  # the token budget from each clip's length
    [prediction] = read_jsonl(tmp_path / "predictions.jsonl")
    assert prediction["id"] == "s0" and prediction["reference"] == SENTENCES[0]


def test_no_normalize_scores_raw_text(manifest: Path, checkpoints: list[Path]) -> None:
    source = EvalSource("manifest", str(manifest), max_samples=2)
    options = EvalOptions(device="cpu", dtype="float32", max_new_tokens=4, warmup_batches=0)
    normal, raw = (
        run_evaluation([str(checkpoints[0])], source, replace(options, normalize=flag)) for flag in (True, False)
    )
    by_id = {s.id: s for s in normal.results[0].score.samples}
    raw_by_id = {s.id: s for s in raw.results[0].score.samples}
    assert by_id["clip-1"].reference_norm == "the speech recognized 2 words"
    assert raw_by_id["clip-1"].reference_norm == "THE Speech, recognised; 2 words!"
    assert not raw.results[0].score.normalized


@pytest.mark.parametrize(
    ("spelling", "instead"),
    [
        (["--dataset", "loquacious", "--data-dir", "{loquacious}"], None),
        (["--manifest", "{manifest}"], "--data FILE"),
        (["--folder", "{folder}"], "--data FOLDER"),
        (["--dataset", "{manifest}"], "--data NAME"),  # a local manifest given to --dataset is read as one
    ],
)
def test_old_spellings_still_name_the_same_samples_with_a_deprecation_line(
    spelling: list[str], instead: str | None, loquacious: Path, manifest: Path, folder: Path,
    checkpoints: list[Path], tmp_path: Path,
) -> None:  # fmt: skip
    """eval's --dataset, --data-dir, --manifest and --folder work for one more release: each says, in one line on
    stderr, what replaces it, and the run reads what --data with the same NAME reads."""
    paths = {"{loquacious}": str(loquacious), "{manifest}": str(manifest), "{folder}": str(folder)}
    old = [paths.get(word, word) for word in spelling]
    new = ["--data", f"loquacious,data_dir={loquacious}"] if "--data-dir" in old else ["--data", old[1]]
    runs = {}
    for name, args in (("old", old), ("new", new)):
        result = invoke(*args, "--max-samples", "1", "-m", checkpoints[0], "-o", tmp_path / name, *FAST, "-q")
        assert result.exit_code == 0, result.output
        runs[name] = (
            result.stderr.splitlines(),
            summary_of(tmp_path / name),
            read_jsonl(tmp_path / name / "predictions.jsonl"),
        )
    warnings = runs["old"][0]
    flags = [word for word in old if word.startswith("--")]
    assert len(warnings) == len(flags) and runs["new"][0] == []
    for flag, line in zip(flags, warnings, strict=True):
        assert line.startswith(f"warning: {flag} is deprecated") and "next release" in line
    if instead:
        assert warnings[0].endswith(f"use {instead}")
    for key in ("dataset", "config", "split", "samples"):
        assert runs["old"][1][key] == runs["new"][1][key]
    assert [row["id"] for row in runs["old"][2]] == [row["id"] for row in runs["new"][2]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "nobody-xyz/never-cached-set"], "not cached"),
        (["--data", "no-such-set"], "Unknown dataset"),
        (["-d", "loquacious", "--split", "train"], "no split 'train'"),
        (["--data", "loquacious,split=train"], "no split 'train'"),
        (["--data", "loquacious,split=test", "--split", "dev"], "--split dev and split=test disagree"),
        (["--data", "loquacious,weight=2"], "weight= only applies to train"),
        (["--data", "loquacious,colour=red"], "unknown data option 'colour'"),
        (["--data", "m.jsonl", "--folder", "."], "--data and --folder both name samples"),
        (["--manifest", "m.jsonl", "--folder", "."], "both name samples"),
        (["--folder", ".", "--config", "medium"], "--config only apply to a dataset, not a folder"),
    ],
)
def test_errors_are_one_clear_line(args: list[str], message: str, checkpoints: list[Path]) -> None:
    result = invoke(*args, "-m", checkpoints[0], *FAST)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert errors[0].startswith("error:") and message in result.stderr
    assert "Traceback" not in result.output


def test_pack_shares_encoder_windows_and_scores_every_clip(
    manifest: Path, checkpoints: list[Path], tmp_path: Path
) -> None:
    packed, alone = tmp_path / "packed", tmp_path / "alone"
    for out, extra in ((packed, ["--pack"]), (alone, [])):
        result = invoke("--data", manifest, "-m", checkpoints[0], *FAST, "-o", out, *extra)
        assert result.exit_code == 0, result.output
    assert summary_of(packed)["settings"]["pack"] is True and summary_of(alone)["settings"]["pack"] is False
    ids = [[row["id"] for row in read_jsonl(out / "predictions.jsonl")] for out in (packed, alone)]
    assert ids[0] == ids[1] and all(row["hypothesis"] is not None for row in read_jsonl(packed / "predictions.jsonl"))


def test_vad_scores_what_transcribe_writes(manifest: Path, checkpoints: list[Path], tmp_path: Path) -> None:
    """--vad sends every clip through transcribe's pipeline: each hypothesis is the text `transcribe` gives."""
    result = invoke("--data", manifest, "-m", checkpoints[0], *FAST, "-o", tmp_path / "eval", "--vad")
    assert result.exit_code == 0, result.output
    assert summary_of(tmp_path / "eval")["settings"]["vad"] is True
    predictions = read_jsonl(tmp_path / "eval" / "predictions.jsonl")
    assert len(predictions) == 3 and all(row["long_form"] for row in predictions)
    clips = sorted((manifest.parent / "clips").glob("*.wav"))
    same = ["-m", str(checkpoints[0]), "--device", "cpu", "--dtype", "float32", "--max-new-tokens", "12"]
    transcribed = runner.invoke(app, ["transcribe", *map(str, clips), *same, "--json", "-o", str(tmp_path / "tx")])
    assert transcribed.exit_code == 0, transcribed.output
    texts = [json.loads((tmp_path / "tx" / f"{clip.stem}.json").read_text())["text"] for clip in clips]
    assert [row["hypothesis"] for row in predictions] == texts


def test_read_ahead_keeps_order_and_raises_where_the_source_failed() -> None:
    def source():
        yield "first"
        yield "second"
        raise TinyAudioError("Reading shard 3 failed")

    seen = []
    with pytest.raises(TinyAudioError, match="shard 3"):
        for item in Prefetched(source(), 1, "tinyaudio-eval-data"):
            seen.append(item)
    assert seen == ["first", "second"]


def test_read_ahead_is_bounded_and_stops_when_abandoned() -> None:
    made = []

    def endless():
        for number in count():
            made.append(number)
            yield number

    stream = Prefetched(endless(), 2, "tinyaudio-eval-data")
    assert next(stream) == 0
    stream.close()
    assert len(made) <= 4  # the one taken, two queued, one waiting to be queued
    assert not any(thread.name == "tinyaudio-eval-data" for thread in threading.enumerate())
