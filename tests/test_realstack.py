"""The shipped `tiny-en` model on REAL bases (Whisper tiny.en + SmolLM2-135M-Instruct built by
../shared/realstack) and real espeak-ng speech in an mp4: the words must come back.

Skipped with a reason when the shared material or the built bases are absent (.ci/run builds them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jiwer
import pytest
from conftest import espeak, need, run_ffmpeg

from tinyaudio_cli.model.loading import BUNDLED_MODELS
from tinyaudio_cli.normalize import normalize_text

REALSTACK = Path(os.environ.get("TINYAUDIO_REALSTACK_DIR", Path.home() / ".cache" / "tinyaudio" / "realstack"))
BASES = (
    f"openai/whisper-tiny.en={REALSTACK / 'whisper-tiny.en'},"
    f"HuggingFaceTB/SmolLM2-135M-Instruct={REALSTACK / 'smollm2-135m-instruct'}"
)
# sentences in the style of the training data's templates, none of them seen in training
SENTENCES = [
    "The teacher found a small green box near the station.",
    "My brother will visit the museum on Friday.",
    "They bought seven apples at the market.",
]
# measured: see README "A real English model"; the bound leaves room for voices and CPU numerics
MAX_WER = 0.35

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REALSTACK / "BUILD_INFO.json").is_file(), reason=f"real bases not built at {REALSTACK}"),
    pytest.mark.skipif(not (BUNDLED_MODELS["tiny-en"] / "config.json").is_file(), reason="tiny-en not shipped"),
]


def test_tiny_en_transcribes_real_speech_in_an_mp4(tmp_path):
    need("ffmpeg", "espeak-ng")
    wav = tmp_path / "speech.wav"
    pieces = [espeak(tmp_path, sentence, voice="en-us", speed=150) for sentence in SENTENCES]
    import numpy as np
    import soundfile as sf

    gap = np.zeros(16_000, dtype=np.float32)
    sf.write(wav, np.concatenate([gap, pieces[0], gap, pieces[1], gap, pieces[2], gap]), 16_000)
    video = tmp_path / "talk.mp4"
    run_ffmpeg(
        "-f", "lavfi", "-i", "color=c=black:s=64x64:r=10", "-i", wav, "-shortest",
        "-c:v", "mpeg4", "-c:a", "aac", "-ac", "2", "-ar", "44100", video,
    )  # fmt: skip
    env = {**os.environ, "TINYAUDIO_BASES": BASES, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "tinyaudio_cli", "transcribe", str(video), "--srt", "--json", "-m", "tiny-en", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    transcript = json.loads((tmp_path / "talk.json").read_text())
    assert (tmp_path / "talk.srt").read_text().startswith("1\n")
    wer = jiwer.wer(normalize_text(" ".join(SENTENCES)), normalize_text(transcript["text"]))
    assert wer <= MAX_WER, f"WER {wer:.2f}: {transcript['text']!r}"
    assert len(transcript["segments"]) == len(SENTENCES)
