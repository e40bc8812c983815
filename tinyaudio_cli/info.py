"""What `tinyaudio info` reports: versions, devices, ffmpeg, the model cache. One dict, pasteable."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__
from .constants import BASES_ENV, DEFAULT_MODEL, MODEL_ENV

PACKAGES = ("torch", "transformers", "huggingface_hub", "datasets", "silero-vad", "typer")


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def gpus() -> list[dict[str, Any]]:
    import torch

    if not torch.cuda.is_available():
        return []
    return [
        {
            "name": torch.cuda.get_device_name(i),
            "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
        }
        for i in range(torch.cuda.device_count())
    ]


def ffmpeg() -> dict[str, str | None]:
    from .audio.media import find_ffmpeg
    from .errors import TinyAudioError

    try:
        path = find_ffmpeg()
    except TinyAudioError as error:
        return {"path": None, "version": None, "error": error.message}
    first = subprocess.run([path, "-version"], capture_output=True, text=True, check=False).stdout.splitlines()
    return {"path": path, "version": first[0].removeprefix("ffmpeg version ").split(" ")[0] if first else None}


def cached_models() -> dict[str, Any]:
    """Tinyaudio checkpoints in the Hugging Face cache, and the cached bases they name."""
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    report: dict[str, Any] = {"cache": str(constants.HF_HUB_CACHE), "models": [], "bases": []}
    try:
        cache = scan_cache_dir()
    except CacheNotFound:
        return report
    sizes = {repo.repo_id: repo.size_on_disk for repo in cache.repos if repo.repo_type == "model"}
    bases: set[str] = set()
    for repo in cache.repos:
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            config = Path(revision.snapshot_path) / "config.json"
            if config.is_file():
                data = json.loads(config.read_text())
                if data.get("model_type") == "asr_model":
                    report["models"].append({"id": repo.repo_id, "size_mb": round(repo.size_on_disk / 2**20, 1)})
                    bases.update(data.get(key) for key in ("audio_model_id", "text_model_id") if data.get(key))
                    break
    report["bases"] = [
        {"id": base, "cached": base in sizes, "size_mb": round(sizes.get(base, 0) / 2**20, 1)} for base in sorted(bases)
    ]
    return report


def dependencies() -> list[dict[str, Any]]:
    """Every package tinyaudio declares (extras aside): its version and whether its modules import. A missing or
    broken one is the usual reason a fresh install fails, so `info` names it."""
    import importlib
    import re

    by_distribution: dict[str, list[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        if not module.startswith("_"):
            for dist in dists:
                by_distribution.setdefault(_canonical(dist), []).append(module)
    report = []
    for requirement in metadata.requires("tinyaudio-cli") or []:
        if "extra ==" in requirement:
            continue
        name = re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0]
        entry: dict[str, Any] = {"name": name, "version": package_version(name), "error": None}
        if entry["version"] is None:
            entry["error"] = "not installed"
        else:
            for module in sorted(by_distribution.get(_canonical(name), [])):
                try:
                    importlib.import_module(module)
                except Exception as error:  # any failure to import is what the user needs to see
                    entry["error"] = f"import {module}: {type(error).__name__}: {error}".splitlines()[0]
                    break
        report.append(entry)
    return report


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def shipped_models() -> list[dict[str, Any]]:
    """Checkpoints inside the package, and where each of their bases would come from."""
    import os

    from .model.loading import BUNDLED_MODELS, parse_bases

    try:
        mapping = parse_bases(os.environ.get(BASES_ENV))
    except Exception:
        mapping = {}
    report = []
    for name, folder in BUNDLED_MODELS.items():
        config_file = folder / "config.json"
        if not config_file.is_file():
            continue
        config = json.loads(config_file.read_text())
        bases = []
        for key in ("audio_model_id", "text_model_id"):
            base = config.get(key)
            if base in mapping:
                where = str(mapping[base]) if mapping[base].is_dir() else f"{mapping[base]} (missing)"
            else:
                where = "Hub cache" if _in_hub_cache(base) else "not on this machine"
            bases.append({"id": base, "from": where})
        report.append({"name": name, "path": str(folder), "bases": bases})
    return report


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def bases_mapping() -> list[dict[str, Any]]:
    """TINYAUDIO_BASES as read, each folder checked."""
    import os

    from .errors import TinyAudioError
    from .model.loading import parse_bases

    try:
        mapping = parse_bases(os.environ.get(BASES_ENV))
    except TinyAudioError as error:
        return [{"id": None, "path": os.environ.get(BASES_ENV), "exists": False, "error": error.message}]
    return [{"id": k, "path": str(v), "exists": v.is_dir()} for k, v in mapping.items()]


def collect() -> dict[str, Any]:
    import os

    import torch

    return {
        "tinyaudio": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: package_version(name) for name in PACKAGES},
        "cuda": {"available": torch.cuda.is_available(), "version": torch.version.cuda, "gpus": gpus()},
        "ffmpeg": ffmpeg(),
        "default_model": os.environ.get(MODEL_ENV, DEFAULT_MODEL),
        "bases_mapping": os.environ.get(BASES_ENV),
        "bases_folders": bases_mapping(),
        "dependencies": dependencies(),
        "shipped_models": shipped_models(),
        "hf_cache": cached_models(),
    }
