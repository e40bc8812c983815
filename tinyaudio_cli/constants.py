"""Constants the CLI, the library and the model core share (defined in model/constants.py, which an exported
model carries verbatim). Light enough for `tinyaudio --help`: it imports nothing else."""

from .model.constants import (
    BASES_ENV,
    BUNDLED_MODEL_NAMES,
    DEFAULT_ENCODER_CONTEXT,
    DEFAULT_MODEL,
    MODEL_ENV,
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    WINDOW_SECONDS,
)

__all__ = [
    "BASES_ENV",
    "BUNDLED_MODEL_NAMES",
    "DEFAULT_ENCODER_CONTEXT",
    "DEFAULT_MODEL",
    "MODEL_ENV",
    "SAMPLE_RATE",
    "WINDOW_SAMPLES",
    "WINDOW_SECONDS",
]
