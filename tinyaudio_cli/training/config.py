"""A training run's settings: TrainConfig with the metadata its flags are built from, the presets, YAML
config files, `--set key=value`, and the files a run writes.

This module imports in milliseconds (no torch, no numpy): `tinyaudio --help` builds the train command's
flags from TrainConfig.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

from ..data.naming import DataSource
from ..errors import TinyAudioError
from .resume import (
    CACHE_DIR_NAME,
    CONFIG_FILE_NAME,
    latest_checkpoint,
)
from .smoke import SMOKE_AUDIO, SMOKE_DEV, SMOKE_TEXT, SMOKE_TRAIN

# -- facts of the recipe --------------------------------------------------------------------------------

WINDOW_SECONDS = 30.0
PROJECTOR_STRIDE = 4  # encoder frames per projector frame (model.projector.STRIDE)
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
# HF Trainer's rule for parameters without weight decay (Trainer.get_decay_parameter_names)
NO_DECAY_PATTERNS = (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)")
SKIP_REASONS = ("undecodable", "empty_text", "too_long")
DEV_SPLITS = ("dev", "validation")
TRAIN_SPLIT = "train"
DEV_FALLBACK_SPLIT = "validation"
PREFETCH_GROUPS = 2  # optimizer steps of data prepared ahead by the loader thread
MAX_CONSECUTIVE_SKIPS = 1_000  # a source that yields nothing usable for this long is broken, not noisy

DEFAULT_AUDIO_MODEL = "openai/whisper-large-v3-turbo"  # = model.config.DEFAULT_AUDIO_MODEL
DEFAULT_TEXT_MODEL = "HuggingFaceTB/SmolLM3-3B"  # = model.config.DEFAULT_TEXT_MODEL
TINY_EN_AUDIO_MODEL = "openai/whisper-tiny.en"
TINY_EN_TEXT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"

MODEL_PANEL, DATA_PANEL, OPTIM_PANEL = "Model", "Data", "Optimisation"
AUGMENT_PANEL, OUTPUT_PANEL, PERF_PANEL = "SpecAugment", "Checkpoints and logging", "Performance"

BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
# A Whisper-normalised transcript is lower case; these restore the case written English always has.
PRONOUN_I = re.compile(r"\bi\b")


def _meta(help: str, panel: str, flag: str | None = None, short: str | None = None) -> dict[str, Any]:
    """Field metadata the CLI turns into a flag: help text, help panel, flag name if not the field's."""
    return {"help": help, "panel": panel, "flag": flag, "short": short}


