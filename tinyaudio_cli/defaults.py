"""Defaults the CLI and the library share, in a module light enough for `tinyaudio --help`."""

DEFAULT_MODEL = "mazesmazes/tiny-audio"
MODEL_ENV = "TINYAUDIO_MODEL"  # overrides DEFAULT_MODEL for every command
BASES_ENV = "TINYAUDIO_BASES"  # base-model ids mapped to local folders: "id=path,id=path"
