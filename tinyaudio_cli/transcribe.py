"""`from tinyaudio_cli.transcribe import transcribe`, as the README shows it: the pipeline itself lives in
inference/transcribe.py."""

from .inference.transcribe import AudioInput, NamedAudio, TranscribeOptions, transcribe, transcribe_files

__all__ = ["AudioInput", "NamedAudio", "TranscribeOptions", "transcribe", "transcribe_files"]
