"""recipes/augment_speech.py: recordings made from single-utterance clips keep every word and every sample."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
RATE = 16_000


def test_augmented_recordings_hold_their_clips_with_silence_around(tmp_path: Path) -> None:
    clips = {}
    for index, text in enumerate(["One two.", "Three four five.", "Six."]):
        tone = 0.3 * np.sin(2 * np.pi * (200 + 100 * index) * np.arange(RATE // 2 + index * 800) / RATE)
        sf.write(tmp_path / f"c{index}.wav", tone.astype(np.float32), RATE, subtype="PCM_16")
        clips[text] = len(tone)
    manifest = tmp_path / "in.jsonl"
    manifest.write_text("".join(json.dumps({"audio": f"c{i}.wav", "text": t}) + "\n" for i, t in enumerate(clips)))

    out = tmp_path / "out" / "mix"
    command = [sys.executable, ROOT / "recipes" / "augment_speech.py", manifest, out, "--count", "12", "--seed", "5"]
    subprocess.run(command, check=True, capture_output=True)
    records = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    assert len(records) == 12
    used = []
    for record in records:
        audio, rate = sf.read(out.parent / record["audio"], dtype="float32")
        assert rate == RATE and record["seconds"] == round(len(audio) / RATE, 3)
        utterances = record["text"].replace(". ", ".|").split("|")
        assert 1 <= len(utterances) <= 3 and set(utterances) <= set(clips)
        assert len(audio) >= sum(clips[text] for text in utterances)  # every clip whole, plus silence and pauses
        assert np.abs(audio).max() <= 1.0
        used.extend(utterances)
    assert set(used) == set(clips)  # every input clip is drawn
    assert any(len(r["text"].split(". ")) > 1 for r in records)  # some recordings join several utterances
