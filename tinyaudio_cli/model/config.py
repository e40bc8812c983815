"""`config.json` of a Tiny Audio checkpoint, read and written faithfully.

The published layout (model_type "asr_model") carries far more keys than tinyaudio uses. Every key
we do not model is kept verbatim in `extra`, so load → save never loses information.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

CONFIG_NAME = "config.json"
MODEL_TYPE = "asr_model"
DEFAULT_AUDIO_MODEL = "openai/whisper-large-v3-turbo"
DEFAULT_TEXT_MODEL = "HuggingFaceTB/SmolLM3-3B"
DEFAULT_PROJECTOR_HIDDEN = 4096
DEFAULT_NUM_EXPERTS = 4
AUDIO_TOKEN = "<audio>"


@dataclass
class TinyAudioConfig:
    audio_model_id: str = DEFAULT_AUDIO_MODEL
    text_model_id: str = DEFAULT_TEXT_MODEL
    system_prompt: str = "/no_think /system_override"
    user_prompt: str = f"Transcribe: {AUDIO_TOKEN}"
    encoder_dim: int | None = None
    llm_dim: int | None = None
    projector_type: str = "moe"
    # null in the published config means the reference default
    projector_hidden_dim: int | None = None
    num_experts: int = DEFAULT_NUM_EXPERTS
    projector_dropout: float = 0.05
    model_dtype: str = "bfloat16"
    attn_implementation: str | None = None
    max_new_tokens: int = 256
    min_new_tokens: int = 0
    num_beams: int = 1
    do_sample: bool = False
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def expert_hidden_dim(self) -> int:
        return self.projector_hidden_dim or DEFAULT_PROJECTOR_HIDDEN

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TinyAudioConfig:
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {key: value for key, value in data.items() if key in known and value is not None}
        # projector_hidden_dim is the one key whose null is meaningful: keep it as None
        values["projector_hidden_dim"] = data.get("projector_hidden_dim")
        extra = {key: value for key, value in data.items() if key not in known}
        return cls(**values, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.extra)
        data.setdefault("model_type", MODEL_TYPE)
        for f in fields(self):
            if f.name != "extra":
                data[f.name] = getattr(self, f.name)
        return dict(sorted(data.items()))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> TinyAudioConfig:
        path = Path(folder) / CONFIG_NAME
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))

    def save_pretrained(self, folder: str | Path) -> Path:
        path = Path(folder) / CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path
