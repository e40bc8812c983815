"""Shared media fixtures: real speech from espeak-ng, encoded by ffmpeg into the files users actually have.

Everything is made once per test session in a temporary folder; nothing binary is committed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SR = 16_000
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Speech recognition turns spoken words into written text.",
    "A small language model can listen when an audio encoder feeds it.",
    "Every window of audio is at most thirty seconds long.",
    "Voice activity detection finds the parts of a recording that hold speech.",
    "Silence and noise should never reach the model.",
    "This sentence was spoken by a robot for a unit test.",
    "Long recordings are cut into windows at the pauses.",
    "Please remember to check the timestamps of every region.",
    "The last sentence ends the continuous stretch of speech.",
)
TRIM_LEVEL = 0.01  # espeak-ng leaves a little near-silence around each utterance
PAUSED_LAYOUT = (3.0, 4.0, 2.0)  # silence before, between and after the two sentences
LONG_SPEECH_GAP = 0.25  # shorter than the VAD's minimum pause, so all of it reads as one region


# A LoquaciousSet dataset card as a Hub snapshot holds it: config "medium" with its dev and test files
LOQUACIOUS_CARD = """---
configs:
- config_name: medium
  data_files:
  - split: dev
    path: dev/*.parquet
  - split: test
    path: test/*.parquet
---
# LoquaciousSet stand-in
"""


@dataclass(frozen=True)
class Speech:
    """A 16 kHz mono WAV with speech at known places."""

    path: Path
    audio: np.ndarray
    spans: list[tuple[float, float]]  # seconds where each utterance starts and ends

    @property
    def duration(self) -> float:
        return len(self.audio) / SR


def need(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH")


def run_ffmpeg(*args: str | Path) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)],
        check=True,
        capture_output=True,
    )


def probe_duration(path: Path) -> float:
    """The duration ffprobe reports for the audio stream."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=duration", "-of", "csv", path],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(result.stdout.strip().removeprefix("stream,"))


def trim(audio: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > TRIM_LEVEL)
    return audio[loud[0] : loud[-1] + 1]


def espeak(folder: Path, text: str, voice: str = "en-us", speed: int = 165) -> np.ndarray:
    """An utterance as 16 kHz float32 samples, resampled by the ffmpeg CLI (not the code under test)."""
    raw, resampled = folder / "espeak.wav", folder / "espeak16k.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", raw, text], check=True)
    run_ffmpeg("-i", raw, "-ar", SR, "-ac", 1, "-c:a", "pcm_f32le", resampled)
    audio, rate = sf.read(resampled, dtype="float32")
    assert rate == SR
    return trim(audio)


def compose(folder: Path, name: str, pieces: list[np.ndarray | float]) -> Speech:
    """Utterances and silences (floats, in seconds) laid end to end and written as a 16 kHz WAV."""
    parts, spans, cursor = [], [], 0
    for piece in pieces:
        part = np.zeros(round(piece * SR), np.float32) if isinstance(piece, float) else piece
        if not isinstance(piece, float):
            spans.append((cursor / SR, (cursor + len(part)) / SR))
        parts.append(part)
        cursor += len(part)
    audio = np.concatenate(parts).astype(np.float32)
    path = folder / f"{name}.wav"
    sf.write(path, audio, SR, subtype="FLOAT")
    return Speech(path, audio, spans)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("ffmpeg", "ffprobe", "espeak-ng")
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def source_wav(media_dir: Path) -> Path:
    """One sentence as espeak-ng writes it (22.05 kHz 16-bit mono), trimmed: the reference for every encoding."""
    raw = media_dir / "source_raw.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", raw, SENTENCES[0]], check=True)
    audio, rate = sf.read(raw, dtype="int16")
    path = media_dir / "source.wav"
    sf.write(path, trim(audio.astype(np.float32) / 32768).copy(), rate, subtype="PCM_16")
    return path


# name -> (file name, ffmpeg arguments between the input and the output file)
ENCODINGS = {
    "wav 48k s24 stereo": ("48k.wav", ["-ar", "48000", "-ac", "2", "-c:a", "pcm_s24le"]),
    "wav 8k u8": ("8k.wav", ["-ar", "8000", "-c:a", "pcm_u8"]),
    "flac 44.1k": ("speech.flac", ["-ar", "44100", "-c:a", "flac"]),
    "mp3": ("speech.mp3", ["-ar", "44100", "-c:a", "libmp3lame", "-b:a", "96k"]),
    "opus": ("speech.opus", ["-c:a", "libopus", "-b:a", "32k"]),
    "m4a aac": ("speech.m4a", ["-ar", "44100", "-c:a", "aac"]),
}


@pytest.fixture(scope="session")
def encoded(media_dir: Path, source_wav: Path) -> dict[str, Path]:
    """The same sentence in many containers, codecs, rates, widths and channel counts."""
    files = {"wav 22.05k s16": source_wav}
    for name, (file_name, args) in ENCODINGS.items():
        files[name] = media_dir / file_name
        run_ffmpeg("-i", source_wav, *args, files[name])
    video = media_dir / "video.mp4"
    # A video track longer than the sound, AAC stereo at 44.1 kHz: what a phone or screen recorder makes.
    run_ffmpeg(
        "-f", "lavfi", "-i", "color=c=black:s=64x64:r=10:d=8", "-i", source_wav,
        "-c:v", "mpeg4", "-c:a", "aac", "-ac", "2", "-ar", "44100", video,
    )  # fmt: skip
    files["mp4 video"] = video
    return files


@pytest.fixture(scope="session")
def broken(media_dir: Path, encoded: dict[str, Path]) -> dict[str, Path]:
    """Files that hold no decodable audio, by kind."""
    files = {
        "video without audio": media_dir / "silent_film.mp4",
        "empty": media_dir / "empty.wav",
        "truncated mp4": media_dir / "truncated.mp4",
        "text named .mp4": media_dir / "notes.mp4",
    }
    run_ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x64:r=10:d=2", "-c:v", "mpeg4", files["video without audio"])
    files["empty"].write_bytes(b"")
    # ffmpeg writes the MP4 index (moov) last, so the first half of the file is undecodable.
    video = encoded["mp4 video"].read_bytes()
    files["truncated mp4"].write_bytes(video[: len(video) // 2])
    files["text named .mp4"].write_text("These are meeting notes, not a video.\n" * 20)
    return files


@pytest.fixture(scope="session")
def silence_wav(media_dir: Path) -> Path:
    path = media_dir / "silence.wav"
    run_ffmpeg("-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-t", "6", path)
    return path


@pytest.fixture(scope="session")
def noise_wav(media_dir: Path) -> Path:
    """Low-level pink noise, like a quiet room."""
    path = media_dir / "noise.wav"
    run_ffmpeg("-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.02:seed=7:r=16000", "-t", "8", path)
    return path


@pytest.fixture(scope="session")
def paused_speech(media_dir: Path) -> Speech:
    """Two sentences in two voices, separated by long pauses."""
    before, between, after = PAUSED_LAYOUT
    first = espeak(media_dir, SENTENCES[1], voice="en-us", speed=170)
    second = espeak(media_dir, SENTENCES[2], voice="en-gb", speed=140)
    return compose(media_dir, "paused", [before, first, between, second, after])


@pytest.fixture(scope="session")
def long_speech(media_dir: Path) -> Speech:
    """Over 35 s of speech with only short gaps: no pause a window could be cut at."""
    pieces: list[np.ndarray | float] = [0.5]
    for index, sentence in enumerate(SENTENCES):
        pieces += [espeak(media_dir, sentence, voice=("en-us", "en-gb")[index % 2], speed=140), LONG_SPEECH_GAP]
    speech = compose(media_dir, "long_speech", pieces)
    assert speech.duration > 35
    return speech


@pytest.fixture(scope="session")
def ten_minutes(media_dir: Path) -> Path:
    """A 10-minute tone at 22.05 kHz: long enough that holding it whole would show in memory use."""
    path = media_dir / "ten_minutes.flac"
    run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050:duration=600", "-c:a", "flac", path)
    return path