# -- configuration ------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Every knob of a training run. The defaults are the reference recipe (LoquaciousSet, 24 h on one GPU,
    12.14% WER), except the data, which a preset, a config file or `--data` names."""

    # model
    encoder: str = field(
        default=DEFAULT_AUDIO_MODEL,
        metadata=_meta("Whisper checkpoint whose encoder feeds the projector (Hub id or folder; frozen).", MODEL_PANEL),
    )
    llm: str = field(default=DEFAULT_TEXT_MODEL, metadata=_meta("Causal LM (Hub id or folder; frozen).", MODEL_PANEL))
    experts: int = field(default=4, metadata=_meta("Projector experts.", MODEL_PANEL))
    hidden_dim: int | None = field(
        default=None, metadata=_meta("Hidden size of each projector expert (default 4096).", MODEL_PANEL)
    )
    projector_dropout: float = field(default=0.05, metadata=_meta("Dropout inside the projector experts.", MODEL_PANEL))
    system_prompt: str | None = field(
        default=None, metadata=_meta("System prompt of the chat (default: the checkpoint format's).", MODEL_PANEL)
    )
    init_from: str | None = field(
        default=None,
        metadata=_meta(
            "Continue from this checkpoint's projector (folder or Hub id); its bases and projector shape win.",
            MODEL_PANEL,
        ),
    )
    # data
    train_data: list[DataSource] = field(
        default_factory=list,
        metadata=_meta(
            "Training set NAME[,key=value...] as eval names one (a registered set, Hub id, folder, Parquet file or "
            "manifest; config=, split=, audio_column=, text_column=, id_column=, data_dir=); repeatable, mixed by "
            "weight=.",
            DATA_PANEL,
            flag="data",
        ),
    )
    dev_data: list[DataSource] = field(
        default_factory=list,
        metadata=_meta("Dev set for periodic evaluation, same syntax; repeatable.", DATA_PANEL, flag="dev-data"),
    )
    max_audio_seconds: float = field(
        default=30.0, metadata=_meta("Skip (and count) longer utterances; at most 30.", DATA_PANEL)
    )
    normalize_targets: bool = field(
        default=True,
        metadata=_meta("Targets: Whisper-normalised, fillers and tags removed, truecased (else as given).", DATA_PANEL),
    )
    eval_loss_samples: int = field(default=500, metadata=_meta("Dev utterances for the dev loss.", DATA_PANEL))
    eval_wer_samples: int = field(default=100, metadata=_meta("Dev utterances transcribed for the WER.", DATA_PANEL))
    # optimisation
    max_steps: int = field(default=20_000, metadata=_meta("Optimizer steps.", OPTIM_PANEL))
    learning_rate: float = field(default=1e-4, metadata=_meta("Peak learning rate (AdamW).", OPTIM_PANEL))
    lr_scheduler: str = field(
        default="cosine", metadata=_meta(f"Learning-rate schedule: {', '.join(SCHEDULERS)}.", OPTIM_PANEL)
    )
    warmup_steps: int = field(default=500, metadata=_meta("Linear warm-up steps.", OPTIM_PANEL))
    batch_size: int = field(default=14, metadata=_meta("Utterances per micro-batch on each device.", OPTIM_PANEL))
    grad_accum: int = field(default=2, metadata=_meta("Micro-batches accumulated per optimizer step.", OPTIM_PANEL))
    weight_decay: float = field(
        default=0.01, metadata=_meta("AdamW weight decay (not on biases or norms).", OPTIM_PANEL)
    )
    adam_beta1: float = field(default=0.9, metadata=_meta("AdamW β1.", OPTIM_PANEL))
    adam_beta2: float = field(default=0.999, metadata=_meta("AdamW β2.", OPTIM_PANEL))
    adam_epsilon: float = field(default=1e-8, metadata=_meta("AdamW ε.", OPTIM_PANEL))
    max_grad_norm: float = field(default=1.0, metadata=_meta("Gradient clipping norm (0: none).", OPTIM_PANEL))
    label_smoothing: float = field(default=0.0, metadata=_meta("Label smoothing of the cross-entropy.", OPTIM_PANEL))
    lm_weight: float = field(
        default=1.0,
        metadata=_meta("Weight of the LM's cross-entropy on the transcript (0: CTC only, no LM pass).", OPTIM_PANEL),
    )
    ctc_weight: float = field(
        default=0.0,
        metadata=_meta(
            "Weight of an auxiliary CTC loss scoring the projector's frames against the LM's own token "
            "embeddings (speeds up learning on small data).",
            OPTIM_PANEL,
        ),
    )
    seed: int = field(default=42, metadata=_meta("Seed of initialisation, data order, dropout, masks.", OPTIM_PANEL))
    # SpecAugment on the log-mel features (Whisper's implementation)
    mask_time_prob: float = field(default=0.10, metadata=_meta("Time-mask probability.", AUGMENT_PANEL))
    mask_time_length: int = field(default=10, metadata=_meta("Time-mask length in mel frames.", AUGMENT_PANEL))
    mask_time_min_masks: int = field(default=2, metadata=_meta("Time masks per utterance, at least.", AUGMENT_PANEL))
    mask_feature_prob: float = field(default=0.0, metadata=_meta("Feature-mask probability.", AUGMENT_PANEL))
    mask_feature_length: int = field(default=10, metadata=_meta("Feature-mask length in mel bins.", AUGMENT_PANEL))
    mask_feature_min_masks: int = field(default=0, metadata=_meta("Feature masks, at least.", AUGMENT_PANEL))
    # checkpoints and logging
    output_dir: str = field(
        default="runs/tinyaudio", metadata=_meta("Run folder: checkpoints, metrics, plots.", OUTPUT_PANEL, short="-o")
    )
    save_steps: int = field(default=500, metadata=_meta("Checkpoint every N steps (and at the end).", OUTPUT_PANEL))
    keep_last: int = field(default=5, metadata=_meta("Checkpoints kept (0: all).", OUTPUT_PANEL))
    eval_steps: int = field(
        default=1000, metadata=_meta("Evaluate every N steps (and at the end; 0: never).", OUTPUT_PANEL)
    )
    log_steps: int = field(default=25, metadata=_meta("Log metrics every N steps.", OUTPUT_PANEL))
    save_dtype: str = field(
        default="auto", metadata=_meta("Dtype of saved projector weights (auto: the frozen parts').", OUTPUT_PANEL)
    )
    tensorboard: bool = field(default=True, metadata=_meta("Also write TensorBoard event files.", OUTPUT_PANEL))
    # performance
    device: str = field(default="auto", metadata=_meta("auto, cpu, cuda or cuda:N.", PERF_PANEL))
    dtype: str = field(
        default="auto",
        metadata=_meta("Frozen parts' dtype: auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16; "
                       "the projector always trains in float32 under autocast.", PERF_PANEL),
    )  # fmt: skip
    gradient_checkpointing: bool = field(
        default=False, metadata=_meta("Recompute LM activations in the backward pass (less memory).", PERF_PANEL)
    )
    cache_encoder: bool = field(
        default=False,
        metadata=_meta("Cache frozen encoder outputs per utterance (fast multi-epoch CPU training; "
                       "needs SpecAugment off).", PERF_PANEL),
    )  # fmt: skip
    cache_dir: str | None = field(
        default=None, metadata=_meta(f"Encoder cache folder (default OUTPUT_DIR/{CACHE_DIR_NAME}).", PERF_PANEL)
    )
    eval_batch_size: int = field(default=8, metadata=_meta("Utterances per batch when evaluating.", PERF_PANEL))
    tf32: bool = field(default=True, metadata=_meta("TF32 matmuls on Ampere+ GPUs.", PERF_PANEL))

    # -- (de)serialisation --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in SOURCE_FIELDS:
            data[name] = [source.to_dict() for source in data[name]]
        return data

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def with_values(self, values: dict[str, Any]) -> TrainConfig:
        """A copy with `values` applied; keys are field names (dashes allowed), values coerced to the field's type."""
        changes = {}
        for key, value in values.items():
            name = field_name(key)
            changes[name] = coerce_value(name, value)
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        problems = []

        def check(ok: bool, message: str) -> None:
            if not ok:
                problems.append(message)

        check(bool(self.train_data), "no training data: pass --data PATH (repeatable) or a --preset")
        for name in ("max_steps", "batch_size", "grad_accum", "experts", "eval_batch_size", "log_steps"):
            check(getattr(self, name) >= 1, f"{name} must be at least 1")
        for name in ("warmup_steps", "save_steps", "eval_steps", "keep_last", "eval_loss_samples", "eval_wer_samples"):
            check(getattr(self, name) >= 0, f"{name} must not be negative")
        check(self.learning_rate > 0, "learning_rate must be positive")
        check(self.lm_weight >= 0 and self.ctc_weight >= 0, "lm_weight and ctc_weight must not be negative")
        check(self.lm_weight + self.ctc_weight > 0, "lm_weight and ctc_weight cannot both be 0")
        check(self.lr_scheduler in SCHEDULERS, f"lr_scheduler must be one of {', '.join(SCHEDULERS)}")
        check(0 < self.max_audio_seconds <= WINDOW_SECONDS, f"max_audio_seconds must be in (0, {WINDOW_SECONDS:g}]")
        for name in ("mask_time_prob", "mask_feature_prob", "projector_dropout", "label_smoothing"):
            check(0.0 <= getattr(self, name) <= 1.0, f"{name} must be between 0 and 1")
        check(self.mask_time_length >= 1 and self.mask_feature_length >= 1, "mask lengths must be at least 1")
        check(self.hidden_dim is None or self.hidden_dim >= 1, "hidden_dim must be at least 1")
        check(self.dtype in DTYPE_CHOICES, f"dtype must be one of {', '.join(DTYPE_CHOICES)}")
        check(self.save_dtype in DTYPE_CHOICES, f"save_dtype must be one of {', '.join(DTYPE_CHOICES)}")
        check(
            not (self.cache_encoder and self.spec_augment),
            "cache_encoder reuses encoder outputs, so SpecAugment (on the features before the encoder) cannot "
            "apply: also pass --mask-time-prob 0 (and --mask-feature-prob 0)",
        )
        if problems:
            raise TinyAudioError("bad training config: " + "; ".join(problems))

    @property
    def spec_augment(self) -> bool:
        return self.mask_time_prob > 0 or self.mask_feature_prob > 0


