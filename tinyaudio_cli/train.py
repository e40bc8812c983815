"""Projector-only training: the reference recipe, resumable to the step, from one CPU to torchrun DDP.

Only the MOSA projector learns. The Whisper encoder and the LM stay frozen (eval mode, no gradients) and
bit-identical. One optimizer step:

    data → target text (Whisper-normalised, truecased) → log-mel (+ SpecAugment) → frozen encoder →
    projector → frozen LM over [prompt, real-audio frames (trimmed mode), target] → cross-entropy on the
    assistant turn and its end-of-turn token.

The loss is a token sum divided by the target tokens of the whole optimizer step, across accumulation and
ranks (what HF Trainer does with `num_items_in_batch`): N ranks × batch B computes exactly what one process
with batch N·B computes, and accumulation equals a larger batch.

A checkpoint is the published layout (loads in `transcribe`, `eval`, `export`) plus `training_state.pt`:
the float32 projector, optimizer, scheduler, grad scaler, every random state training draws from (dropout,
SpecAugment) and every rank's data position, all taken at an optimizer-step boundary, so `--resume`
continues exactly as if never interrupted.

This module imports in milliseconds: `tinyaudio --help` builds the train command's flags from TrainConfig,
so torch, numpy and the model load on first use (see `_Lazy`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import gc
import hashlib
import importlib
import json
import math
import os
import queue
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args, get_type_hints

from .errors import TinyAudioError
from .smoke import SMOKE_AUDIO, SMOKE_DEV, SMOKE_TEXT, SMOKE_TRAIN
from .train_safety import InterruptFlag, resumable_checkpoint

if TYPE_CHECKING:
    import numpy
    import torch as torch_module

    from .model import TinyAudioModel


class _Lazy:
    """A module imported on first attribute access, so that importing this file stays cheap."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)


torch: Any = _Lazy("torch")
np: Any = _Lazy("numpy")
F: Any = _Lazy("torch.nn.functional")
distributed: Any = _Lazy("torch.distributed")

# -- files of a run -----------------------------------------------------------------------------------

CHECKPOINT_PREFIX = "checkpoint-"
STATE_NAME = "training_state.pt"
CONFIG_FILE_NAME = "train_config.yaml"
METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "training_curves.png"
TENSORBOARD_DIR = "tensorboard"
CACHE_DIR_NAME = "encoder-cache"
FINAL_DIR = "final"

# -- facts of the recipe --------------------------------------------------------------------------------

SAMPLE_RATE = 16_000  # tinyaudio_cli.audio.SAMPLE_RATE; repeated so that this module imports nothing heavy
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
# Streaming sets are read in blocks of SHUFFLE_BLOCK rows, round-robin from up to PARALLEL_SHARDS shards,
# and each block is shuffled in memory: a position is then "this block, this row", cheap to restore exactly.
SHUFFLE_BLOCK = 1_000
PARALLEL_SHARDS = 10
PREFETCH_GROUPS = 2  # optimizer steps of data prepared ahead by the loader thread
MAX_CONSECUTIVE_SKIPS = 1_000  # a source that yields nothing usable for this long is broken, not noisy
LOADER_POLL_SECONDS = 0.1

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
class DataSource:
    """One training or dev set: a registry name (`loquacious`), a Hub id, a local Parquet folder or file,
    a JSONL/CSV/TSV manifest, or a folder of media files with same-named .txt transcripts.

    On the command line: `PATH[,key=value...]`, e.g. `loquacious,config=medium,weight=2` or `clips.jsonl`.
    """

    path: str
    weight: float = 1.0
    config: str | None = None
    split: str | None = None  # default: train for training data, dev/validation for dev data
    audio_column: str | None = None
    text_column: str | None = None
    id_column: str | None = None

    @classmethod
    def parse(cls, value: str | dict[str, Any] | DataSource) -> DataSource:
        if isinstance(value, DataSource):
            return value
        if isinstance(value, str):
            path, *pairs = [part.strip() for part in value.split(",")]
            options: dict[str, Any] = {"path": path}
            for pair in pairs:
                key, sep, item = pair.partition("=")
                if not sep:
                    raise TinyAudioError(f"bad data option {pair!r} in {value!r}", hint="write options as key=value")
                options[key.strip().replace("-", "_")] = item.strip()
            value = options
        if not isinstance(value, dict) or not value.get("path"):
            raise TinyAudioError(f"a data source needs a path, got {value!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise TinyAudioError(f"unknown data option {unknown[0]!r}", hint=f"known: {', '.join(sorted(known))}")
        source = cls(**{key: None if item is None else str(item) for key, item in value.items()})
        try:
            source.weight = float(source.weight)
        except ValueError as error:
            raise TinyAudioError(f"data weight must be a number, got {source.weight!r}") from error
        if not source.weight > 0:
            raise TinyAudioError(f"data weight must be positive, got {source.weight}")
        return source

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}


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
        metadata=_meta("Training set PATH[,key=value...]; repeatable, mixed by weight=.", DATA_PANEL, flag="data"),
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


# -- target text ---------------------------------------------------------------------------------------------


def truecase(text: str) -> str:
    """Re-capitalise Whisper-normalised text: the first letter and the pronoun I.

    The normaliser lower-cases everything and expands contractions ("I'm" → "i am"), so these two rules
    restore the capitals every English sentence has without a model; names stay lower case (a statistical
    truecaser would guess them, and WER is scored case-insensitively either way).
    """
    text = PRONOUN_I.sub("I", text)
    return text[:1].upper() + text[1:]


def prepare_target(text: str, normalize: bool = True) -> str:
    """The transcript the LM learns to write; empty when nothing is left to learn (tags, fillers only)."""
    from .evaldata import IGNORED_REFERENCES

    if text.strip() in IGNORED_REFERENCES:
        return ""
    if not normalize:
        return " ".join(text.split())
    from .normalize import normalize_text

    return truecase(normalize_text(text))


# -- data sources ------------------------------------------------------------------------------------------------


@dataclass
class RawExample:
    """A row before decoding: the audio is read only when needed (not when cached or skipped)."""

    key: str
    text: str
    read_audio: Callable[[], numpy.ndarray]
    seconds: float | None = None  # known without decoding (a dataset's duration column)


@dataclass
class Example:
    """A usable utterance: its target token ids and either its audio or its cached encoder frames."""

    key: str
    reference: str  # the transcript as the data has it (WER is scored against this)
    targets: list[int]
    num_samples: int
    audio: numpy.ndarray | None = None
    frames: torch_module.Tensor | None = None


@dataclass
class MicroBatch:
    examples: list[Example]
    features: torch_module.Tensor | None  # log-mel of the examples without cached frames, in order


