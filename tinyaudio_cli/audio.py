"""Audio facts every part of tinyaudio shares; decoding through ffmpeg lives here too."""

from __future__ import annotations

SAMPLE_RATE = 16_000
WINDOW_SECONDS = 30
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_SECONDS
