"""Constants the CLI, the library and the model core share, in a module light enough for `tinyaudio --help`
(it imports nothing). `model/` may import it; an exported model carries a copy."""

DEFAULT_MODEL = "mazesmazes/tiny-audio"
MODEL_ENV = "TINYAUDIO_MODEL"  # overrides DEFAULT_MODEL for every command
BASES_ENV = "TINYAUDIO_BASES"  # base-model ids mapped to local folders: "id=path,id=path"

SAMPLE_RATE = 16_000  # what Whisper's encoder hears; every decoder resamples to it
WINDOW_SECONDS = 30  # one encoder window
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_SECONDS
# what the Whisper encoder runs over by default: "audio" (each clip and some padding) or "full" (30 s windows)
DEFAULT_ENCODER_CONTEXT = "audio"
