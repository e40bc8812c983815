"""What the user sees while work runs: progress that moves inside a long file, an ETA from audio seconds,
RTFx everywhere, audio amounts as clock times, and eval's bar knowing a manifest's size."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import probe_duration
from tinystack import build_checkpoint

from tinyaudio_cli.audio.media import header_seconds, media_seconds
from tinyaudio_cli.cli.style import clock
from tinyaudio_cli.evaluation.runner import EvalOptions, EvalSource, run_evaluation
from tinyaudio_cli.inference.transcribe import TranscribeOptions, transcribe_files
from tinyaudio_cli.model import load_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("stack"), "smollm3")


def test_clock_reads_like_a_clock():
    assert [clock(s) for s in (0, 42.4, 725, 3753)] == ["0:00", "0:42", "12:05", "1:02:33"]


def test_progress_moves_inside_a_file_before_it_is_done(checkpoint, paused_speech):
    model = load_model(str(checkpoint), device="cpu")
    events: list[tuple[str, float]] = []
    options = TranscribeOptions(batch_size=1, max_new_tokens=2)
    for result in transcribe_files(
        model, [paused_speech.path], options, on_progress=lambda p, s: events.append((p, s))
    ):
        events.append(("done", result.transcript.duration))
    reached = [seconds for path, seconds in events[:-1]]
    assert events[-1][0] == "done" and len(reached) == 2  # one call per window: the two sentences
    assert reached == sorted(reached) and reached[0] < paused_speech.spans[1][0] <= reached[1]
    assert reached[1] == pytest.approx(paused_speech.spans[1][1], abs=0.6)


def test_media_seconds_reads_a_video_container(encoded):
    video = encoded["mp4 video"]  # 8 s of video, 2.6 s of sound: the container's length is the file's
    container = float(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", video],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert media_seconds(video) == pytest.approx(container, abs=0.05)
    assert abs(header_seconds(video) - container) > 1  # the size estimate it replaces is far off for video
    assert media_seconds(encoded["flac 44.1k"]) == pytest.approx(probe_duration(encoded["flac 44.1k"]), abs=0.01)


def test_transcribe_shows_audio_done_and_rtfx(checkpoint, paused_speech, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tinyaudio_cli",
            "transcribe",
            str(paused_speech.path),
            "-m",
            str(checkpoint),
            "--max-new-tokens",
            "2",
            "-o",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    final = [line for line in result.stderr.splitlines() if "files ·" in line]
    assert final, result.stderr
    seconds = round(paused_speech.duration)
    assert re.search(rf"1/1 files · 0:{seconds:02d} of audio · RTFx \d", final[-1]), final[-1]
    assert " h audio" not in result.stderr and "RTF " not in result.stderr


def test_eval_progress_knows_a_manifest_total(checkpoint, paused_speech, long_speech, tmp_path):
    manifest = tmp_path / "set.jsonl"
    rows = [{"audio": str(s.path), "text": "words"} for s in (paused_speech, long_speech, paused_speech)]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    events = []
    options = EvalOptions(device="cpu", dtype="float32", max_new_tokens=2, warmup_batches=0, batch_size=1)
    run_evaluation([str(checkpoint)], EvalSource("manifest", str(manifest)), options, None, events.append)
    running = [e for e in events if e.stage != "done"]
    assert running and all(e.samples_total == 3 for e in running)
