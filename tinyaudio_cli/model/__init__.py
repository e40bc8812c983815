"""The model core: config, MOSA projector, the assembled stack and its loading.

Its modules import only each other (an exported model carries them verbatim), and this package imports them
lazily: tinyaudio_cli.errors and tinyaudio_cli.constants live here, and importing them must not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import TinyAudioConfig
    from .loading import DEFAULT_MODEL, create_model, load_model, resolve_model_dir
    from .modeling import ATTENTION_MODES, DEFAULT_MODE, TinyAudioModel, Transcription
    from .projector import MOSAProjector

_EXPORTS = {
    "ATTENTION_MODES": "modeling",
    "DEFAULT_MODE": "modeling",
    "DEFAULT_MODEL": "loading",
    "MOSAProjector": "projector",
    "TinyAudioConfig": "config",
    "TinyAudioModel": "modeling",
    "Transcription": "modeling",
    "create_model": "loading",
    "load_model": "loading",
    "resolve_model_dir": "loading",
}

__all__ = [
    "ATTENTION_MODES",
    "DEFAULT_MODE",
    "DEFAULT_MODEL",
    "MOSAProjector",
    "TinyAudioConfig",
    "TinyAudioModel",
    "Transcription",
    "create_model",
    "load_model",
    "resolve_model_dir",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