SOURCE_FIELDS = ("train_data", "dev_data")
FIELD_TYPES: dict[str, Any] = get_type_hints(TrainConfig)
FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))
FLAG_NAMES = {f.metadata["flag"].replace("-", "_"): f.name for f in fields(TrainConfig) if f.metadata["flag"]}

LOQUACIOUS = "loquacious"
PRESETS: dict[str, dict[str, Any]] = {
    # the reference recipe: TrainConfig's defaults on LoquaciousSet (medium), on one or more GPUs
    "loquacious": {
        "train_data": [{"path": LOQUACIOUS, "config": "medium", "split": "train"}],
        "dev_data": [{"path": LOQUACIOUS, "config": "medium", "split": "dev"}],
        "output_dir": "runs/loquacious",
    },
    # a minute on a CPU, offline: tiny random bases and espeak-ng speech made locally (smoke.py); checks the pipeline
    "smoke": {
        "encoder": SMOKE_AUDIO,
        "llm": SMOKE_TEXT,
        "experts": 2,
        "hidden_dim": 64,
        "train_data": [SMOKE_TRAIN],
        "dev_data": [SMOKE_DEV],
        "max_audio_seconds": 20.0,
        "max_steps": 40,
        "warmup_steps": 4,
        "learning_rate": 1e-3,
        "batch_size": 4,
        "grad_accum": 1,
        "save_steps": 20,
        "eval_steps": 20,
        "log_steps": 5,
        "keep_last": 2,
        "eval_loss_samples": 16,
        "eval_wer_samples": 8,
        "dtype": "float32",
        "output_dir": "runs/smoke",
    },
    # Whisper tiny.en + SmolLM2-135M-Instruct on a CPU: encoder outputs cached (so no SpecAugment), a projector
    # of 8.4 MB in float16; the settings the shipped tiny-en model was trained with (its model card has the
    # commands: 500 steps and 3000 more on 4000 espeak-ng utterances, then 1000 at lr 3e-4 with recordings
    # made by recipes/augment_speech.py mixed in)
    "tiny-en": {
        "encoder": TINY_EN_AUDIO_MODEL,
        "llm": TINY_EN_TEXT_MODEL,
        "experts": 4,
        "hidden_dim": 512,
        "train_data": [{"path": LOQUACIOUS, "config": "small", "split": "train"}],
        "dev_data": [{"path": LOQUACIOUS, "config": "small", "split": "dev"}],
        "max_steps": 4000,
        "warmup_steps": 20,
        "learning_rate": 1e-3,
        "batch_size": 4,
        "grad_accum": 1,
        "save_steps": 100,
        "eval_steps": 250,
        "log_steps": 10,
        "keep_last": 2,
        "eval_loss_samples": 20,
        "eval_wer_samples": 20,
        "mask_time_prob": 0.0,
        "cache_encoder": True,
        "dtype": "float32",
        "save_dtype": "float16",
        "output_dir": "runs/tiny-en",
    },
}