def source_kind(path: str) -> str:
    from .evaldata import CARD_NAME, DATA_FILE_SUFFIX, MANIFEST_SUFFIXES

    local = Path(path).expanduser()
    if local.is_file() and local.suffix.lower() in MANIFEST_SUFFIXES:
        return "manifest"
    if local.is_dir() and not (local / CARD_NAME).is_file() and not any(local.rglob(f"*{DATA_FILE_SUFFIX}")):
        return "folder"
    return "dataset"


def _permutation(size: int, *seed: int) -> list[int]:
    return np.random.default_rng(list(seed)).permutation(size).tolist()


def _read_file_audio(path: Path) -> numpy.ndarray:
    from .evaldata import decode_audio_bytes

    try:
        data = path.read_bytes()
    except OSError as error:
        raise TinyAudioError(f"cannot read {path}: {error.strerror}") from error
    return decode_audio_bytes(data)  # soundfile for WAV/FLAC at 16 kHz, ffmpeg for the rest


class ListSource:
    """A manifest or media folder: listed up front, so a position is (epoch, index) and restoring it is free.

    Each epoch has its own seeded order; rank r of W reads every W-th entry of it.
    """

    def __init__(
        self,
        name: str,
        entries: list[tuple[str, Path, str]],
        seed: int,
        rank: int,
        world: int,
        shuffle: bool,
        loop: bool,
    ) -> None:
        self.name, self.entries = name, entries
        self.seed, self.rank, self.world, self.shuffle, self.loop = seed, rank, world, shuffle, loop
        self.epoch, self.index = 0, 0
        self.order = self._order()
        if not self.order:
            raise TinyAudioError(f"{name} has {len(entries)} entries, fewer than the {world} ranks reading it")

    def _order(self) -> list[int]:
        indices = _permutation(len(self.entries), self.seed, self.epoch) if self.shuffle else range(len(self.entries))
        return list(indices)[self.rank :: self.world]

    def __iter__(self) -> ListSource:
        return self

    def __next__(self) -> RawExample:
        if self.index >= len(self.order):
            if not self.loop:
                raise StopIteration
            self.epoch, self.index = self.epoch + 1, 0
            self.order = self._order()
        entry_id, path, text = self.entries[self.order[self.index]]
        self.index += 1
        return RawExample(f"{self.name}|{entry_id}", text, partial(_read_file_audio, path))

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state(self, state: dict[str, Any]) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self.order = self._order()


def manifest_entries(path: Path) -> list[tuple[str, Path, str]]:
    from .evaldata import _read_manifest

    return _read_manifest(path)


def folder_entries(root: Path) -> list[tuple[str, Path, str]]:
    """Media files under `root` with the same-named .txt beside each (missing: empty, so skipped and counted)."""
    from .audio import find_media

    entries = []
    for media in find_media([root]):
        transcript = media.with_suffix(".txt")
        text = transcript.read_text(encoding="utf-8").strip() if transcript.is_file() else ""
        entries.append((media.relative_to(root).with_suffix("").as_posix(), media, text))
    if not entries:
        raise TinyAudioError(f"no media files in {root}", hint="put audio files and same-named .txt files there")
    return entries


