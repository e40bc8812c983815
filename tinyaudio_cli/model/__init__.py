"""The model core: config, MOSA projector, the assembled stack and its loading."""

from .config import TinyAudioConfig
from .loading import DEFAULT_MODEL, create_model, load_model, resolve_model_dir
from .modeling import ATTENTION_MODES, DEFAULT_MODE, TinyAudioModel, Transcription
from .projector import MOSAProjector

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
