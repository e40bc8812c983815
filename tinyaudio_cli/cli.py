"""The `tinyaudio` command line: parse options, call the library, render results. Nothing else."""

from __future__ import annotations

from typing import Annotated

import typer

from . import __version__

app = typer.Typer(
    name="tinyaudio",
    help="Transcribe, evaluate, train and ship Tiny Audio speech models "
    "(Whisper encoder → MOSA projector → causal LM).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
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


def main() -> None:
    app()