class DatasetSource:
    """A Hub-shaped dataset (Hub id, registry name, local Parquet), streamed with an exactly restorable position.

    Per epoch the shards get a seeded order and rank r of W takes every W-th shard (with fewer shards than
    ranks, every rank reads all and keeps every W-th row). Rows are read round-robin from up to PARALLEL_SHARDS
    open shards, in blocks of SHUFFLE_BLOCK rows shuffled in memory. A position is where the current block
    began (each open shard's `datasets` stream state) plus the rows of it already used: restoring re-reads at
    most one block of raw rows, nothing decoded. (`datasets`' own shuffle buffer cannot be restored.)
    """

    def __init__(
        self, source: DataSource, split: str, seed: int, rank: int, world: int, shuffle: bool, loop: bool
    ) -> None:
        from .evaldata import _open_dataset, _undecoded_audio, resolve_dataset

        self.spec = resolve_dataset(
            source.path, audio_column=source.audio_column, text_column=source.text_column, id_column=source.id_column
        )
        config = source.config or self.spec.default_config
        self.name = f"{self.spec.path}:{config or 'default'}:{split}"
        dataset = _open_dataset(self.spec, config, split, True, None)
        self.dataset = _undecoded_audio(dataset, self.spec.audio_column)
        self.num_shards = self.dataset.num_shards
        self.seed, self.rank, self.world, self.shuffle, self.loop = seed, rank, world, shuffle, loop
        self.split_rows = self.num_shards < world
        self.epoch = 0
        self._start_epoch()

    def _start_epoch(self) -> None:
        order = _permutation(self.num_shards, self.seed, self.epoch) if self.shuffle else list(range(self.num_shards))
        self.shards = order if self.split_rows else order[self.rank :: self.world]
        self.next_shard, self.turn, self.blocks_read = 0, 0, 0
        self.open: list[tuple[int, Any, Iterator[dict[str, Any]]]] = []
        self.block: list[dict[str, Any]] = []
        self.block_index = 0
        self.block_start: dict[str, Any] | None = None
        self.epoch_rows = 0

    def _open_shard(self, shard: int, state: dict[str, Any] | None = None) -> tuple[int, Any, Iterator]:
        dataset = self.dataset.shard(num_shards=self.num_shards, index=shard)
        if state is not None:
            dataset.load_state_dict(state)
        return shard, dataset, iter(dataset)

    def _position(self) -> dict[str, Any]:
        return {
            "next_shard": self.next_shard,
            "turn": self.turn,
            "blocks_read": self.blocks_read,
            "open": [[shard, copy.deepcopy(dataset.state_dict())] for shard, dataset, _ in self.open],
        }

    def _read_block(self) -> int:
        """The next block of rows (this rank's share of it); returns the rows read, 0 at the end of the epoch."""
        self.block_start = self._position()
        rows: list[dict[str, Any]] = []
        while len(rows) < SHUFFLE_BLOCK:
            while len(self.open) < PARALLEL_SHARDS and self.next_shard < len(self.shards):
                self.open.append(self._open_shard(self.shards[self.next_shard]))
                self.next_shard += 1
            if not self.open:
                break
            self.turn %= len(self.open)
            try:
                rows.append(next(self.open[self.turn][2]))
                self.turn += 1
            except StopIteration:
                del self.open[self.turn]
            except (OSError, ValueError) as error:  # a corrupt shard or a dropped connection
                raise TinyAudioError(f"reading {self.name} failed: {error}") from error
        if self.shuffle:
            rows = [rows[i] for i in _permutation(len(rows), self.seed, self.epoch, self.blocks_read)]
        self.blocks_read += 1
        self.block = rows[self.rank :: self.world] if self.split_rows else rows
        self.block_index = 0
        self.epoch_rows += len(rows)
        return len(rows)

    def __iter__(self) -> DatasetSource:
        return self

    def __next__(self) -> RawExample:
        while self.block_index >= len(self.block):
            if self._read_block() == 0:
                if not self.loop:
                    raise StopIteration
                if self.epoch_rows == 0:
                    raise TinyAudioError(f"{self.name} has no rows")
                self.epoch += 1
                self._start_epoch()
        row = self.block[self.block_index]
        self.block_index += 1
        return self._example(row)

    def _example(self, row: dict[str, Any]) -> RawExample:
        from .evaldata import decode_audio_value

        spec = self.spec
        for column in (spec.audio_column, spec.text_column):
            if column not in row:
                raise TinyAudioError(
                    f"{self.name} has no column {column!r} (columns: {', '.join(row)})",
                    hint="name the right ones with audio_column= and text_column= in the data option",
                )
        cell = row[spec.audio_column]
        key = row.get(spec.id_column) if spec.id_column else None
        if key is None:
            key = cell.get("path") if isinstance(cell, dict) else None
        if not key:  # no id: the audio itself names the row
            raw = cell.get("bytes") if isinstance(cell, dict) else cell
            key = hashlib.sha1(raw if isinstance(raw, bytes) else repr(raw).encode()).hexdigest()
        seconds = row.get(spec.duration_column) if spec.duration_column else None
        text = str(row[spec.text_column] or "")
        return RawExample(f"{self.name}|{key}", text, partial(decode_audio_value, cell), _float_or_none(seconds))

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "block_index": self.block_index, "block_start": self.block_start}

    def load_state(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self._start_epoch()
        start = state["block_start"]
        if start is None:  # nothing read yet
            return
        self.next_shard, self.turn, self.blocks_read = start["next_shard"], start["turn"], start["blocks_read"]
        self.open = [self._open_shard(shard, shard_state) for shard, shard_state in start["open"]]
        self._read_block()
        self.block_index = int(state["block_index"])


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def open_source(
    source: DataSource, dev: bool, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True, loop: bool = True
) -> ListSource | DatasetSource:
    kind = source_kind(source.path)
    path = Path(source.path).expanduser()
    if kind == "manifest":
        return ListSource(str(path), manifest_entries(path), seed, rank, world, shuffle, loop)
    if kind == "folder":
        return ListSource(str(path), folder_entries(path), seed, rank, world, shuffle, loop)
    return DatasetSource(source, source.split or default_split(source, dev), seed, rank, world, shuffle, loop)


def default_split(source: DataSource, dev: bool) -> str:
    if not dev:
        return TRAIN_SPLIT
    from .evaldata import resolve_dataset

    splits = resolve_dataset(source.path).splits
    return next((split for split in DEV_SPLITS if split in splits), DEV_FALLBACK_SPLIT)


# -- examples: decode, filter, count, tokenise ---------------------------------------------------------------


class EncoderCache:
    """Frozen-encoder outputs per utterance, on disk: one safetensors file per key.

    The encoder's output depends only on the audio, so later epochs skip decoding, log-mel and the encoder (on
    a CPU most of a step). Only the frames the projector reads for the real audio are kept (4 per projector
    frame). SpecAugment masks the features before the encoder, so a cache and SpecAugment exclude each other.
    Keys include the encoder id: delete the folder when the audio behind an id changes.
    """

    def __init__(self, folder: Path, namespace: str) -> None:
        self.folder = folder
        self.namespace = namespace

    def path(self, key: str) -> Path:
        digest = hashlib.sha1(f"{self.namespace}|{key}".encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.safetensors"

    def get(self, key: str) -> tuple[torch_module.Tensor, int] | None:
        from safetensors import safe_open

        path = self.path(key)
        if not path.is_file():
            return None
        with safe_open(path, "pt") as handle:
            return handle.get_tensor("frames"), int(handle.metadata()["num_samples"])

    def put(self, key: str, frames: torch_module.Tensor, num_samples: int) -> None:
        from safetensors.torch import save_file

        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial_path = path.with_suffix(f".{os.getpid()}.tmp")
        save_file(
            {"frames": frames.detach().cpu().contiguous()}, partial_path, metadata={"num_samples": str(num_samples)}
        )
        os.replace(partial_path, path)  # atomic: ranks writing the same key never leave half a file


class Preparer:
    """RawExample → Example, or the reason it is skipped (one of SKIP_REASONS)."""

    def __init__(self, model: TinyAudioModel, max_samples: int, normalize: bool, cache: EncoderCache | None) -> None:
        self.model, self.max_samples, self.normalize, self.cache = model, max_samples, normalize, cache

    def __call__(self, raw: RawExample) -> Example | str:
        text = prepare_target(raw.text, self.normalize)
        if not text:
            return "empty_text"
        cached = self.cache.get(raw.key) if self.cache else None
        if cached is not None:
            frames, num_samples = cached
            if num_samples > self.max_samples:
                return "too_long"
            return Example(raw.key, raw.text, self.model.target_ids(text), num_samples, frames=frames)
        if raw.seconds is not None and raw.seconds * SAMPLE_RATE > self.max_samples:
            return "too_long"  # known from the metadata: not even decoded
        try:
            audio = raw.read_audio()
        except (TinyAudioError, OSError, ValueError, RuntimeError):
            return "undecodable"
        if len(audio) == 0:
            return "undecodable"
        if len(audio) > self.max_samples:
            return "too_long"
        return Example(raw.key, raw.text, self.model.target_ids(text), len(audio), audio=audio)


class ExampleStream:
    """Sources mixed by weight (a seeded draw per example), bad examples skipped and counted; endless."""

    def __init__(self, sources: Sequence[ListSource | DatasetSource], weights: Sequence[float], seed: int,
                 prepare: Preparer) -> None:  # fmt: skip
        self.sources, self.weights, self.prepare = list(sources), list(weights), prepare
        self.rng = random.Random(seed)
        self.skipped = dict.fromkeys(SKIP_REASONS, 0)

    def __iter__(self) -> ExampleStream:
        return self

    def __next__(self) -> Example:
        for _ in range(MAX_CONSECUTIVE_SKIPS):
            source = self.rng.choices(self.sources, self.weights)[0] if len(self.sources) > 1 else self.sources[0]
            result = self.prepare(next(source))
            if isinstance(result, Example):
                return result
            self.skipped[result] += 1
        raise TinyAudioError(f"{MAX_CONSECUTIVE_SKIPS} examples in a row were unusable: {self.skipped}")

    def state(self) -> dict[str, Any]:
        return {
            "mix": self.rng.getstate(),
            "sources": [source.state() for source in self.sources],
            "skipped": dict(self.skipped),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        version, internal, gauss = state["mix"]
        self.rng.setstate((version, tuple(internal), gauss))
        for source, source_state in zip(self.sources, state["sources"], strict=True):
            source.load_state(source_state)
        self.skipped = {reason: int(state["skipped"].get(reason, 0)) for reason in SKIP_REASONS}


def log_mel(feature_extractor: Any, audios: Sequence[numpy.ndarray]) -> torch_module.Tensor:
    """Whisper log-mel features padded to 30 s on the CPU (what TinyAudioModel.features computes, before the
    device move), so the loader thread can make them while the model works."""
    return feature_extractor(
        [np.asarray(audio, dtype=np.float32) for audio in audios], sampling_rate=SAMPLE_RATE, return_tensors="pt"
    ).input_features


def collate(examples: list[Example], feature_extractor: Any) -> MicroBatch:
    audios = [example.audio for example in examples if example.frames is None]
    return MicroBatch(examples, log_mel(feature_extractor, audios) if audios else None)


class Loader:
    """Prepares each optimizer step's micro-batches on a background thread (decoding and log-mel overlap the
    model). Every group comes with the stream's position right after it: what a checkpoint must save."""

    def __init__(self, stream: ExampleStream, batch_size: int, accumulation: int, feature_extractor: Any) -> None:
        self.stream, self.batch_size, self.accumulation = stream, batch_size, accumulation
        self.feature_extractor = feature_extractor
        self.queue: queue.Queue = queue.Queue(maxsize=PREFETCH_GROUPS)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="tinyaudio-loader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                group = [
                    collate([next(self.stream) for _ in range(self.batch_size)], self.feature_extractor)
                    for _ in range(self.accumulation)
                ]
                self._put((group, self.stream.state()))
        except BaseException as error:  # handed to the training thread, which raises it
            self._put((None, error))

    def _put(self, item: tuple[Any, Any]) -> None:
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=LOADER_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def next(self) -> tuple[list[MicroBatch], dict[str, Any]]:
        group, position = self.queue.get()
        if group is None:
            raise position
        return group, position

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)


# -- the computation ------------------------------------------------------------------------------------------


def target_loss(
    model: TinyAudioModel,
    frames: Sequence[torch_module.Tensor],
    targets: Sequence[list[int]],
    label_smoothing: float = 0.0,
) -> tuple[torch_module.Tensor, int]:
    """Summed cross-entropy over the target tokens, and their number.

    TinyAudioModel.loss's computation (trimmed mode: padded audio masked, positions kept), with the sum kept
    so the trainer can normalise over a whole optimizer step, label smoothing, and logits computed only from
    the first position that predicts a target (the LM head over the prompt and audio would be wasted).
    """
    inputs_embeds, attention_mask, position_ids, lengths = model.build_inputs(frames, "trimmed", targets)
    width = inputs_embeds.shape[1]
    starts = [length - len(target) for length, target in zip(lengths.tolist(), targets, strict=True)]
    keep = width - (min(starts) - 1)  # the logit at i predicts the token at i + 1
    logits = model.lm(
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=False,
        logits_to_keep=keep,
    ).logits
    offset = width - keep
    rows, columns, labels = [], [], []
    for row, (start, target) in enumerate(zip(starts, targets, strict=True)):
        rows += [row] * len(target)
        columns += range(start - 1 - offset, start - 1 - offset + len(target))
        labels += target
    device = logits.device
    picked = logits[torch.tensor(rows, device=device), torch.tensor(columns, device=device)]
    loss = F.cross_entropy(
        picked.float(), torch.tensor(labels, device=device), reduction="sum", label_smoothing=label_smoothing
    )
    return loss, len(labels)


def project(
    model: TinyAudioModel,
    projector: Callable[[Any], Any],
    batch: MicroBatch,
    augment: Callable[[Any], Any] | None = None,
    cache: EncoderCache | None = None,
) -> list[torch_module.Tensor]:
    """Projector frames covering each example's real audio (trimmed mode).

    The encoder runs on the full 30 s window (its output depends on all of it), without gradients. The
    projector only reads the first 4·n encoder frames for its first n frames (two stride-2, kernel-3
    convolutions; the router averages each frame's 4 inputs), so it runs on those alone: same result,
    a fraction of the work, and that is all the cache needs to keep.
    """
    counts = [model.audio_token_count(example.num_samples) for example in batch.examples]
    rows = [None if e.frames is None else e.frames.to(model.device) for e in batch.examples]
    if batch.features is not None:
        features = batch.features.to(model.device)
        if augment is not None:
            features = augment(features)
        with torch.no_grad():
            encoded = model.encoder(features).last_hidden_state
        missing = [i for i, row in enumerate(rows) if row is None]
        for j, i in enumerate(missing):
            rows[i] = encoded[j, : PROJECTOR_STRIDE * counts[i]]
            if cache is not None:  # kept on disk for later epochs, and in the example (dev sets are reused)
                example = batch.examples[i]
                cache.put(example.key, rows[i], example.num_samples)
                example.frames, example.audio = rows[i].clone(), None  # a copy: a view would keep the batch alive
    width = PROJECTOR_STRIDE * max(counts)
    stacked = torch.stack([F.pad(row, (0, 0, 0, width - len(row))) for row in rows])
    projected = projector(stacked)
    return [frames[:count] for frames, count in zip(projected, counts, strict=True)]


class SpecAugment:
    """Whisper's SpecAugment (transformers' `_compute_mask_indices`, zeroed spans) on the padded 30 s features,
    as the reference applies it. That function draws from numpy's global generator, so a private state is
    swapped in around each call: the masks are reproducible and resumable, and nothing else is disturbed."""

    def __init__(self, config: TrainConfig, seed: int) -> None:
        self.config = config
        self.rng = np.random.RandomState(seed)

    @contextlib.contextmanager
    def _own_numpy_state(self) -> Iterator[None]:
        saved = np.random.get_state()
        np.random.set_state(self.rng.get_state())
        try:
            yield
        finally:
            self.rng.set_state(np.random.get_state())
            np.random.set_state(saved)

    def __call__(self, features: torch_module.Tensor) -> torch_module.Tensor:
        from transformers.models.whisper.modeling_whisper import _compute_mask_indices

        c = self.config
        batch, bins, frames = features.shape
        with self._own_numpy_state():
            time_mask = (
                _compute_mask_indices(
                    (batch, frames), c.mask_time_prob, c.mask_time_length, None, c.mask_time_min_masks
                )
                if c.mask_time_prob > 0
                else None
            )
            bin_mask = (
                _compute_mask_indices((batch, bins), c.mask_feature_prob, c.mask_feature_length, None,
                                      c.mask_feature_min_masks)
                if c.mask_feature_prob > 0
                else None
            )  # fmt: skip
        if time_mask is not None:
            features = features.masked_fill(torch.from_numpy(time_mask).to(features.device)[:, None, :], 0.0)
        if bin_mask is not None:
            features = features.masked_fill(torch.from_numpy(bin_mask).to(features.device)[:, :, None], 0.0)
        return features

    def state(self) -> list[Any]:
        name, keys, position, has_gauss, gauss = self.rng.get_state()
        return [name, keys.tolist(), int(position), int(has_gauss), float(gauss)]

    def load_state(self, state: list[Any]) -> None:
        name, keys, position, has_gauss, gauss = state
        self.rng.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))


