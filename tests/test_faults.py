"""Faults a user meets on purpose or by accident: each gives one clear line and the right exit code, and
nothing the user owns is lost.

Commands run as the user runs them (a `python -m tinyaudio_cli` subprocess, so that a traceback reaches
stderr exactly as it would on a terminal), on tiny random stacks built from configs (tests/tinystack.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tinystack import build_bases, build_checkpoint

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
    "eval": lambda ck, clip, out: ["eval", "--data", clip.parent, "-m", ck, "-o", out],
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


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--lr-scheduler", "cosin"], "error: unknown lr_scheduler 'cosin' (cosine, linear, constant, "
         "constant_with_warmup, cosine_with_restarts, polynomial)"),
        (["--save-dtype", "int8"], "error: unknown save_dtype 'int8' (auto, float32, bfloat16, float16)"),
        (["--preset", "tiny"], "error: unknown preset 'tiny' (loquacious, smoke, tiny-en)"),
    ],
)  # fmt: skip
def test_train_choices_outside_their_set_are_one_line_usage_errors(args: list[str], line: str, tmp_path: Path) -> None:
    """A closed set of values (an Enum in cli/options.py) is checked while the command line is parsed: exit 2,
    before a preset, a config file or any data is read."""
    result = tinyaudio("train", "--data", tmp_path, "-o", tmp_path / "out", "--dry-run", *args)
    assert result.returncode == 2, result.stderr
    assert one_error_line(result) == line


def test_help_and_completion_know_each_closed_set_of_values() -> None:
    """Each Enum names its values once: help shows them as [a|b|c], the library accepts exactly them, and
    Click's completion offers them."""
    from tinyaudio_cli.cli.options import Dtype, Preset, SaveDtype, Scheduler
    from tinyaudio_cli.model.loading import DTYPES
    from tinyaudio_cli.training.config import PRESETS, SCHEDULERS

    assert [m.value for m in Dtype] == ["auto", *DTYPES] and [m.value for m in SaveDtype] == list(DTYPES)
    assert [m.value for m in Scheduler] == list(SCHEDULERS) and [m.value for m in Preset] == list(PRESETS)
    help_text = tinyaudio("train", "--help").stdout
    assert "[loquacious|smoke|tiny-en]" in help_text and "[cosine|linear|constant|" in help_text
    assert "[float32|bfloat16|float16]" in tinyaudio("export", "--help").stdout
    env = {**ENV, "_TINYAUDIO_COMPLETE": "complete_bash", "COMP_WORDS": "tinyaudio eval --dtype bf", "COMP_CWORD": "3"}
    completed = subprocess.run([sys.executable, "-m", "tinyaudio_cli"], capture_output=True, text=True, env=env)
    assert completed.stdout.split() == ["bfloat16"]


def test_export_unknown_dtype_is_a_one_line_usage_error(checkpoint: Path, tmp_path: Path) -> None:
    result = tinyaudio("export", checkpoint, tmp_path / "out", "--dtype", "float8")
    assert result.returncode == 2, result.stderr
    assert one_error_line(result) == "error: unknown dtype 'float8' (float32, bfloat16, float16)"
    assert not (tmp_path / "out").exists()


# -- 5-7. export: never replace what it did not write; only its own eval results; usual file modes ---------------