def field_name(key: str) -> str:
    """The TrainConfig field a YAML key, --set key or flag name means (`data` is train_data's flag)."""
    name = key.strip().replace("-", "_")
    name = FLAG_NAMES.get(name, name)
    if name not in FIELD_NAMES:
        close = difflib.get_close_matches(name, FIELD_NAMES, n=1)
        raise TinyAudioError(
            f"unknown training setting {key!r}", hint=f"did you mean {close[0]}?" if close else "see tinyaudio train -h"
        )
    return name


def coerce_value(name: str, value: Any) -> Any:
    """A value from YAML, a flag or `--set` as the field's type (`--set lr=1e-4` arrives as a string)."""
    if name in SOURCE_FIELDS:
        items = value if isinstance(value, list) else [part for part in str(value).split(";") if part.strip()]
        return [DataSource.parse(item) for item in items]
    hint = FIELD_TYPES[name]
    options = [arg for arg in get_args(hint) if arg is not type(None)]
    optional = len(options) < len(get_args(hint))
    kind = options[0] if options else hint
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        if optional:
            return None
        raise TinyAudioError(f"{name} needs a value")
    try:
        return _as_type(kind, value)
    except (TypeError, ValueError) as error:
        raise TinyAudioError(f"{name} must be {kind.__name__}, got {value!r}") from error