# -- distributed ---------------------------------------------------------------------------------------------


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int
    world: int
    device: Any
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: Sequence[float]) -> list[float]:
        if self.world == 1:
            return [float(value) for value in values]
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        distributed.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, value: Any) -> list[Any]:
        if self.world == 1:
            return [value]
        gathered: list[Any] = [None] * self.world
        distributed.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.world > 1:
            distributed.barrier()

    def close(self) -> None:
        if self.owns_group and distributed.is_initialized():
            distributed.destroy_process_group()


def setup_distributed(device_name: str) -> Dist:
    """torchrun sets WORLD_SIZE, RANK and LOCAL_RANK: join the group (NCCL on CUDA, gloo on CPU)."""
    from .model.loading import resolve_device

    device = resolve_device(device_name)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(0, 1, device)
    rank = int(os.environ["RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    owns = not distributed.is_initialized()
    if owns:
        distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, device, owns)


# -- checkpoints ----------------------------------------------------------------------------------------------


def checkpoint_step(path: Path) -> int | None:
    suffix = path.name.removeprefix(CHECKPOINT_PREFIX)
    return int(suffix) if path.name.startswith(CHECKPOINT_PREFIX) and suffix.isdigit() else None


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints (with a training state), oldest first."""
    found = [
        (step, path)
        for path in output_dir.glob(f"{CHECKPOINT_PREFIX}*")
        if (step := checkpoint_step(path)) is not None and (path / STATE_NAME).is_file()
    ]
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: Path, warn: Callable[[str], None] | None = None) -> Path | None:
    """The newest intact checkpoint (damaged newer ones are skipped, with a warning through `warn`)."""
    return resumable_checkpoint(list_checkpoints(output_dir), STATE_NAME, CONFIG_FILE_NAME, warn)


def rng_state(device: Any) -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: Any) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# -- metrics ---------------------------------------------------------------------------------------------------


class MetricsLog:
    """metrics.jsonl (one record per log or eval), TensorBoard scalars, and the PNG of the curves."""

    def __init__(self, output_dir: Path, start_step: int, tensorboard: bool, warn: Callable[[str], None]) -> None:
        self.path = output_dir / METRICS_NAME
        self.plot_path = output_dir / PLOT_NAME
        kept = [r for r in read_metrics(self.path) if r["step"] <= start_step] if start_step else []
        self.path.write_text("".join(json.dumps(record) + "\n" for record in kept), encoding="utf-8")
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warn("TensorBoard logging is off: pip install tensorboard")
            else:
                self.writer = SummaryWriter(str(output_dir / TENSORBOARD_DIR), purge_step=start_step + 1)

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "split"):
                    self.writer.add_scalar(f"{record['split']}/{key}", value, record["step"])
            self.writer.flush()

    def plot(self, warn: Callable[[str], None]) -> Path | None:
        try:
            return plot_metrics(read_metrics(self.path), self.plot_path)
        except ImportError:
            warn("no training-curve PNG: pip install matplotlib")
            return None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_metrics(records: list[dict[str, Any]], path: Path) -> Path:
    """Loss (train and dev) and dev WER against steps, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    train = [(r["step"], r["loss"]) for r in records if r["split"] == "train"]
    dev = [r for r in records if r["split"] == "dev"]
    figure, (loss_axis, wer_axis) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    if train:
        loss_axis.plot(*zip(*train, strict=True), label="train", linewidth=1)
    dev_loss = [(r["step"], r["loss"]) for r in dev if r.get("loss") is not None]
    if dev_loss:
        loss_axis.plot(*zip(*dev_loss, strict=True), "o-", label="dev")
    loss_axis.set(xlabel="step", ylabel="cross-entropy per target token", title="loss")
    loss_axis.set_yscale("log")
    for axis in (loss_axis.yaxis,):  # plain numbers on the log axis, not 6×10⁰
        axis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    loss_axis.legend()
    dev_wer = [(r["step"], 100 * r["wer"]) for r in dev if r.get("wer") is not None]
    if dev_wer:
        wer_axis.plot(*zip(*dev_wer, strict=True), "o-", color="tab:red")
    wer_axis.set(xlabel="step", ylabel="WER (%)", title="dev WER (greedy)")
    for axis in (loss_axis, wer_axis):
        axis.grid(alpha=0.3)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


# -- the trainer --------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    output_dir: Path
    step: int
    stopped_early: bool
    last_checkpoint: Path | None
    final_model: Path | None  # published layout of the finished run (None when stopped early)
    train_loss: float | None
    eval: dict[str, Any] | None
    skipped: dict[str, int]
    samples_seen: int
    seconds: float
    steps_per_second: float
    plot: Path | None = None
    signal: int | None = None  # the signal that stopped the run (SIGINT, SIGTERM), if one did


@dataclass
class _Window:
    """What happened since the last log record."""

    loss_sum: float = 0.0
    tokens: float = 0.0
    examples: float = 0.0
    started: float = field(default_factory=time.perf_counter)


class Trainer:
    """Builds the model, data and optimizer for a TrainConfig, restores a checkpoint when resuming, and runs."""

    def __init__(self, config: TrainConfig, *, resume: bool = False, console: Any = None, quiet: bool = False) -> None:
        config.validate()
        self.config = config
        self.dist = setup_distributed(config.device)
        self.device = self.dist.device
        self.console = console if self.dist.main and not quiet else None
        self.output_dir = Path(config.output_dir).expanduser()
        warn = console.print if console is not None and self.dist.main else None  # a warning shows even with -q
        self.resume_from = latest_checkpoint(self.output_dir, warn) if resume else None
        if resume and self.resume_from is None:
            raise TinyAudioError(f"nothing to resume in {self.output_dir}")
        if self.device.type == "cuda" and config.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        self.model = self._build_model()
        self.frozen_dtype = next(self.model.lm.parameters()).dtype
        self.projector = self.model.projector
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            # only the projector has gradients to synchronise
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.projector = DistributedDataParallel(self.model.projector, device_ids=device_ids)
        self.optimizer = build_optimizer(self.model.projector, config, self.device)
        from transformers import get_scheduler

        self.scheduler = get_scheduler(config.lr_scheduler, self.optimizer, config.warmup_steps, config.max_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.frozen_dtype == torch.float16)
        torch.manual_seed(config.seed + self.dist.rank)  # dropout differs between ranks, as in any DDP run
        self.spec_augment = SpecAugment(config, config.seed + self.dist.rank) if config.spec_augment else None
        self.cache = self._build_cache()
        max_samples = int(config.max_audio_seconds * SAMPLE_RATE)
        self.preparer = Preparer(self.model, max_samples, config.normalize_targets, self.cache)
        self.stream = self._build_stream()
        self.dev_examples, self.dev_skipped = self._load_dev()

        self.step, self.samples_seen, self.tokens_seen = 0, 0, 0
        self.lr, self.grad_norm = config.learning_rate, 0.0
        self.position: dict[str, Any] = self.stream.state()
        if self.resume_from is not None:
            self._load_state(self.resume_from)
        self.start_step = self.step
        self.last_eval: dict[str, Any] | None = None
        self.last_train_loss: float | None = None
        self.metrics = None
        if self.dist.main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / CONFIG_FILE_NAME).write_text(config.to_yaml(), encoding="utf-8")
            self.metrics = MetricsLog(self.output_dir, self.step, config.tensorboard, self._say)

    # -- setup ---------------------------------------------------------------------------------------------

    def _build_model(self) -> TinyAudioModel:
        from .model import TinyAudioConfig, create_model, load_model

        c = self.config
        if c.init_from and self.resume_from is None:
            model = load_model(c.init_from, device=self.device, dtype=c.dtype)
            # the run's config records what is actually trained
            c.encoder, c.llm = model.config.audio_model_id, model.config.text_model_id
            c.experts, c.hidden_dim = model.config.num_experts, model.config.projector_hidden_dim
            c.system_prompt = model.config.system_prompt
        else:
            model_config = TinyAudioConfig(
                audio_model_id=c.encoder,
                text_model_id=c.llm,
                num_experts=c.experts,
                projector_hidden_dim=c.hidden_dim,
                projector_dropout=c.projector_dropout,
            )
            if c.system_prompt is not None:
                model_config.system_prompt = c.system_prompt
            model = create_model(model_config, device=self.device, dtype=c.dtype, seed=c.seed)
        model.config.projector_dropout = c.projector_dropout
        for module in model.projector.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = c.projector_dropout
        # float32 master weights; autocast runs the math in the frozen parts' dtype
        model.projector.float().train().requires_grad_(True)
        if c.gradient_checkpointing:
            set_gradient_checkpointing(model.lm, True)
        return model

    def _build_cache(self) -> EncoderCache | None:
        if not self.config.cache_encoder:
            return None
        folder = Path(self.config.cache_dir).expanduser() if self.config.cache_dir else self.output_dir / CACHE_DIR_NAME
        encoder_config = self.model.encoder.config
        namespace = f"{self.model.config.audio_model_id}|{encoder_config.num_mel_bins}|{self.frozen_dtype}"
        return EncoderCache(folder, namespace)

    def _build_stream(self) -> ExampleStream:
        c, rank, world = self.config, self.dist.rank, self.dist.world
        sources = [open_source(source, False, c.seed + i, rank, world) for i, source in enumerate(c.train_data)]
        return ExampleStream(sources, [source.weight for source in c.train_data], c.seed, self.preparer)

    def _load_dev(self) -> tuple[list[Example], dict[str, int]]:
        """The first usable utterances of each dev set (equal shares), read once; every rank keeps all of them."""
        c = self.config
        wanted = max(c.eval_loss_samples, c.eval_wer_samples)
        skipped = dict.fromkeys(SKIP_REASONS, 0)
        if not c.dev_data or wanted == 0:
            return [], skipped
        share = math.ceil(wanted / len(c.dev_data))
        examples: list[Example] = []
        for source in c.dev_data:
            taken = 0
            for raw in open_source(source, True, c.seed, shuffle=False, loop=False):
                result = self.preparer(raw)
                if isinstance(result, str):
                    skipped[result] += 1
                    continue
                examples.append(result)
                taken += 1
                if taken >= share:
                    break
        return examples[:wanted], skipped

    # -- state -----------------------------------------------------------------------------------------------

    def _rank_state(self) -> dict[str, Any]:
        return {
            "data": self.position,
            "rng": rng_state(self.device),
            "spec_augment": self.spec_augment.state() if self.spec_augment else None,
        }

    def _load_state(self, checkpoint: Path) -> None:
        state = torch.load(checkpoint / STATE_NAME, map_location="cpu", weights_only=True)
        if state["world_size"] != self.dist.world:
            raise TinyAudioError(
                f"{checkpoint} was written by {state['world_size']} processes, this run has {self.dist.world}",
                hint="resume with the same number of processes: each one's data position is saved",
            )
        self.model.projector.load_state_dict(state["projector"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        mine = state["ranks"][self.dist.rank]
        self.stream.load_state(mine["data"])
        self.position = mine["data"]
        if self.spec_augment is not None and mine["spec_augment"] is not None:
            self.spec_augment.load_state(mine["spec_augment"])
        set_rng_state(mine["rng"], self.device)
        self.step, self.samples_seen, self.tokens_seen = state["step"], state["samples_seen"], state["tokens_seen"]
        saved = TrainConfig().with_values(load_config_file(checkpoint / CONFIG_FILE_NAME)).to_dict()
        changed = [key for key, value in self.config.to_dict().items() if saved.get(key) != value]
        if changed:
            self._say(f"[yellow]resuming with changed settings:[/] {', '.join(changed)}")

    def save_checkpoint(self) -> Path:
        """checkpoint-STEP: the published layout, the run's config and the training state (rank 0 writes)."""
        states = self.dist.gather(self._rank_state())
        folder = self.output_dir / f"{CHECKPOINT_PREFIX}{self.step}"
        if self.dist.main:
            partial_folder = folder.with_name(folder.name + ".partial")
            shutil.rmtree(partial_folder, ignore_errors=True)
            self.model.save_pretrained(partial_folder, dtype=self._save_dtype())
            (partial_folder / CONFIG_FILE_NAME).write_text(self.config.to_yaml(), encoding="utf-8")
            state = {
                "step": self.step,
                "world_size": self.dist.world,
                "samples_seen": self.samples_seen,
                "tokens_seen": self.tokens_seen,
                "projector": {k: v.detach().cpu().clone() for k, v in self.model.projector.state_dict().items()},
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "ranks": states,
            }
            torch.save(state, partial_folder / STATE_NAME)
            shutil.rmtree(folder, ignore_errors=True)
            partial_folder.rename(folder)  # a checkpoint is complete or absent, never half-written
            self._prune()
        self.dist.barrier()
        return folder

    def _prune(self) -> None:
        if self.config.keep_last:
            for old in list_checkpoints(self.output_dir)[: -self.config.keep_last]:
                shutil.rmtree(old, ignore_errors=True)

    def _save_dtype(self) -> Any:
        from .model.loading import DTYPES

        return self.frozen_dtype if self.config.save_dtype == "auto" else DTYPES[self.config.save_dtype]

    # -- the loop -----------------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.frozen_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.frozen_dtype)

    def _optimizer_step(self, group: list[MicroBatch], stop_vote: bool) -> tuple[float, int, bool]:
        """Forward and backward over the group's micro-batches, then one update.

        Returns this rank's loss sum and target tokens, and whether any rank asked to stop.
        """
        tokens = sum(len(example.targets) for batch in group for example in batch.examples)
        examples = sum(len(batch.examples) for batch in group)
        global_tokens, global_examples, votes = self.dist.sum([tokens, examples, float(stop_vote)])
        # DDP averages gradients over ranks: scaling by world / global tokens makes the sum a per-token mean
        scale = self.dist.world / global_tokens
        loss_sum = 0.0
        for index, batch in enumerate(group):
            synchronise = index == len(group) - 1 or self.dist.world == 1
            with contextlib.nullcontext() if synchronise else self.projector.no_sync():
                with self._autocast():
                    frames = project(self.model, self.projector, batch, self.spec_augment, self.cache)
                    loss, _ = target_loss(
                        self.model, frames, [e.targets for e in batch.examples], self.config.label_smoothing
                    )
                self.scaler.scale(loss * scale).backward()
            loss_sum += loss.item()
        self.scaler.unscale_(self.optimizer)
        limit = self.config.max_grad_norm if self.config.max_grad_norm > 0 else math.inf
        self.grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.projector.parameters(), limit))
        self.lr = self.optimizer.param_groups[0]["lr"]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.samples_seen += int(global_examples)
        self.tokens_seen += int(global_tokens)
        return loss_sum, tokens, votes > 0

    def run(self, stop_after_steps: int | None = None, time_limit_minutes: float | None = None) -> TrainResult:
        """Train to max_steps, or until stopped (steps or minutes for this run, SIGINT/SIGTERM), with a checkpoint."""
        c = self.config
        started = time.perf_counter()
        deadline = started + time_limit_minutes * 60 if time_limit_minutes else None
        self._announce()
        loader = Loader(self.stream, c.batch_size, c.grad_accum, self.model.feature_extractor)
        window, stopped, saved_at, evaluated_at = _Window(), False, None, None
        interrupt = InterruptFlag()
        try:
            with interrupt, self._progress() as progress:
                task = progress.add_task("train", total=c.max_steps, completed=self.step, loss="–", lr="–", speed="–")
                while self.step < c.max_steps:
                    group, position = loader.next()
                    out_of_time = deadline is not None and time.perf_counter() > deadline
                    enough = stop_after_steps is not None and self.step - self.start_step + 1 >= stop_after_steps
                    loss_sum, tokens, stop = self._optimizer_step(group, interrupt.raised or out_of_time or enough)
                    self.step += 1
                    self.position = position
                    window.loss_sum += loss_sum
                    window.tokens += tokens
                    window.examples += sum(len(batch.examples) for batch in group) * self.dist.world
                    speed = window.examples / max(time.perf_counter() - window.started, 1e-9)
                    progress.update(task, completed=self.step, loss=f"{loss_sum / max(tokens, 1):.4f}",
                                    lr=f"{self.lr:.2e}", speed=f"{speed:.1f}")  # fmt: skip
                    if self.step % c.log_steps == 0 or self.step == 1:
                        self._log_train(window)
                        window = _Window()
                    if c.eval_steps and self.step % c.eval_steps == 0 and self.dev_examples:
                        self._evaluate(progress)
                        evaluated_at = self.step
                    if (c.save_steps and self.step % c.save_steps == 0) or stop or self.step == c.max_steps:
                        self._report(progress, f"checkpoint {self.save_checkpoint()}")
                        saved_at = self.step
                    if stop:
                        stopped = True
                        break
        finally:
            loader.close()
        if not stopped and self.dev_examples and evaluated_at != self.step:
            self._evaluate(None)
        final = None
        if not stopped and self.dist.main:
            final = self.model.save_pretrained(self.output_dir / FINAL_DIR, dtype=self._save_dtype())
            (final / CONFIG_FILE_NAME).write_text(c.to_yaml(), encoding="utf-8")
        self.dist.barrier()
        seconds = time.perf_counter() - started
        plot = None
        if self.metrics is not None:
            plot = self.metrics.plot(self._say)
            self.metrics.close()
        steps = self.step - self.start_step
        return TrainResult(
            output_dir=self.output_dir,
            step=self.step,
            stopped_early=stopped,
            last_checkpoint=self.output_dir / f"{CHECKPOINT_PREFIX}{saved_at}" if saved_at else None,
            final_model=final,
            train_loss=self.last_train_loss,
            eval=self.last_eval,
            skipped=self._skipped(),
            samples_seen=self.samples_seen,
            seconds=seconds,
            steps_per_second=steps / seconds if seconds else 0.0,
            plot=plot,
            signal=interrupt.signum,
        )

    def close(self) -> None:
        # DDP's reducer must be gone before its process group: freeing it afterwards can hang in gloo
        self.projector = self.model.projector
        gc.collect()
        self.dist.barrier()
        self.dist.close()

    def _skipped(self) -> dict[str, int]:
        counts = self.dist.sum([self.stream.skipped[reason] for reason in SKIP_REASONS])
        return {reason: int(count) for reason, count in zip(SKIP_REASONS, counts, strict=True)}

    def _log_train(self, window: _Window) -> None:
        loss_sum, tokens = self.dist.sum([window.loss_sum, window.tokens])
        skipped = self._skipped()
        seconds = max(time.perf_counter() - window.started, 1e-9)
        self.last_train_loss = loss_sum / max(tokens, 1)
        record = {
            "step": self.step,
            "split": "train",
            "loss": self.last_train_loss,
            "lr": self.lr,
            "grad_norm": self.grad_norm,
            "samples_per_second": window.examples / seconds,
            "samples_seen": self.samples_seen,
            "skipped": sum(skipped.values()),
            **{f"skipped_{reason}": count for reason, count in skipped.items()},
        }
        if self.metrics is not None:
            self.metrics.write(record)

    # -- evaluation ------------------------------------------------------------------------------------------

    def evaluate(self) -> dict[str, Any]:
        """Dev loss over eval_loss_samples utterances and greedy WER over eval_wer_samples, split across ranks."""
        from .model.decoding import guarded_text, token_budget
        from .scoring import Pair, score_corpus
        from .transcribe import TranscribeOptions

        c, model = self.config, self.model
        mine = self.dev_examples[self.dist.rank :: self.dist.world]
        loss_part = [e for i, e in enumerate(mine) if i * self.dist.world + self.dist.rank < c.eval_loss_samples]
        wer_part = [e for i, e in enumerate(mine) if i * self.dist.world + self.dist.rank < c.eval_wer_samples]
        model.projector.eval()
        loss_sum, tokens, pairs = 0.0, 0, []
        try:
            with torch.no_grad(), self._autocast():
                for batch in _chunks(loss_part, c.eval_batch_size):
                    frames = project(model, model.projector, collate(batch, model.feature_extractor), cache=self.cache)
                    loss, count = target_loss(model, frames, [e.targets for e in batch])
                    loss_sum, tokens = loss_sum + loss.item(), tokens + count
                options = TranscribeOptions()
                for batch in _chunks(wer_part, c.eval_batch_size):
                    frames = project(model, model.projector, collate(batch, model.feature_extractor), cache=self.cache)
                    budgets = [token_budget(model, e.num_samples / SAMPLE_RATE, options.max_new_tokens) for e in batch]
                    for example, ids in zip(batch, model.generate_from_frames(frames, "trimmed", budgets), strict=True):
                        text, _ = guarded_text(model, ids)
                        pairs.append((example.key, example.reference, text, example.num_samples))
        finally:
            model.projector.train()
        loss_sum, tokens = self.dist.sum([loss_sum, tokens])
        all_pairs = [pair for part in self.dist.gather(pairs) for pair in part]
        result: dict[str, Any] = {"loss": loss_sum / tokens if tokens else None, "wer": None, "samples": len(all_pairs)}
        if all_pairs:
            scored = score_corpus(Pair(key, ref, hyp, n / SAMPLE_RATE) for key, ref, hyp, n in all_pairs)
            result["wer"] = scored.wer
            result["examples"] = [(s.reference, s.hypothesis) for s in scored.samples[:3]]
        return result

    def _evaluate(self, progress: Any) -> None:
        result = self.evaluate()
        self.last_eval = result
        if self.metrics is not None:
            self.metrics.write(
                {"step": self.step, "split": "dev", "loss": result["loss"], "wer": result["wer"],
                 "samples": result["samples"]}
            )  # fmt: skip
            self.metrics.plot(self._say)
        loss = f"{result['loss']:.4f}" if result["loss"] is not None else "–"
        wer = f"{100 * result['wer']:.2f}%" if result["wer"] is not None else "–"
        self._report(progress, f"step {self.step} dev loss {loss} · WER {wer} ({result['samples']} utterances)")

    # -- feedback -------------------------------------------------------------------------------------------

    def _say(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message, highlight=False)

    def _report(self, progress: Any, message: str) -> None:
        if self.console is None:
            return
        (progress.console if progress is not None else self.console).print(message, highlight=False)

    def _announce(self) -> None:
        c = self.config
        trainable = sum(p.numel() for p in self.model.projector.parameters())
        frozen = sum(p.numel() for part in (self.model.encoder, self.model.lm) for p in part.parameters())
        global_batch = c.batch_size * c.grad_accum * self.dist.world
        where = f"{self.dist.world} × {self.device.type}" if self.dist.world > 1 else str(self.device)
        self._say(
            f"training the projector ({trainable / 1e6:.2f} M parameters; {frozen / 1e6:.1f} M frozen) on {where}, "
            f"{str(self.frozen_dtype).removeprefix('torch.')}, {global_batch} utterances per step"
        )
        if self.resume_from is not None:
            self._say(f"resuming from {self.resume_from} (step {self.step})")
        dev_skipped = sum(self.dev_skipped.values())
        if c.dev_data:
            self._say(f"dev: {len(self.dev_examples)} utterances ({dev_skipped} unusable skipped)")

    def _progress(self) -> Any:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]} · lr {task.fields[lr]} · {task.fields[speed]} utt/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            disable=self.console is None,
        )


