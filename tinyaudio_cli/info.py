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
from .defaults import BASES_ENV, DEFAULT_MODEL, MODEL_ENV

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
    from .audio import find_ffmpeg
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
        "hf_cache": cached_models(),
    }
