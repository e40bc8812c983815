"""`transcribe` and `eval` under torchrun: 2 gloo processes on this CPU give what one process gives."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from conftest import SENTENCES, espeak
from tinystack import build_checkpoint
from typer.testing import CliRunner

from tinyaudio_cli.cli import app
from tinyaudio_cli.distributed import shard_by_weight, shard_stream

os.environ["HF_HUB_OFFLINE"] = "1"
SR = 16_000
EVAL_FLAGS = ["--device", "cpu", "--dtype", "float32", "--warmup-batches", "0", "--max-new-tokens", "4"]
TRANSCRIBE_FLAGS = ["--device", "cpu", "--dtype", "float32", "--max-new-tokens", "4", "--json"]


def torchrun(*args: str | Path, expect: int = 0) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "tinyaudio_cli", *map(str, args)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert (completed.returncode == 0) == (expect == 0), completed.stdout[-2000:] + completed.stderr[-3000:]
    return completed


def read_tree(root: Path) -> dict[str, str]:
    return {path.relative_to(root).as_posix(): path.read_text(encoding="utf-8") for path in root.rglob("*.json")}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("stack"), "smollm3")


@pytest.mark.parametrize("ranks", [1, 2, 3, 5])
def test_shard_by_weight_is_disjoint_complete_balanced_and_ordered(ranks: int) -> None:
    rng = random.Random(ranks)
    items = [f"file-{index}" for index in range(23)]
    weights = [rng.uniform(0.5, 30.0) for _ in items]
    shares = [shard_by_weight(items, weights, rank, ranks) for rank in range(ranks)]
    assert sorted(item for share in shares for item in share) == sorted(items)  # complete, nothing twice
    for share in shares:
        assert share == sorted(share, key=items.index)  # each share keeps the input order
    loads = [sum(weights[items.index(item)] for item in share) for share in shares]
    assert max(loads) - min(loads) <= max(weights)  # greedy longest-first: within one item of level
    assert shares == [shard_by_weight(items, weights, rank, ranks) for rank in range(ranks)]  # deterministic


def test_shard_by_weight_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        shard_by_weight([1, 2], [1.0], 0, 2)
    with pytest.raises(ValueError):
        shard_by_weight([1, 2], [1.0, 1.0], 2, 2)


def test_shard_stream_splits_a_stream_by_weight() -> None:
    items = [5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 2.0]
    shares = [list(shard_stream(items, float, rank, 2)) for rank in range(2)]
    assert sorted(index for share in shares for index, _ in share) == list(range(len(items)))
    assert shares[0] == [(0, 5.0), (6, 3.0)] and [index for index, _ in shares[1]] == [1, 2, 3, 4, 5, 7]


@pytest.mark.slow  # several processes or a long decode: out of the fast loop
def test_two_process_transcribe_equals_one_process(checkpoint, encoded, paused_speech, tmp_path) -> None:
    media = tmp_path / "media"
    (media / "sub").mkdir(parents=True)
    for name in ("wav 22.05k s16", "flac 44.1k", "mp3", "wav 8k u8"):
        shutil.copy(encoded[name], media / encoded[name].name)
    shutil.copy(encoded["opus"], media / "sub" / encoded["opus"].name)
    shutil.copy(paused_speech.path, media / "sub" / "paused.wav")

    single = tmp_path / "single"
    result = CliRunner().invoke(
        app, ["transcribe", str(media), "-m", str(checkpoint), *TRANSCRIBE_FLAGS, "-o", str(single)]
    )
    assert result.exit_code == 0, result.output
    expected = read_tree(single)
    assert len(expected) == 6

    double = tmp_path / "double"
    completed = torchrun("transcribe", media, "-m", checkpoint, *TRANSCRIBE_FLAGS, "-o", double)
    assert read_tree(double) == expected
    shown = completed.stdout + completed.stderr
    assert shown.count("tinyaudio transcribe") == 1  # one merged summary, from rank 0
    assert summary_count(shown, "done") == 6  # each file done once, by one rank
    assert summary_count(shown, "failed") == 0

    again = torchrun("transcribe", media, "-m", checkpoint, *TRANSCRIBE_FLAGS, "-o", double)  # resumes: all done
    assert summary_count(again.stdout + again.stderr, "skipped") == 6
    assert summary_count(again.stdout + again.stderr, "done") == 0


def summary_count(shown: str, label: str) -> int:
    """The number in the summary table's row that starts with `label`."""
    for line in shown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│┃|").split("│")]
        if len(cells) == 2 and cells[0].startswith(label):
            return int(cells[1])
    raise AssertionError(f"no {label!r} row in:\n{shown}")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> Path:
    """Five clips of different lengths and one that is no audio, paths relative to the manifest."""
    root = tmp_path_factory.mktemp("manifest")
    (root / "clips").mkdir()
    entries = []
    for index, sentence in enumerate(SENTENCES[:5]):
        sf.write(root / "clips" / f"c{index}.wav", espeak(media_dir, sentence), SR)
        entries.append({"audio": f"clips/c{index}.wav", "text": sentence, "id": f"clip-{index}"})
    (root / "clips" / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt not audio")
    entries.insert(2, {"audio": "clips/broken.wav", "text": "Hi.", "id": "clip-broken"})
    path = root / "manifest.jsonl"
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries), encoding="utf-8")
    return path


