"""Constants the CLI, the library and the model core share, in a module light enough for `tinyaudio --help`
(it imports nothing). An exported model carries this file verbatim."""

DEFAULT_MODEL = "mazesmazes/tiny-audio"
MODEL_ENV = "TINYAUDIO_MODEL"  # overrides DEFAULT_MODEL for every command
BASES_ENV = "TINYAUDIO_BASES"  # base-model ids mapped to local folders: "id=path,id=path"
BUNDLED_MODEL_NAMES = ("tiny-en",)  # checkpoints shipped inside the package (model/loading.py finds them)

SAMPLE_RATE = 16_000  # what Whisper's encoder hears; every decoder resamples to it
WINDOW_SECONDS = 30  # one encoder window
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_SECONDS
# what the Whisper encoder runs over by default: "audio" (each clip or region and AUDIO_PADDING_SECONDS of padding,
# model/context.py) or "full" (30 s windows, as Whisper was trained). With the shipped model on held-out speech
# "audio" is 1.8x faster on clips at the same WER (32.95 % against 33.52 %) and, over nine 3-minute recordings,
# 2.9x faster at 54.30 % against 55.89 % (benchmarks/context_recordings.py; speed.py's own recording alone:
# +7.4 points): the default. Reference mode always runs full windows.
DEFAULT_ENCODER_CONTEXT = "audio"
