"""Constants the CLI, the library and the model core share, in a module light enough for `tinyaudio --help`
(it imports nothing). An exported model carries this file verbatim."""

DEFAULT_MODEL = "mazesmazes/tiny-audio"
MODEL_ENV = "TINYAUDIO_MODEL"  # overrides DEFAULT_MODEL for every command
BASES_ENV = "TINYAUDIO_BASES"  # base-model ids mapped to local folders: "id=path,id=path"
BUNDLED_MODEL_NAMES = ("tiny-en",)  # checkpoints shipped inside the package (model/loading.py finds them)

SAMPLE_RATE = 16_000  # what Whisper's encoder hears; every decoder resamples to it
WINDOW_SECONDS = 30  # one encoder window
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_SECONDS
# what the Whisper encoder runs over by default: "full" (30 s windows, as Whisper was trained) or "audio" (each
# clip or region and AUDIO_PADDING_SECONDS of padding, model/context.py). "audio" is 2-3x faster and as accurate
# on clips, but cost the shipped model 7.4 points of WER on a 3-minute recording: full stays the default
DEFAULT_ENCODER_CONTEXT = "full"