@pytest.mark.slow  # several processes or a long decode: out of the fast loop
def test_two_process_eval_equals_one_process(checkpoint, manifest, tmp_path) -> None:
    single = tmp_path / "single"
    result = CliRunner().invoke(app, ["eval", "--data", str(manifest), "-m", str(checkpoint), "-o", str(single),
                                      *EVAL_FLAGS])  # fmt: skip
    assert result.exit_code == 0, result.output

    double = tmp_path / "double"
    completed = torchrun("eval", "--data", manifest, "-m", checkpoint, "-o", double, *EVAL_FLAGS)
    assert (double / "predictions.jsonl").read_text() == (single / "predictions.jsonl").read_text()
    ids = [json.loads(line)["id"] for line in (double / "predictions.jsonl").read_text().splitlines()]
    assert ids == ["clip-0", "clip-1", "clip-broken", "clip-2", "clip-3", "clip-4"]  # source order restored
    ours, theirs = (json.loads((folder / "summary.json").read_text()) for folder in (double, single))
    for key in ("wer", "cer", "samples", "scored_samples", "failed", "hits", "ref_words", "wer_by_duration"):
        assert ours[key] == theirs[key], key
    assert ours["speed"]["ranks"] == 2 and "ranks" not in theirs["speed"]
    assert ours["speed"]["audio_seconds"] == pytest.approx(theirs["speed"]["audio_seconds"])
    assert completed.stdout.count("WER") == result.stdout.count("WER") > 0  # the results are printed once


@pytest.mark.slow  # several processes or a long decode: out of the fast loop
def test_two_process_stdout_is_in_input_order_and_failures_fail_every_rank(checkpoint, encoded, broken, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    for index, name in enumerate(("wav 22.05k s16", "flac 44.1k", "wav 8k u8")):
        shutil.copy(encoded[name], media / f"{index}-{encoded[name].name}")
    shutil.copy(broken["text named .mp4"], media / "1a-notes.mp4")
    flags = [
        "-m",
        str(checkpoint),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--max-new-tokens",
        "4",
        "--json",  # one document a line: srt and vtt to stdout take one input
        "-o",
        "-",
    ]
    single = CliRunner().invoke(app, ["transcribe", str(media), *flags])
    assert single.exit_code == 1
    assert [json.loads(line)["segments"] != [] for line in single.stdout.splitlines()] == [True] * 3

    completed = torchrun("transcribe", media, *flags, expect=1)
    assert completed.stdout == single.stdout  # rank 0 writes every rank's text, in input order
    assert summary_count(completed.stderr, "failed") == 1 and completed.stderr.count("✗") == 1
    assert summary_count(completed.stderr, "done") == 3
