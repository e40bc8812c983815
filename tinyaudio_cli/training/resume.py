"""A run's folder: the names of its files, its checkpoints and the newest intact one, and stopping on a
signal so that a run resumes.

A run stopped by SIGINT (Ctrl-C) or SIGTERM finishes its optimizer step, writes a checkpoint and exits with
128 + the signal's number (130 for Ctrl-C), as a shell expects of an interrupted command. A machine that dies
while a checkpoint is written leaves at most a `.partial` folder, but a disk can still damage a finished one:
`--resume` checks the newest checkpoint's files and falls back to the one before, with a warning.

Light (no torch): config.py resolves `--resume` with it while the command line is read.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import TinyAudioError

# -- files of a run -----------------------------------------------------------------------------------

CHECKPOINT_PREFIX = "checkpoint-"
STATE_NAME = "training_state.pt"
CONFIG_FILE_NAME = "train_config.yaml"
METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "training_curves.png"
TENSORBOARD_DIR = "tensorboard"
CACHE_DIR_NAME = "encoder-cache"
FINAL_DIR = "final"


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


# -- stopping on a signal, resuming from an intact checkpoint ----------------------------------------------


class InterruptFlag:
    """While active, the first SIGINT/SIGTERM only asks for a stop at the next step boundary (a checkpoint is
    written there) and is remembered in `signum`; a second one interrupts as usual."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    @property
    def raised(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        signal.signal(signum, self.previous.get(signum, signal.SIG_DFL))

    def __enter__(self) -> InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def checkpoint_problem(checkpoint: Path, state_name: str, config_name: str) -> str | None:
    """Why a checkpoint cannot be resumed from (or loaded by transcribe), or None if its files are intact."""
    import torch
    import yaml
    from safetensors import SafetensorError, safe_open

    try:
        state = torch.load(checkpoint / state_name, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not {"step", "projector", "optimizer", "ranks"} <= set(state):
            return f"{state_name} is not a training state"
    except Exception as error:  # a damaged pickle raises anything from EOFError to RuntimeError
        return f"{state_name} cannot be read: {' '.join(str(error).split())[:120] or type(error).__name__}"
    weights = checkpoint / "model.safetensors"
    try:
        with safe_open(weights, "pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open handles are not mappings
                handle.get_tensor(key)
    except (OSError, SafetensorError) as error:
        return f"model.safetensors cannot be read: {' '.join(str(error).split())[:120]}"
    try:
        if not isinstance(yaml.safe_load((checkpoint / config_name).read_text(encoding="utf-8")), dict):
            return f"{config_name} holds no settings"
    except (OSError, ValueError, yaml.YAMLError) as error:
        return f"{config_name} cannot be read: {type(error).__name__}"
    return None


def resumable_checkpoint(
    checkpoints: list[Path], state_name: str, config_name: str, warn: Callable[[str], None] | None = None
) -> Path | None:
    """The newest of `checkpoints` (oldest first) whose files are intact; each damaged newer one is skipped
    with a warning. None if there are none; a TinyAudioError if there are some but none is intact."""
    problems = []
    for checkpoint in reversed(checkpoints):
        problem = checkpoint_problem(checkpoint, state_name, config_name)
        if problem is None:
            if problems and warn is not None:
                skipped = "; ".join(f"{path.name}: {why}" for path, why in problems)
                warn(f"[yellow]warning:[/] resuming from {checkpoint.name}: newer checkpoints are damaged ({skipped})")
            return checkpoint
        problems.append((checkpoint, problem))
    if problems:
        listed = "; ".join(f"{path.name}: {why}" for path, why in problems)
        raise TinyAudioError(f"no usable checkpoint to resume in {checkpoints[0].parent} ({listed})")
    return None