def file_modes(folder: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mode & 0o777 for path in folder.iterdir() if path.is_file()}


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.slow  # whole processes or runs: out of the fast loop (-m 'not slow')
def test_export_refuses_another_models_folder_and_overwrite_replaces_only_its_files(
    checkpoint: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other-model"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "llama"}')
    (other / "pytorch_model.bin").write_bytes(b"weights of another model")
    before = {path.name: path.read_bytes() for path in other.iterdir()}

    refused = tinyaudio("export", checkpoint, other)
    assert refused.returncode == 1, refused.stderr
    assert f"{other} is not empty (it holds a model: config.json)" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert {path.name: path.read_bytes() for path in other.iterdir()} == before

    replaced = tinyaudio("export", checkpoint, other, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert (other / "pytorch_model.bin").read_bytes() == before["pytorch_model.bin"]  # not the export's file
    assert "left as they were: pytorch_model.bin" in " ".join(replaced.stderr.split())
    assert '"model_type": "asr_model"' in (other / "config.json").read_text()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no staging folder left


@pytest.mark.slow  # trains or evaluates whole runs: out of the fast loop
def test_export_over_an_earlier_export_needs_overwrite_and_keeps_the_users_files(
    checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "exported"
    assert tinyaudio("export", checkpoint, out).returncode == 0
    (out / "NOTES.md").write_text("mine")
    stale = out / "tinyaudio_removed_module.py"  # code an earlier version exported, no longer shipped
    stale.write_text("# Copied by `tinyaudio export` from tinyaudio_cli.gone (tinyaudio 0.0.1)\n")
    again = tinyaudio("export", checkpoint, out)
    assert again.returncode == 1 and "is not empty" in again.stderr
    assert stale.exists()
    # code files an earlier export wrote and recorded, which this one no longer ships: one as it was, one edited
    record = json.loads((out / "tinyaudio_export.json").read_text())
    (out / "retired.py").write_text("RETIRED = True\n")
    (out / "edited.py").write_text("EDITED = 'by the user'\n")
    shipped = hashlib.sha256(b"EDITED = 'as exported'\n").hexdigest()
    record["code"] |= {"retired.py": hashlib.sha256(b"RETIRED = True\n").hexdigest(), "edited.py": shipped}
    (out / "tinyaudio_export.json").write_text(json.dumps(record))
    again = tinyaudio("export", checkpoint, out, "--overwrite")
    assert again.returncode == 0, again.stderr
    assert (out / "NOTES.md").read_text() == "mine" and not stale.exists() and not (out / "retired.py").exists()
    assert (out / "edited.py").read_text() == "EDITED = 'by the user'\n"
    assert "edited since, left as it was (this export does not use it): edited.py" in " ".join(again.stderr.split())
    assert "edited.py" not in json.loads((out / "tinyaudio_export.json").read_text())["code"]


def test_export_never_replaces_a_code_file_it_did_not_write(checkpoint: Path, tmp_path: Path) -> None:
    """The exported code keeps model/'s names (config.py, modeling.py, ...): a same-named file the user edited,
    or another project's, stops an --overwrite export before anything is written."""
    out = tmp_path / "exported"
    assert tinyaudio("export", checkpoint, out).returncode == 0
    assert tinyaudio("export", checkpoint, out, "--overwrite").returncode == 0  # its own files, unchanged
    (out / "modeling.py").write_text("# my fork of the model\n")
    weights = (out / "model.safetensors").read_bytes()
    again = tinyaudio("export", checkpoint, out, "--overwrite")
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert again.stderr.startswith("error: ") and "holds modeling.py, which the export writes" in again.stderr
    assert (out / "modeling.py").read_text() == "# my fork of the model\n"
    assert (out / "model.safetensors").read_bytes() == weights
    other = tmp_path / "another-project"
    other.mkdir()
    (other / "config.py").write_text("SETTING = 1\n")
    refused = tinyaudio("export", checkpoint, other, "--overwrite")
    assert refused.returncode == 1 and refused.stderr.startswith("error: ") and "holds config.py" in refused.stderr
    assert sorted(path.name for path in other.iterdir()) == ["config.py"]


def test_exported_and_trained_weights_have_the_mode_of_every_other_file(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    assert tinyaudio("export", checkpoint, out).returncode == 0
    expected = 0o666 & ~current_umask()
    modes = file_modes(out)
    assert "model.safetensors" in modes and set(modes.values()) == {expected}, modes


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path, clip: Path) -> dict[str, Path]:
    """summary.json of `tinyaudio eval` for the checkpoint and for another model (other projector weights)."""
    root = tmp_path_factory.mktemp("scored")
    other = build_checkpoint(root / "other", seed=1)
    data = root / "data"
    data.mkdir()
    (data / "clip.wav").write_bytes(clip.read_bytes())
    (data / "clip.txt").write_text("a tone")
    summaries = {}
    for name, model in (("same", checkpoint), ("other", other)):
        run = tinyaudio("eval", "--data", data, "-m", model, "-o", root / name, "--max-new-tokens", "4",
                        "--warmup-batches", "0", "--device", "cpu", "-q")  # fmt: skip
        assert run.returncode == 0, run.stderr
        summaries[name] = next((root / name).rglob("summary.json"))
    return summaries


@pytest.mark.slow  # trains or evaluates whole runs: out of the fast loop
def test_export_refuses_the_eval_summary_of_another_model(
    checkpoint: Path, scored: dict[str, Path], tmp_path: Path
) -> None:
    refused = tinyaudio("export", checkpoint, tmp_path / "a", "--eval-summary", scored["other"])
    assert refused.returncode == 1, refused.stderr
    assert f"eval summary {scored['other']} scored other weights" in " ".join(refused.stderr.split())
    assert not (tmp_path / "a").exists()
    accepted = tinyaudio("export", checkpoint, tmp_path / "b", "--eval-summary", scored["same"])
    assert accepted.returncode == 0, accepted.stderr
    assert "model-index" in (tmp_path / "b" / "README.md").read_text()


def test_export_refuses_a_summary_that_names_another_model_without_a_fingerprint(
    checkpoint: Path, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text('{"model": "someone/else", "wer": 0.1, "samples": 3, "dataset": "mine"}')
    refused = tinyaudio("export", checkpoint, tmp_path / "out", "--eval-summary", summary)
    assert refused.returncode == 1, refused.stderr
    assert f"eval summary {summary} is of someone/else, not {checkpoint}" in " ".join(refused.stderr.split())


# -- 8. a local manifest given to --dataset -------------------------------------------------------------------


def test_a_local_manifest_given_to_dataset_reads_audio_beside_the_manifest(
    checkpoint: Path, clip: Path, tmp_path: Path
) -> None:
    data = tmp_path / "local"
    data.mkdir()
    (data / "clip.wav").write_bytes(clip.read_bytes())
    (data / "manifest.jsonl").write_text('{"audio": "clip.wav", "text": "a tone", "id": "c1"}\n')
    fast = ["--max-new-tokens", "4", "--warmup-batches", "0", "--device", "cpu", "-q"]
    run = tinyaudio("eval", "--dataset", "local/manifest.jsonl", "-m", checkpoint, "-o", "results", *fast, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    summary = json.loads(next((tmp_path / "results").rglob("summary.json")).read_text())
    assert (summary["samples"], summary["failed_samples"]) == (1, 0), summary["failed"]


# -- 2. a checkpoint's chat template is code: bounded, and its faults are one line --------------------------------


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{% for message in messages %}{{ message['content'] }}", "syntax error on line 1: Unexpected end of template"),
        ("{{ ''.__class__.__mro__ }}{{ messages }}", "refused by the sandbox: access to attribute '__class__'"),
        # 30 characters that made transformers build a 7.6 GB prompt: refused before the text is made
        ("{{ 'x' * 100000000 }}{{ messages }}", "refused: it repeats a value 100,000,000 times"),
    ],
)
def test_a_bad_chat_template_is_one_line_naming_its_file(
    template: str, reason: str, checkpoint: Path, clip: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    shutil.copytree(checkpoint, model)
    (model / "chat_template.jinja").write_text(template)
    result = tinyaudio("transcribe", clip, "-m", model, "-o", tmp_path / "out", "--device", "cpu", "-q", timeout=120)
    assert result.returncode == 1, result.stderr
    assert one_error_line(result).startswith(f"error: chat template {model / 'chat_template.jinja'}: {reason}")


# -- 3-4. training: Ctrl-C is 130 with a checkpoint that resumes; a damaged checkpoint is skipped ------------------


@pytest.fixture(scope="module")
def train_args(tmp_path_factory: pytest.TempPathFactory, clip: Path) -> list[str]:
    """A tiny run's settings (tiny random bases, one clip), for as many steps as a test lets it take."""
    root = tmp_path_factory.mktemp("train")
    whisper, lm = build_bases(root)
    (root / "clip.wav").write_bytes(clip.read_bytes())
    (root / "train.jsonl").write_text('{"audio": "clip.wav", "text": "a tone"}\n')
    return ["train", "--encoder", whisper, "--llm", lm, "--experts", "2", "--hidden-dim", "16", "--data",
            root / "train.jsonl", "--batch-size", "1", "--grad-accum", "1", "--warmup-steps", "0", "--eval-steps",
            "0", "--log-steps", "1", "--no-tensorboard", "--device", "cpu", "--dtype", "float32", "-q"]  # fmt: skip


def checkpoint_steps(run: Path) -> list[int]:
    return sorted(
        int(path.name.split("-")[1]) for path in run.glob("checkpoint-*") if (path / "model.safetensors").exists()
    )


@pytest.mark.slow  # trains or evaluates whole runs: out of the fast loop
def test_ctrl_c_stops_training_with_a_checkpoint_and_exit_130(train_args: list[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "tinyaudio_cli", *map(str, train_args), "-o", str(run), "--max-steps", "100000",
         "--save-steps", "0"], env=ENV, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        metrics = run / "metrics.jsonl"
        while process.poll() is None and not (metrics.exists() and '"train"' in metrics.read_text()):
            time.sleep(0.2)  # until a step is logged
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    steps = checkpoint_steps(run)
    assert len(steps) == 1 and steps[0] >= 1, stderr
    checkpoint = run / f"checkpoint-{steps[0]}"
    modes = file_modes(checkpoint)
    assert set(modes.values()) == {0o666 & ~current_umask()}, modes  # model.safetensors as every other file
    resumed = tinyaudio(*train_args, "-o", run, "--resume", "--stop-after-steps", "1")
    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint_steps(run)[-1] == steps[0] + 1


@pytest.mark.slow  # trains or evaluates whole runs: out of the fast loop
@pytest.mark.parametrize("damage", ["training_state.pt", "model.safetensors"])
def test_resume_skips_a_damaged_newest_checkpoint(
    damage: str, train_args: list[str], checkpoint: Path, clip: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    first = tinyaudio(*train_args, "-o", run, "--max-steps", "4", "--save-steps", "2", "--keep-last", "3")
    assert first.returncode == 0, first.stderr
    assert checkpoint_steps(run) == [2, 4]
    damaged = run / "checkpoint-4" / damage
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # a disk that lost the end of a file
    resumed = tinyaudio(*train_args, "-o", run, "--resume", "--max-steps", "6", "--save-steps", "1")
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    warning = " ".join(resumed.stderr.split())
    assert (
        f"resuming from checkpoint-2: newer checkpoints are damaged (checkpoint-4: {damage} cannot be read" in warning
    )
    assert checkpoint_steps(run)[-1] == 6
    # the step-4 checkpoint written again by the resumed run loads
    assert tinyaudio("transcribe", clip, "-m", run / "checkpoint-4", "-o", tmp_path / "t", "-q").returncode == 0


@pytest.mark.slow  # whole processes or runs: out of the fast loop (-m 'not slow')
def test_resume_with_no_intact_checkpoint_is_one_line(train_args: list[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert tinyaudio(*train_args, "-o", run, "--max-steps", "2", "--save-steps", "2").returncode == 0
    (run / "checkpoint-2" / "training_state.pt").write_bytes(b"not a training state")
    resumed = tinyaudio(*train_args, "-o", run, "--resume", "--max-steps", "4")
    assert resumed.returncode == 1, resumed.stderr
    assert one_error_line(resumed).startswith(f"error: no usable checkpoint to resume in {run} (checkpoint-2: ")


# -- 9. the smoke preset needs nothing but this machine ---------------------------------------------------------


@pytest.mark.slow  # trains or evaluates whole runs: out of the fast loop
def test_smoke_preset_trains_offline_and_its_model_transcribes(clip: Path, tmp_path: Path) -> None:
    run = tmp_path / "smoke"
    trained = tinyaudio("train", "--preset", "smoke", "-o", run, "-q")  # HF_HUB_OFFLINE=1 (ENV): no Hub at all
    assert trained.returncode == 0, trained.stderr
    assert (run / "final" / "model.safetensors").is_file() and checkpoint_steps(run) == [20, 40]
    if shutil.which("espeak-ng"):
        assert (run / "smoke-inputs" / "espeak").is_file()  # spoken data, not the tones stand-in
    out = tmp_path / "out"
    transcribed = tinyaudio("transcribe", clip, "-m", run / "final", "-o", out, "--max-new-tokens", "8", "-q")
    assert transcribed.returncode == 0, transcribed.stderr
    assert (out / "clip.txt").is_file()


def sigint_pending(pid: int) -> bool:
    """Whether a SIGINT sent to `pid` still waits to be delivered (Linux: /proc/PID/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    masks = [int(line.split()[1], 16) for line in status.splitlines() if line.startswith(("SigPnd:", "ShdPnd:"))]
    return any(mask & (1 << (signal.SIGINT - 1)) for mask in masks)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads signal state from /proc (Linux)")
def test_ctrl_c_in_transcribe_is_one_line_and_exit_130(checkpoint: Path, tmp_path: Path) -> None:
    """Ctrl-C in any command goes through the app's one handler: one line, `interrupted` (as `train` says it),
    and exit 130, no traceback; Typer alone exits 130 silently, a progress bar left as the last line. The input
    is a FIFO, so the command is certainly at work, blocked reading it, when the signal comes: a FIFO opens for
    writing without blocking only once it has a reader, which tells the test when that is. Once the signal is
    delivered, closing the FIFO lets the read return, and Python raises KeyboardInterrupt where the command is."""
    fifo = tmp_path / "stream.wav"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "tinyaudio_cli", "transcribe", str(fifo), "-m", str(checkpoint), "-o", str(out)],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    writer = None
    try:
        while writer is None and process.poll() is None:
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader yet
                time.sleep(0.05)
        assert process.poll() is None, process.communicate()[1]
        process.send_signal(signal.SIGINT)
        while process.poll() is None and sigint_pending(process.pid):
            time.sleep(0.01)
        os.close(writer)
        writer = None
        _, stderr = process.communicate(timeout=120)
    finally:
        if writer is not None:
            os.close(writer)
        process.kill()
    assert process.returncode == 130, stderr
    assert [line for line in stderr.splitlines() if line.strip()][-1] == "interrupted", stderr
    assert "Traceback" not in stderr and not out.exists()
