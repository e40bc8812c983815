"""What the recipes share: manifests in, 16 kHz clips in (scripts here import it as a sibling module)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile

from tinyaudio_cli.constants import SAMPLE_RATE


def read_manifest(path: Path) -> list[dict]:
    """A JSONL manifest's entries, each `audio` made absolute (it is relative to the manifest)."""
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for entry in entries:
        entry["audio"] = str((path.parent / entry["audio"]).resolve())
    return entries


def read_clip(path: str) -> np.ndarray:
    """A 16 kHz clip as mono float32; anything else stops the recipe (these recipes do not resample)."""
    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise SystemExit(f"{path}: {rate} Hz; the recipes take {SAMPLE_RATE} Hz clips only")
    return audio.mean(axis=1)
