"""A run's durable state: checkpoints and their random states, the metrics log and its plot, and stopping
on a signal.

A run stopped by SIGINT (Ctrl-C) or SIGTERM finishes its optimizer step, writes a checkpoint and exits with
128 + the signal's number (130 for Ctrl-C), as a shell expects of an interrupted command. A machine that dies
while a checkpoint is written leaves at most a `.partial` folder, but a disk can still damage a finished one:
`--resume` checks the newest checkpoint's files and falls back to the one before, with a warning.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .resume import METRICS_NAME, PLOT_NAME, TENSORBOARD_DIR

if TYPE_CHECKING:
    pass


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
