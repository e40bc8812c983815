"""What a new user meets first: help that reads like a Unix tool's, `info` that says what is missing, a hint
that names the command that fixes an offline miss, and an install that declares what the code imports."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

PACKAGE = Path(__file__).resolve().parent.parent / "tinyaudio_cli"
COMMANDS = ("transcribe", "align", "eval", "train", "download", "export", "info")
# imported only where `importlib.util.find_spec` says they are there: whichever HTTP client huggingface_hub uses
OPTIONAL_IMPORTS = {"requests", "httpx", "httpx2"}


def tinyaudio(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tinyaudio_cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "160", **(env or {})},
        timeout=300,
    )


@pytest.mark.parametrize("command", ("", *COMMANDS))
def test_help_shows_flags_as_flags_and_values_by_name(command):
    result = tinyaudio(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    # Typer's defaults would print `<bool>` after every flag, `<list[str]>`, `<int range>` and `{inputs}...`
    assert not re.search(r"<(bool|str|int|float|path|list)", result.stdout), result.stdout
    assert "{" not in result.stdout.split("\n\n")[1]  # the usage line


def test_transcribe_help_names_values():
    out = tinyaudio("transcribe", "--help").stdout
    assert re.search(r"Usage: .*tinyaudio\S* transcribe \[OPTIONS\] INPUTS\.\.\.", out), out
    assert re.search(r"--format\s+-f\s+FORMAT\s", out)
    assert re.search(r"--max-line-width\s+N\s", out)
    assert re.search(r"--srt\s+Same as -f srt", out)  # no type between a flag and its help


def test_offline_hint_for_a_shipped_model_names_the_shipped_model(tmp_path):
    clip = tmp_path / "clip.wav"
    sf.write(clip, 0.1 * np.sin(np.arange(16_000) / 16_000 * 2 * np.pi * 440).astype(np.float32), 16_000)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache"), "TINYAUDIO_BASES": ""}
    result = tinyaudio("transcribe", "-m", "tiny-en", "--no-vad", str(clip), "-o", str(tmp_path / "out"), env=env)
    assert result.returncode == 1
    assert "tinyaudio download tiny-en" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # whole processes or runs: out of the fast loop (-m 'not slow')
def test_info_lists_shipped_models_dependencies_and_missing_base_folders(tmp_path):
    env = {"TINYAUDIO_BASES": f"openai/whisper-tiny.en={tmp_path / 'gone'}", "HF_HUB_CACHE": str(tmp_path)}
    result = tinyaudio("info", "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    shipped = {model["name"]: model for model in report["shipped_models"]}
    assert "tiny-en" in shipped
    whisper = next(b for b in shipped["tiny-en"]["bases"] if b["id"] == "openai/whisper-tiny.en")
    assert whisper["from"].endswith("(missing)")
    assert report["bases_folders"] == [
        {"id": "openai/whisper-tiny.en", "path": str(tmp_path / "gone"), "exists": False}
    ]
    declared = {d["name"] for d in report["dependencies"]}
    assert {"torch", "transformers", "accelerate", "silero-vad"} <= declared
    assert [d for d in report["dependencies"] if d["error"]] == []
    table = tinyaudio("info", env=env).stdout
    assert "shipped: tiny-en" in table and "no such folder" in table and "none cached" not in table


def _third_party_imports() -> set[str]:
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name != "tinyaudio_cli"}


def test_every_imported_package_is_declared():
    declared = {
        re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        for requirement in metadata.requires("tinyaudio-cli") or []
        if "extra ==" not in requirement
    }
    distributions = metadata.packages_distributions()
    undeclared = {
        module: distributions.get(module)
        for module in _third_party_imports() - OPTIONAL_IMPORTS
        if not {d.lower().replace("_", "-") for d in distributions.get(module, [])} & declared
    }
    assert undeclared == {}
    # transformers loads a model onto its device with `device_map=`, which needs accelerate
    from transformers.utils import is_accelerate_available

    assert "accelerate" in declared and is_accelerate_available()
