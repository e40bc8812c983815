"""tinyaudio: LLM-based speech recognition (Whisper encoder -> MOSA projector -> causal LM).

The public API is imported lazily, so `tinyaudio --help` does not pay for torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "tinyaudio_cli.model",
    "create_model": "tinyaudio_cli.model",
    "TinyAudioModel": "tinyaudio_cli.model",
    "TinyAudioConfig": "tinyaudio_cli.model",
    "Transcription": "tinyaudio_cli.model",
    "MOSAProjector": "tinyaudio_cli.model",
    "Segment": "tinyaudio_cli.inference.records",
    "Transcript": "tinyaudio_cli.inference.records",
    "TinyAudioError": "tinyaudio_cli.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tinyaudio_cli' has no attribute {name!r}")
