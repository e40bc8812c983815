"""The `tinyaudio` Typer app: every command registered in one place, and the one error handler.

Command modules define plain functions and import only options.py and style.py; this module imports them to
register them, so nothing imports back into it and the CLI has no import cycle."""

from __future__ import annotations

import inspect
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .. import __version__
from ..errors import TinyAudioError
from .align import align
from .download import download
from .eval import eval_command
from .export import export
from .info import info
from .options import console
from .style import Command, Group
from .train import train
from .transcribe import transcribe

if TYPE_CHECKING:
    import click

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


def report(error: TinyAudioError) -> typer.Exit:
    """One error line (and a hint), and the exit code of the error's kind: 2 for usage, 1 for failed work."""
    console.print(f"[bold red]error:[/] {error.message}", highlight=False, soft_wrap=True)
    if error.hint:
        console.print(f"[dim]hint: {error.hint}[/]", highlight=False, soft_wrap=True)
    return typer.Exit(error.exit_code)


class App(Group):
    """The group that runs every command: known errors become one line and an exit code, never a traceback.
    The subcommand's options are parsed inside `invoke` too, so an option callback's UsageError lands here."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TinyAudioError as error:
            raise report(error) from None
        except KeyboardInterrupt:  # nothing to save, nothing half-written: outputs are written whole or not at all
            console.print("interrupted", highlight=False)
            raise typer.Exit(INTERRUPTED) from None


app = typer.Typer(
    name="tinyaudio",
    cls=App,
    help="Transcribe, evaluate, train and ship Tiny Audio speech models "
    "(Whisper encoder → MOSA projector → causal LM).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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


# The registration order is the help order.
app.command(no_args_is_help=True)(align)
app.command()(download)
app.command("eval")(eval_command)
app.command(no_args_is_help=True)(export)
app.command()(info)
app.command(no_args_is_help=True)(train)
app.command(no_args_is_help=True)(transcribe)

for _command in app.registered_commands:
    _command.cls = Command
    if _command.help is None and _command.callback is not None and _command.callback.__doc__:
        _command.help = unwrap(_command.callback.__doc__)


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
        if argv[index] == "--":  # what follows is file names, whatever they look like
            translated += argv[index:]
            break
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


COMPLETE_VAR = "_TINYAUDIO_COMPLETE"  # set by the shell completion scripts (tinyaudio_cli/completion.py)


def main() -> None:
    instruction = os.environ.get(COMPLETE_VAR, "")
    shell, _, action = instruction.partition("_")
    if shell in ("bash", "zsh", "fish") and action in ("source", "complete"):
        os.environ[COMPLETE_VAR] = f"{action}_{shell}"  # Click's spelling (bash_source) as Typer reads it
    app(args=whisper_style(sys.argv[1:]), prog_name="tinyaudio")
