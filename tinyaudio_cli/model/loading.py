"""Find a checkpoint and its bases (local folder, base-path mapping or Hub cache) and assemble the model.

Only safetensors are read, and no code that ships with a checkpoint is ever executed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import (
    AddedToken,
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerFast,
    WhisperFeatureExtractor,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from .config import AUDIO_TOKEN, TinyAudioConfig
from .constants import BASES_ENV, BUNDLED_MODEL_NAMES, DEFAULT_MODEL
from .context import context_padding
from .errors import TinyAudioError, UsageError
from .modeling import TinyAudioModel
from .projector import MOSAProjector, init_projector

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
ENCODER_PREFIXES = ("model.encoder.", "encoder.", "")
PROJECTOR_PREFIX = "projector."
# what tinyaudio reads from each kind of repository (never *.py, never pickles)
HUB_PATTERNS: dict[str, list[str]] = {
    "checkpoint": ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.md", "*.png"],
    "audio": [
        "config.json",
        "preprocessor_config.json",
        "normalizer.json",
        "*.safetensors",
        WEIGHTS_INDEX_NAME,
    ],
    "text": ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt"],
}
# checkpoints that ship inside the package, by short name (their bases still come from the Hub or TINYAUDIO_BASES)
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
BUNDLED_MODELS = {name: BUNDLED_DIR / name for name in BUNDLED_MODEL_NAMES}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# -- where things are ---------------------------------------------------------------------------


def parse_bases(spec: str | None) -> dict[str, Path]:
    """`id=path` pairs separated by commas (TINYAUDIO_BASES); ids mapped to local folders."""
    bases: dict[str, Path] = {}
    for item in (spec or "").split(","):
        if item.strip():
            model_id, sep, path = item.partition("=")
            if not sep:
                raise TinyAudioError(f"bad base mapping {item!r}", hint="write it as MODEL_ID=/local/folder")
            bases[model_id.strip()] = Path(path.strip()).expanduser()
    return bases


def resolve_model_dir(
    name_or_path: str,
    kind: str = "checkpoint",
    bases: Mapping[str, str | Path] | None = None,
    revision: str | None = None,
    download_as: str | None = None,
) -> Path:
    """A local folder for a model: a checkpoint shipped with tinyaudio by its short name, a folder, a base
    id mapped to a folder, or a Hub id (the cache first). `download_as` is what `tinyaudio download` takes to
    fetch it (the checkpoint a base belongs to fetches the base too)."""
    if name_or_path in BUNDLED_MODELS:
        return BUNDLED_MODELS[name_or_path]
    mapping = {**parse_bases(os.environ.get(BASES_ENV)), **{k: Path(v) for k, v in (bases or {}).items()}}
    if name_or_path in mapping:
        folder = mapping[name_or_path]
        if not folder.is_dir():
            raise TinyAudioError(f"{name_or_path} is mapped to {folder}, which is not a folder")
        return folder
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return local
    return hub_snapshot(name_or_path, kind, revision, download_as)


def hub_snapshot(repo_id: str, kind: str, revision: str | None = None, download_as: str | None = None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_PATTERNS[kind]))
    except HFValidationError as error:
        raise TinyAudioError(f"{repo_id!r} is neither a local folder nor a Hub model id") from error
    except Exception as error:  # offline, not cached, unknown repo, no network: one message
        raise TinyAudioError(
            f"model {repo_id} is not on this machine and could not be fetched ({type(error).__name__})",
            hint=f"run `tinyaudio download {download_as or repo_id}` where the Hub is reachable, "
            f"or map it with {BASES_ENV}",
        ) from error


# -- device and precision -----------------------------------------------------------------------


DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"


def check_device(device: str | torch.device) -> None:
    """A usage error for a device name torch does not know, or an accelerator this machine lacks; every command
    calls this before any model work, so the user gets one line instead of a traceback from deep in torch."""
    name = str(device).strip()
    if name in ("auto", "cpu"):
        return
    match = re.fullmatch(r"(cuda|mps)(?::(\d+))?", name)
    if match is None:
        raise UsageError(f"unknown device {name!r} ({DEVICE_CHOICES})")
    kind, index = match.group(1), match.group(2)
    if kind == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError("mps requested but this machine has no MPS (Apple GPU) that torch can use")
        return
    if not torch.cuda.is_available():
        why = "this torch has no CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise UsageError(f"cuda requested but {why}")
    count = torch.cuda.device_count()
    if index is not None and int(index) >= count:
        raise UsageError(f"{name} requested but only {count} GPU(s) visible (cuda:0 to cuda:{count - 1})")


def check_dtype(dtype: str) -> None:
    if dtype != "auto" and dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r} (auto, {', '.join(DTYPES)})")


def check_encoder_context(value: str) -> None:
    context_padding(value)


def set_threads(threads: int | None) -> int:
    """torch's CPU threads: `threads`, else every core this process may run on, unless OMP_NUM_THREADS says
    otherwise (a user or a scheduler sharing the machine). Returns the count in force."""
    if threads is None:
        if os.environ.get("OMP_NUM_THREADS"):
            return torch.get_num_threads()
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(threads)
    return threads


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise TinyAudioError(f"unknown dtype {dtype!r}", hint=f"choose from auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def resolve_attention(device: torch.device) -> str:
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


# -- the parts ----------------------------------------------------------------------------------


def weight_files(folder: Path) -> list[Path]:
    index = folder / WEIGHTS_INDEX_NAME
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / shard for shard in shards]
    if (folder / WEIGHTS_NAME).is_file():
        return [folder / WEIGHTS_NAME]
    raise TinyAudioError(f"no {WEIGHTS_NAME} in {folder}", hint="tinyaudio reads safetensors weights only")


def weights_sha256(folder: Path) -> str:
    """A fingerprint of a checkpoint's weights (the bytes of its safetensors files): `eval` records it so that
    `export --eval-summary` can tell whether a summary scored the model being exported."""
    digest = hashlib.sha256()
    for file in weight_files(folder):
        with file.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def load_whisper_encoder(folder: Path, dtype: torch.dtype, device: torch.device, attn: str) -> WhisperEncoder:
    """The encoder half of any Whisper checkpoint; decoder weights are never read."""
    config = AutoConfig.from_pretrained(folder)
    files = weight_files(folder)
    keys: dict[str, Path] = {}
    for file in files:
        with safe_open(file, "pt") as handle:
            keys.update(dict.fromkeys(handle.keys(), file))
    prefix = next((p for p in ENCODER_PREFIXES if f"{p}conv1.weight" in keys), None)
    if prefix is None:
        raise TinyAudioError(f"{folder} holds no Whisper encoder weights")
    state = {}
    for file in files:
        with safe_open(file, "pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open handles are not mappings
                if key.startswith(prefix) and not key.startswith(f"{prefix}decoder."):
                    state[key[len(prefix) :]] = handle.get_tensor(key)
    with torch.device("meta"):
        encoder = WhisperEncoder._from_config(config, attn_implementation=attn)
    encoder.load_state_dict(state, strict=True, assign=True)
    return encoder.to(device=device, dtype=dtype).eval().requires_grad_(False)


def load_lm(folder: Path, dtype: torch.dtype, device: torch.device, attn: str) -> torch.nn.Module:
    weight_files(folder)  # a clear error before transformers looks for other formats
    lm = AutoModelForCausalLM.from_pretrained(
        folder, dtype=dtype, attn_implementation=attn, device_map=str(device), use_safetensors=True
    )
    return lm.eval().requires_grad_(False)


def load_tokenizer(checkpoint: Path | None, text_dir: Path):
    source = checkpoint if checkpoint and any((checkpoint / f).is_file() for f in TOKENIZER_FILES) else text_dir
    if (source / "tokenizer.json").is_file():
        # read tokenizer files directly: AutoTokenizer would consult the checkpoint's config.json (auto_map)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(source)
    else:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    if AUDIO_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(AUDIO_TOKEN, special=True, normalized=False)], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def fit_embeddings(lm: torch.nn.Module, vocab_size: int) -> None:
    """Grow the LM's vocabulary to the tokenizer's; new rows (only `<audio>`) are zero, never sampled."""
    old = lm.get_input_embeddings().num_embeddings
    if vocab_size <= old:
        return
    lm.resize_token_embeddings(vocab_size, mean_resizing=False)
    with torch.no_grad():
        lm.get_input_embeddings().weight[old:] = 0
        output = lm.get_output_embeddings()
        if output is not None:
            output.weight[old:] = 0


def load_feature_extractor(checkpoint: Path | None, audio_dir: Path, num_mel_bins: int) -> WhisperFeatureExtractor:
    for folder in (checkpoint, audio_dir):
        if folder and (folder / "preprocessor_config.json").is_file():
            extractor = WhisperFeatureExtractor.from_pretrained(folder)
            break
    else:
        extractor = WhisperFeatureExtractor(feature_size=num_mel_bins)
    if extractor.feature_size != num_mel_bins:
        raise TinyAudioError(
            f"feature extractor makes {extractor.feature_size} mel bins, the encoder expects {num_mel_bins}"
        )
    return extractor


# -- the model ----------------------------------------------------------------------------------


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    bases: Mapping[str, str | Path] | None = None,
    revision: str | None = None,
) -> TinyAudioModel:
    """A Tiny Audio checkpoint (local folder or Hub id) with its encoder and LM, ready to transcribe."""
    checkpoint = resolve_model_dir(name_or_path, "checkpoint", bases, revision)
    config_path = checkpoint / "config.json"
    if not config_path.is_file():
        raise TinyAudioError(f"{checkpoint} has no config.json", hint="is it a Tiny Audio checkpoint?")
    config = TinyAudioConfig.from_pretrained(checkpoint)
    if config.projector_type != "moe":
        raise TinyAudioError(f"projector type {config.projector_type!r} is not supported (only 'moe')")
    model = assemble(config, checkpoint, device, dtype, bases, download_as=name_or_path)
    state = load_file(weight_files(checkpoint)[0])
    projector_state = {k[len(PROJECTOR_PREFIX) :]: v for k, v in state.items() if k.startswith(PROJECTOR_PREFIX)}
    missing, unexpected = model.projector.load_state_dict(projector_state, strict=False)
    if missing or unexpected:
        raise TinyAudioError(
            f"{checkpoint} does not match the MOSA projector (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.projector.to(model.device, model.dtype)
    model.name = name_or_path
    model.checkpoint_dir = checkpoint  # where the weights came from (eval fingerprints them)
    return model


def create_model(
    config: TinyAudioConfig,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    bases: Mapping[str, str | Path] | None = None,
    seed: int = 0,
) -> TinyAudioModel:
    """A new model from base ids with a freshly initialised projector (the start of training)."""
    torch.manual_seed(seed)
    model = assemble(config, None, device, dtype, bases)
    init_projector(model.projector)
    model.name = "new"
    return model


def assemble(
    config: TinyAudioConfig,
    checkpoint: Path | None,
    device: str | torch.device,
    dtype: str | torch.dtype,
    bases: Mapping[str, str | Path] | None,
    download_as: str | None = None,
) -> TinyAudioModel:
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    attn = resolve_attention(device)
    audio_dir = resolve_model_dir(config.audio_model_id, "audio", bases, download_as=download_as)
    text_dir = resolve_model_dir(config.text_model_id, "text", bases, download_as=download_as)
    encoder = load_whisper_encoder(audio_dir, dtype, device, attn)
    lm = load_lm(text_dir, dtype, device, attn)
    tokenizer = load_tokenizer(checkpoint, text_dir)
    fit_embeddings(lm, len(tokenizer))
    extractor = load_feature_extractor(checkpoint, audio_dir, encoder.config.num_mel_bins)
    encoder_dim = encoder.config.d_model
    llm_dim = lm.get_input_embeddings().embedding_dim
    for key, expected, actual in (
        ("encoder_dim", config.encoder_dim, encoder_dim),
        ("llm_dim", config.llm_dim, llm_dim),
    ):
        if expected is not None and expected != actual:
            raise TinyAudioError(f"config {key} is {expected} but the base model has {actual}")
    config.encoder_dim, config.llm_dim = encoder_dim, llm_dim
    projector = MOSAProjector(
        encoder_dim, llm_dim, config.expert_hidden_dim, config.num_experts, config.projector_dropout
    ).to(device=device, dtype=dtype)
    model = TinyAudioModel(config, encoder, projector, lm, tokenizer, extractor).eval()
    model.audio_dir = audio_dir
    return model
