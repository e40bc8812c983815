"""`tinyaudio train`'s driver: resolve the settings, run the trainer, show progress and a summary.

Every TrainConfig field is a flag, generated from the field's type and metadata, so a hyper-parameter is
named in one place (the dataclass); `--set key=value` reaches the same fields from scripts. Flags default to
"not given", so only what the user typed overrides the preset, the config file or a resumed run's settings.
"""

from __future__ import annotations

import inspect
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args

import typer
from rich.table import Table

from .. import distributed
from ..training.config import FIELD_TYPES, SOURCE_FIELDS, TrainConfig, parse_assignment, resolve_config
from .options import (
    Choice,
    Dtype,
    Preset,
    QuietOption,
    Scheduler,
    choices,
    complete_dataset,
    complete_model,
    console,
    quiet_transformers,
)

if TYPE_CHECKING:
    from ..training.trainer import TrainResult  # imports torch: --help must not

RUN_PANEL = "Run"
CHOICES: dict[str, type[Choice]] = {"lr_scheduler": Scheduler, "dtype": Dtype, "save_dtype": Dtype}


def _default_text(item: Field) -> str:
    if item.default is MISSING or item.default is None:
        return ""
    value = item.default
    return f" (default {'on' if value else 'off'})" if isinstance(value, bool) else f" (default {value})"


def _setting_parameter(item: Field) -> inspect.Parameter:
    """A keyword parameter whose Annotated type makes Typer build the field's flag."""
    meta = item.metadata
    flag = meta["flag"] or item.name.replace("_", "-")
    panel, text = meta["panel"], meta["help"] + _default_text(item)
    if item.name in SOURCE_FIELDS:
        option = typer.Option(
            f"--{flag}", help=text, rich_help_panel=panel, show_default=False, autocompletion=complete_dataset
        )
        annotation: Any = Annotated[list[str] | None, option]
    else:
        kind = next(arg for arg in (*get_args(FIELD_TYPES[item.name]), FIELD_TYPES[item.name]) if arg is not type(None))
        names = (
            [f"--{flag}/--no-{flag}"] if kind is bool else [f"--{flag}", *([meta["short"]] if meta["short"] else [])]
        )
        closed = choices(CHOICES[item.name], item.name) if item.name in CHOICES else {}
        if item.name == "init_from":
            closed["autocompletion"] = complete_model
        option = typer.Option(*names, help=text, rich_help_panel=panel, show_default=False, **closed)
        annotation = Annotated[kind | None, option]
    return inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def _run_parameters() -> list[inspect.Parameter]:
    def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)

    return [
        option(
            "config_file",
            Annotated[
                Path | None,
                typer.Option(
                    "--config",
                    "-c",
                    help="YAML file of settings (the keys --dry-run prints; 'preset: NAME' allowed).",
                    rich_help_panel=RUN_PANEL,
                    show_default=False,
                ),
            ],
            None,
        ),
        option(
            "preset",
            Annotated[
                str | None,
                typer.Option(
                    "--preset",
                    "-p",
                    help="Start from a preset.",
                    rich_help_panel=RUN_PANEL,
                    **choices(Preset, "preset"),
                ),
            ],
            None,
        ),
        option(
            "assignments",
            Annotated[
                list[str] | None,
                typer.Option(
                    "--set", help="KEY=VALUE for any setting; repeatable; applied last.", rich_help_panel=RUN_PANEL
                ),
            ],
            None,
        ),
        option(
            "resume",
            Annotated[
                bool,
                typer.Option(
                    "--resume",
                    help="Continue the run in --output-dir from its latest checkpoint, exactly: its saved settings, "
                    "overridden only by what is given here.",
                    rich_help_panel=RUN_PANEL,
                ),
            ],
            False,
        ),
        option(
            "stop_after_steps",
            Annotated[
                int | None,
                typer.Option(
                    "--stop-after-steps",
                    min=1,
                    help="Stop after this many steps of this invocation, with a checkpoint (--resume goes on).",
                    rich_help_panel=RUN_PANEL,
                ),
            ],
            None,
        ),
        option(
            "time_limit",
            Annotated[
                float | None,
                typer.Option(
                    "--time-limit",
                    min=0.0,
                    help="Stop after this many minutes, with a checkpoint (--resume goes on).",
                    rich_help_panel=RUN_PANEL,
                ),
            ],
            None,
        ),
        option(
            "dry_run",
            Annotated[
                bool,
                typer.Option(
                    "--dry-run", help="Print the resolved settings as YAML and exit.", rich_help_panel=RUN_PANEL
                ),
            ],
            False,
        ),
        option("quiet", QuietOption, False),
    ]


