"""The `tinyaudio` command line: parse options, call the library, render results. Nothing else."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console

from . import __version__
from .cli_style import Command, Group
from .defaults import MODEL_ENV
from .errors import TinyAudioError, UsageError

app = typer.Typer(
    name="tinyaudio",
    cls=Group,
    help="Transcribe, evaluate, train and ship Tiny Audio speech models "
    "(Whisper encoder → MOSA projector → causal LM).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console(stderr=True)

# -- options shared by several commands ----------------------------------------------------------

MODEL_PANEL, INPUT_PANEL, OUTPUT_PANEL, PERF_PANEL = "Model", "Input", "Output", "Performance"
ModelOption = Annotated[
    str,
    typer.Option(
        "--model", "-m", envvar=MODEL_ENV, help="Checkpoint: Hub id or local folder.", rich_help_panel=MODEL_PANEL
    ),
]


def _checked(check_name: str) -> Callable[[typer.Context, str], str]:
    """A callback that runs `model.loading.<check_name>` while the command line is parsed, so a device this
    machine lacks or an unknown dtype is a usage error before any file is read or model loaded (but not while
    the shell completes a command line). model.loading is imported only then: it imports torch."""

    def callback(ctx: typer.Context, value: str) -> str:
        if ctx.resilient_parsing:
            return value
        from .model import loading

        try:
            getattr(loading, check_name)(value)
        except UsageError as error:
            raise fail(error) from None
        return value

    return callback


_checked_device, _checked_dtype = _checked("check_device"), _checked("check_dtype")


DeviceOption = Annotated[
    str,
    typer.Option(
        "--device", help="auto, cpu, cuda, cuda:N or mps.", callback=_checked_device, rich_help_panel=PERF_PANEL
    ),
]
DtypeOption = Annotated[
    str,
    typer.Option(
        "--dtype",
        help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16.",
        callback=_checked_dtype,
        rich_help_panel=PERF_PANEL,
    ),
]
BatchSizeOption = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        min=1,
        help="Windows per batch (default: 8 on a CPU; on a GPU, as many as its free memory holds, up to 256).",
        rich_help_panel=PERF_PANEL,
    ),
]
MaxNewTokensOption = Annotated[
    int | None,
    typer.Option(
        "--max-new-tokens",
        min=1,
        help="Token limit per segment (default: a budget from the segment's length, at most the model's).",
        rich_help_panel=MODEL_PANEL,
    ),
]
ReferenceModeOption = Annotated[
    bool,
    typer.Option(
        "--reference-mode",
        help="Attend to the whole 30 s window, padding included, as the reference implementation does.",
        rich_help_panel=MODEL_PANEL,
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary, errors only.")]


def fail(error: TinyAudioError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {error.message}", highlight=False, soft_wrap=True)
    if error.hint:
        console.print(f"[dim]hint: {error.hint}[/]", highlight=False, soft_wrap=True)
    return typer.Exit(error.exit_code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tinyaudio {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """tinyaudio: LLM-based speech recognition from the command line."""


def unwrap(doc: str) -> str:
    """Join a docstring's hard-wrapped lines: rich help would otherwise keep every line break.
    Indented lines (the examples) stay as they are."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(p if p.startswith(" ") else " ".join(p.split("\n")) for p in paragraphs)


# openai-whisper's option names, so `whisper`-style command lines run unchanged where the meaning is the same
WHISPER_OPTIONS = {
    "--output_format": "--format",
    "--output_dir": "--output-dir",
    "--max_line_width": "--max-line-width",
    "--max_line_count": "--max-line-count",
    "--max_words_per_line": "--max-words-per-line",
}
WHISPER_FLAGS = {"--word_timestamps": "--word-timestamps", "--highlight_words": "--highlight-words"}  # take True/False


def whisper_style(argv: list[str]) -> list[str]:
    """openai-whisper's spellings as ours: `--output_dir DIR` is `--output-dir DIR`, `--word_timestamps True` is
    `--word-timestamps` (False drops it). Hidden: help shows one spelling of each option."""
    translated: list[str] = []
    index = 0
    while index < len(argv):
        name, equals, value = argv[index].partition("=")
        if name in WHISPER_OPTIONS:
            translated.append(WHISPER_OPTIONS[name] + equals + value)
        elif name in WHISPER_FLAGS:
            if not equals and index + 1 < len(argv) and argv[index + 1].lower() in ("true", "false"):
                index += 1
                value = argv[index]
            if not equals and not value:
                value = "true"
            if value.lower() == "true":
                translated.append(WHISPER_FLAGS[name])
            elif value.lower() != "false":
                translated.append(argv[index])  # let the parser say what is wrong with it
        else:
            translated.append(argv[index])
        index += 1
    return translated


def main() -> None:
    app(args=whisper_style(sys.argv[1:]), prog_name="tinyaudio")


# Each command lives in its own module and registers itself on `app`; the import order is the help order.
from . import cli_align, cli_download, cli_eval, cli_export, cli_info, cli_train, cli_transcribe  # noqa: E402, F401

for _command in app.registered_commands:
    if _command.cls in (None, typer.core.TyperCommand):
        _command.cls = Command
    if _command.help is None and _command.callback is not None and _command.callback.__doc__:
        _command.help = unwrap(_command.callback.__doc__)
