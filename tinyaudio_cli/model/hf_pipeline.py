"""The Hugging Face entry points of an exported model: AutoConfig, AutoModelForSpeechSeq2Seq and the
`automatic-speech-recognition` pipeline, for `trust_remote_code=True`.

`tinyaudio export` copies this module and the model/ modules it imports into the exported folder, byte for
byte and under their own names (see `tinyaudio_cli.hub.transfer.remote_code`), and points config.json's
`auto_map` and `custom_pipelines` here, so

    transformers.pipeline("automatic-speech-recognition", model=FOLDER_OR_REPO, trust_remote_code=True)

runs tinyaudio's own model code without tinyaudio installed. Its transcript equals `tinyaudio transcribe
--no-vad` on the same clip: the same window decoding (greedy, trimmed attention unless mode="reference",
the same token budget and repetition guard); audio longer than 30 s is read as consecutive windows.
"""

from __future__ import annotations

import subprocess
from typing import Any

import numpy as np
import torch
from transformers import Pipeline, PretrainedConfig, PreTrainedModel

from .config import MODEL_TYPE
from .constants import SAMPLE_RATE, WINDOW_SAMPLES
from .decoding import guarded_text, token_budget
from .loading import load_model
from .modeling import ATTENTION_MODES, DEFAULT_MODE


class TinyAudioHfConfig(PretrainedConfig):
    """config.json as transformers reads it; tinyaudio's TinyAudioConfig reads the same file."""

    model_type = MODEL_TYPE


class TinyAudioForSpeechSeq2Seq(PreTrainedModel):
    """The assembled TinyAudioModel (Whisper encoder → MOSA projector → LM) behind the Auto classes."""

    config_class = TinyAudioHfConfig
    main_input_name = "input_features"

    def __init__(self, config: TinyAudioHfConfig, core: torch.nn.Module | None = None) -> None:
        super().__init__(config)
        self.core = core

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        pretrained_model_name_or_path: Any,
        *args: Any,
        config: PretrainedConfig | None = None,
        dtype: Any = "auto",
        device_map: Any = None,
        revision: str | None = None,
        **kwargs: Any,
    ) -> TinyAudioForSpeechSeq2Seq:
        """Load as tinyaudio does: this projector, the encoder and LM from their own base repos (safetensors only)."""
        device = device_map if isinstance(device_map, (str, torch.device)) else "auto"
        core = load_model(str(pretrained_model_name_or_path), device=device, dtype=dtype or "auto", revision=revision)
        if not isinstance(config, PretrainedConfig):
            config = cls.config_class.from_dict(core.config.to_dict())
        return cls(config, core)

    @torch.inference_mode()
    def transcribe(self, audio: np.ndarray, mode: str = DEFAULT_MODE, max_new_tokens: int | None = None) -> str:
        """16 kHz mono float32 audio of any length → text, one 30 s window after another."""
        texts = [
            self.window_text(audio[start : start + WINDOW_SAMPLES], mode, max_new_tokens)
            for start in range(0, len(audio), WINDOW_SAMPLES)
        ]
        return " ".join(text for text in texts if text)

    def window_text(self, samples: np.ndarray, mode: str, max_new_tokens: int | None) -> str:
        """One window decoded as `tinyaudio transcribe --no-vad` decodes its single window (transcribe.py)."""
        core = self.core
        _, (projected,) = core.encode_audio([samples], mode)  # the encoder context transcribe uses
        first, last = core.frame_span(0, len(samples)) if mode == "trimmed" else (0, len(projected))
        budget = token_budget(core, len(samples) / SAMPLE_RATE, max_new_tokens)  # None: from the window's length
        token_ids = core.generate_from_frames([projected[first:last]], mode, [budget])[0]
        return guarded_text(core, token_ids)[0]


class TinyAudioASRPipeline(Pipeline):
    """`automatic-speech-recognition` with a Tiny Audio model: {"text": ...} for each input.

    Inputs as the standard ASR pipeline takes them: a file path, encoded bytes (decoded by ffmpeg), a 16 kHz
    float array, or {"raw" or "array": samples, "sampling_rate": rate}. Options: `mode` ("trimmed" or
    "reference") and `max_new_tokens` (also accepted inside `generate_kwargs`).
    """

    # the model carries its own tokenizer and feature extractor, loaded with it
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False

    def _sanitize_parameters(
        self,
        mode: str | None = None,
        max_new_tokens: int | None = None,
        generate_kwargs: dict[str, Any] | None = None,
        **unsupported: Any,
    ) -> tuple[dict, dict, dict]:
        if unsupported:
            raise ValueError(f"the Tiny Audio pipeline does not support {', '.join(sorted(unsupported))}")
        generate_kwargs = dict(generate_kwargs or {})
        max_new_tokens = max_new_tokens or generate_kwargs.pop("max_new_tokens", None)
        if generate_kwargs:
            raise ValueError(f"the Tiny Audio pipeline decodes greedily; unsupported: {', '.join(generate_kwargs)}")
        forward: dict[str, Any] = {}
        if mode is not None:
            if mode not in ATTENTION_MODES:
                raise ValueError(f"unknown mode {mode!r}; choose from {ATTENTION_MODES}")
            forward["mode"] = mode
        if max_new_tokens is not None:
            forward["max_new_tokens"] = max_new_tokens
        return {}, forward, {}

    def preprocess(self, inputs: Any) -> dict[str, np.ndarray]:
        return {"audio": audio_array(inputs)}

    def _forward(self, model_inputs: dict, mode: str = DEFAULT_MODE, max_new_tokens: int | None = None) -> dict:
        return {"text": self.model.transcribe(model_inputs["audio"], mode, max_new_tokens)}

    def postprocess(self, model_outputs: dict) -> dict[str, str]:
        return {"text": model_outputs["text"]}


def audio_array(inputs: Any) -> np.ndarray:
    """Pipeline input → 16 kHz mono float32 samples, decoded and resampled by ffmpeg like the standard pipeline."""
    from transformers.pipelines.audio_utils import ffmpeg_read

    if isinstance(inputs, str):
        with open(inputs, "rb") as handle:
            inputs = handle.read()
    if isinstance(inputs, (bytes, bytearray)):
        return ffmpeg_read(bytes(inputs), SAMPLE_RATE).copy()  # writable, as torch wants it
    rate = SAMPLE_RATE
    if isinstance(inputs, dict):
        rate = int(inputs["sampling_rate"])
        inputs = inputs["raw"] if inputs.get("raw") is not None else inputs["array"]
    audio = np.asarray(inputs, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio (one dimension), got shape {audio.shape}")
    return audio if rate == SAMPLE_RATE else resample(audio, rate)


def resample(audio: np.ndarray, rate: int) -> np.ndarray:
    """Raw float32 samples at `rate` → 16 kHz through ffmpeg, the resampler files go through too."""
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "f32le", "-ar", str(rate), "-ac", "1"]
    command += ["-i", "pipe:0", "-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1", "pipe:1"]
    result = subprocess.run(command, input=audio.tobytes(), capture_output=True, check=True)
    return np.frombuffer(result.stdout, dtype=np.float32).copy()