def _as_type(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word not in BOOL_WORDS:
            raise ValueError(value)
        return BOOL_WORDS[word]
    if kind is int:
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)  # accepts "2e4" and 20000.0, refuses 2.5
        if not number.is_integer():
            raise ValueError(value)
        return int(number)
    if kind is float:
        if isinstance(value, bool):
            raise TypeError(value)
        return float(value)
    return str(value)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML (or JSON) mapping of TrainConfig keys; `preset: NAME` bases it on a preset."""
    import yaml

    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise TinyAudioError(f"cannot read training config {path}: {error}") from error
    if not isinstance(data, dict):
        raise TinyAudioError(f"{path} must hold a mapping of training settings")
    return data


def preset_config(name: str | None) -> TrainConfig:
    if name is None:
        return TrainConfig()
    if name not in PRESETS:
        raise TinyAudioError(f"unknown preset {name!r}", hint=f"choose from {', '.join(PRESETS)}")
    return TrainConfig().with_values(PRESETS[name])


def resolve_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    resume: bool = False,
) -> TrainConfig:
    """Defaults ← preset ← config file ← overrides; with `resume`, the run's saved config replaces the first two."""
    file_values = load_config_file(config_file) if config_file else {}
    file_preset = file_values.pop("preset", None)
    overrides = overrides or {}
    config = preset_config(preset or file_preset).with_values(file_values).with_values(overrides)
    if resume:
        if preset:
            raise TinyAudioError("--preset conflicts with --resume", hint="a resumed run uses its saved config")
        checkpoint = latest_checkpoint(Path(config.output_dir))
        if checkpoint is None:
            raise TinyAudioError(
                f"nothing to resume in {config.output_dir}", hint="no checkpoint-N folder with a training state there"
            )
        saved = TrainConfig().with_values(load_config_file(checkpoint / CONFIG_FILE_NAME))
        config = saved.with_values(file_values).with_values(overrides)
    config.validate()
    return config


def parse_assignment(text: str) -> tuple[str, str]:
    """`key=value` from `--set`."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise TinyAudioError(f"bad --set {text!r}", hint="write it as key=value, e.g. --set warmup_steps=100")
    return field_name(key), value
