"""Faults a user meets on purpose or by accident: each gives one clear line and the right exit code, and
nothing the user owns is lost.

Commands run as the user runs them (a `python -m tinyaudio_cli` subprocess, so that a traceback reaches
stderr exactly as it would on a terminal), on tiny random stacks built from configs (tests/tinystack.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tinystack import build_checkpoint

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


def tinyaudio(*args: str | Path, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tinyaudio_cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
        cwd=cwd,
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single line a failed command prints on stderr (a traceback or a wrapped message fails here)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("stack"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds of a tone: the device check must come before any of it is read."""
    import numpy as np
    import soundfile as sf

    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    sf.write(path, (0.1 * np.sin(np.arange(32_000) * 0.05)).astype(np.float32), 16_000)
    return path


# -- 1. devices and dtypes ------------------------------------------------------------------------------------

DEVICE_COMMANDS = {
    "transcribe": lambda ck, clip, out: ["transcribe", clip, "-m", ck, "-o", out],
    "eval": lambda ck, clip, out: ["eval", "--folder", clip.parent, "-m", ck, "-o", out],
    "train": lambda ck, clip, out: ["train", "--data", clip.parent, "-o", out, "--max-steps", "1"],
}


@pytest.mark.parametrize("command", sorted(DEVICE_COMMANDS))
@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("bogus", "error: unknown device 'bogus' (auto, cpu, cuda, cuda:N, mps)"),
        pytest.param(
            "cuda",
            "error: cuda requested but ",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
        ),
    ],
)
def test_unusable_device_is_a_one_line_usage_error(
    command: str, device: str, message: str, checkpoint: Path, clip: Path, tmp_path: Path
) -> None:
    args = DEVICE_COMMANDS[command](checkpoint, clip, tmp_path / "out")
    result = tinyaudio(*args, "--device", device)
    assert result.returncode == 2, result.stderr
    assert one_error_line(result).startswith(message)
    assert not (tmp_path / "out").exists()  # refused before any work


@pytest.mark.parametrize("command", ["transcribe", "eval"])
def test_unknown_dtype_is_a_one_line_usage_error(command: str, checkpoint: Path, clip: Path, tmp_path: Path) -> None:
    result = tinyaudio(*DEVICE_COMMANDS[command](checkpoint, clip, tmp_path / "out"), "--dtype", "float8")
    assert result.returncode == 2, result.stderr
    assert one_error_line(result) == "error: unknown dtype 'float8' (auto, float32, bfloat16, float16)"


def test_export_unknown_dtype_is_a_one_line_usage_error(checkpoint: Path, tmp_path: Path) -> None:
    result = tinyaudio("export", checkpoint, tmp_path / "out", "--dtype", "float8")
    assert result.returncode == 2, result.stderr
    assert one_error_line(result) == "error: unknown dtype 'float8' (float32, bfloat16, float16)"
    assert not (tmp_path / "out").exists()
