"""The shipped `tiny-en` model on REAL bases (Whisper tiny.en + SmolLM2-135M-Instruct built by
../shared/realstack) and real espeak-ng speech in an mp4: the words must come back.

Skipped with a reason when the shared material or the built bases are absent (.ci/run builds them).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
import srt
from conftest import need, run_ffmpeg

from tinyaudio_cli.evaluation.normalize import normalize_text
from tinyaudio_cli.model.loading import BUNDLED_MODELS

REALSTACK = Path(os.environ.get("TINYAUDIO_REALSTACK_DIR", Path.home() / ".cache" / "tinyaudio" / "realstack"))
BASES = (
    f"openai/whisper-tiny.en={REALSTACK / 'whisper-tiny.en'},"
    f"HuggingFaceTB/SmolLM2-135M-Instruct={REALSTACK / 'smollm2-135m-instruct'}"
)
# held-out sentences of the training data's generator (../shared/realstack/make_speech.py, seed 1234: never in
# its training split), each in one of its voices
SENTENCES = [
    ("We will meet at two on Saturday.", "en-us+f4", 152),
    ("My grandmother likes books more than questions.", "en-gb+f1", 160),
    ("Where did you put the dark table?", "en-029+m1", 152),
]
# measured 2026-11-25: 0.43 for the sentences alone (9 of 21 words wrong, all content words) and 0.29 in the
# recording (the model as first shipped, trained on clean clips only: 0.29 alone, 1.19 in the recording);
# 34.89 % on 360 held-out utterances. The bound leaves room for other espeak-ng and ffmpeg builds.
MAX_WER = 0.55
PAUSES = (0.8, 1.0, 1.3, 0.6)  # seconds of silence before, between and after the sentences of the recording

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REALSTACK / "BUILD_INFO.json").is_file(), reason=f"real bases not built at {REALSTACK}"),
    pytest.mark.skipif(not (BUNDLED_MODELS["tiny-en"] / "config.json").is_file(), reason="tiny-en not shipped"),
]


def test_tiny_en_transcribes_real_speech_in_mp4s(tmp_path):
    """Each sentence alone in a video, and all of them in one recording with pauses around and between them
    (the voice detector's regions then carry silence before and after the speech)."""
    need("ffmpeg", "espeak-ng")
    videos = tmp_path / "videos"
    videos.mkdir()
    spoken = []
    for index, (sentence, voice, speed) in enumerate(SENTENCES):
        wav = tmp_path / f"{index}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", wav, sentence], check=True)
        to_mp4(wav, videos / f"talk{index}.mp4")
        audio, rate = sf.read(wav, dtype="float32")
        spoken.append(audio)
    pauses = [np.zeros(int(seconds * rate), np.float32) for seconds in PAUSES]
    meeting = np.concatenate([pauses[0], *(part for pair in zip(spoken, pauses[1:], strict=True) for part in pair)])
    sf.write(tmp_path / "meeting.wav", meeting, rate)
    to_mp4(tmp_path / "meeting.wav", videos / "meeting.mp4")

    env = {**os.environ, "TINYAUDIO_BASES": BASES, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "tinyaudio_cli", "transcribe", str(videos), "--srt", "--json", "-m", "tiny-en"]
    result = subprocess.run([*command, "-q"], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    reference = normalize_text(" ".join(sentence for sentence, _, _ in SENTENCES))
    alone = [json.loads((videos / f"talk{index}.json").read_text())["text"] for index in range(len(SENTENCES))]
    wer_alone = jiwer.wer(reference, normalize_text(" ".join(alone)))
    assert wer_alone <= MAX_WER, f"WER {wer_alone:.2f}: {alone!r}"

    cues = list(srt.parse((videos / "meeting.srt").read_text()))
    assert cues and all(a.end <= b.start for a, b in itertools.pairwise(cues))
    assert cues[-1].end.total_seconds() <= len(meeting) / rate + 0.1
    together = json.loads((videos / "meeting.json").read_text())["text"]
    assert normalize_text(" ".join(cue.content for cue in cues)) == normalize_text(together)
    wer_together = jiwer.wer(reference, normalize_text(together))
    assert wer_together <= MAX_WER, f"WER {wer_together:.2f}: {together!r}"


def to_mp4(wav: Path, mp4: Path) -> None:
    """A video with the speech as AAC stereo at 44.1 kHz beside a black picture."""
    run_ffmpeg(
        "-f", "lavfi", "-i", "color=c=black:s=64x64:r=10", "-i", wav, "-shortest",
        "-c:v", "mpeg4", "-c:a", "aac", "-ac", "2", "-ar", "44100", mp4,
    )  # fmt: skip