RUN_OPTIONS = _run_parameters()
SETTING_OPTIONS = [_setting_parameter(item) for item in fields(TrainConfig)]


def train(**options: Any) -> None:
    """Train the projector of a Tiny Audio model; the Whisper encoder and the LM stay frozen.

    Settings start from the reference recipe (AdamW 1e-4, cosine, 500 warm-up steps, batch 14 × 2, 20,000
    steps, SpecAugment), then a --preset, a --config file, flags and --set, in that order; --dry-run prints
    the result, itself a valid --config file. Data mixes Hub datasets (streamed), Parquet folders, JSONL/CSV/TSV
    manifests and media folders; unusable utterances are skipped and counted. Checkpoints in OUTPUT_DIR load
    in transcribe, eval and export, and --resume continues one exactly. Under torchrun every process trains
    on its own shard of the data (DDP); only the first writes.

    [bold]Examples[/]

      tinyaudio train --preset loquacious

      torchrun --nproc-per-node 2 -m tinyaudio_cli train --preset loquacious --grad-accum 1

      tinyaudio train --preset tiny-en --data clips/train.jsonl --dev-data clips/dev.jsonl -o runs/mine

      tinyaudio train --resume -o runs/mine

      tinyaudio train -c train.yaml --set learning_rate=3e-4 --dry-run
    """
    # settings as a config file holds them: plain strings, not the CLI's Choice members
    options = {name: value.value if isinstance(value, Choice) else value for name, value in options.items()}
    run = {parameter.name: options.pop(parameter.name) for parameter in RUN_OPTIONS}
    overrides = {name: value for name, value in options.items() if value is not None}
    main_process = distributed.is_main()  # under torchrun only rank 0 prints
    for assignment in run["assignments"] or []:
        key, value = parse_assignment(assignment)
        overrides[key] = value
    config = resolve_config(run["preset"], run["config_file"], overrides, run["resume"])
    if run["dry_run"]:
        if main_process:
            typer.echo(config.to_yaml(), nl=False)
        raise typer.Exit(0)
    from ..model.loading import check_device
    from ..training.smoke import materialise
    from ..training.trainer import train as run_training

    check_device(config.device)  # after --dry-run, which may prepare a GPU run on a machine without one
    quiet_transformers()
    config = materialise(config, (lambda _: None) if run["quiet"] else console.print)  # --preset smoke's inputs
    result = run_training(
        config,
        resume=run["resume"],
        console=console,
        quiet=run["quiet"],
        stop_after_steps=run["stop_after_steps"],
        time_limit_minutes=run["time_limit"],
    )
    if main_process and not run["quiet"]:
        _summary(result)
    if result.signal is not None:  # stopped by Ctrl-C or SIGTERM: a checkpoint is written, yet the run did not finish
        raise typer.Exit(128 + result.signal)


# Typer reads the command's options from its signature: the run options, then one flag per setting.
train.__signature__ = inspect.Signature([*RUN_OPTIONS, *SETTING_OPTIONS])  # type: ignore[attr-defined]
train.__annotations__ = {parameter.name: parameter.annotation for parameter in [*RUN_OPTIONS, *SETTING_OPTIONS]}


def _summary(result: TrainResult) -> None:
    table = Table(title="tinyaudio train", show_header=False, title_justify="left")
    table.add_row("steps", f"{result.step}" + (" (stopped early: --resume continues)" if result.stopped_early else ""))
    table.add_row("utterances seen", f"{result.samples_seen:,}")
    table.add_row("skipped", ", ".join(f"{reason} {count}" for reason, count in result.skipped.items()))
    if result.train_loss is not None:
        table.add_row("train loss", f"{result.train_loss:.4f}")
    if result.eval:
        if result.eval.get("loss") is not None:
            table.add_row("dev loss", f"{result.eval['loss']:.4f}")
        if result.eval.get("wer") is not None:
            table.add_row("dev WER", f"{100 * result.eval['wer']:.2f}% ({result.eval['samples']} utterances)")
    table.add_row("time", f"{result.seconds / 60:.1f} min · {result.steps_per_second:.2f} steps/s")
    if result.last_checkpoint:
        table.add_row("last checkpoint", str(result.last_checkpoint))
    if result.final_model:
        table.add_row("model", str(result.final_model))
    if result.plot:
        table.add_row("curves", str(result.plot))
    console.print(table)
    if result.final_model:
        console.print(f"[dim]try it: tinyaudio transcribe AUDIO -m {result.final_model}[/]", highlight=False)