def _chunks(items: Sequence[Example], size: int) -> Iterator[list[Example]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def build_optimizer(projector: Any, config: TrainConfig, device: Any) -> Any:
    """AdamW with HF Trainer's parameter groups: no weight decay on biases and norm weights."""
    decay, no_decay = [], []
    for name, parameter in projector.named_parameters():
        exempt = any(re.search(pattern, name.lower()) for pattern in NO_DECAY_PATTERNS)
        (no_decay if exempt else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups,
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_epsilon,
        fused=device.type == "cuda" or None,
    )


def set_gradient_checkpointing(lm: Any, enabled: bool) -> None:
    """Recompute the LM's layers in the backward pass instead of storing their activations (or stop doing so).

    transformers checkpoints a layer only while it is in training mode; the frozen LM stays in eval mode
    (no dropout), so only the layer modules themselves are flagged as training.
    """
    from transformers.modeling_layers import GradientCheckpointingLayer

    # transformers 5 renamed gradient_* to activation_checkpointing_*; 4.x only has the old names
    if enabled:
        if hasattr(lm, "activation_checkpointing_enable"):
            lm.activation_checkpointing_enable({"use_reentrant": False})
        else:
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    elif hasattr(lm, "activation_checkpointing_disable"):
        lm.activation_checkpointing_disable()
    else:
        lm.gradient_checkpointing_disable()
    lm.eval()
    for module in lm.modules():
        if isinstance(module, GradientCheckpointingLayer):
            module.training = enabled


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    console: Any = None,
    quiet: bool = False,
    stop_after_steps: int | None = None,
    time_limit_minutes: float | None = None,
) -> TrainResult:
    """Run (or resume) a training run; returns what it did. Under torchrun, every rank calls this."""
    trainer = Trainer(config, resume=resume, console=console, quiet=quiet)
    try:
        return trainer.run(stop_after_steps=stop_after_steps, time_limit_minutes=time_limit_minutes)
    finally:
        trainer.close()
