"""`tinyaudio export`: a checkpoint → a Hub-ready folder (weights, card, pipeline code), optionally pushed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.filesize import decimal
from rich.table import Table

from .options import (
    HUB_PANEL,
    QuietOption,
    SaveDtype,
    SaveDtypeOption,
    TokenOption,
    complete_model,
    console,
    quiet_transformers,
)

CARD_PANEL = "Model card"


def export(
    checkpoint: Annotated[
        str,
        typer.Argument(
            help="Training checkpoint, or any model tinyaudio loads (folder or Hub id).", autocompletion=complete_model
        ),
    ],
    out_dir: Annotated[Path, typer.Argument(help="Folder to write: new or empty (see --overwrite).")],
    dtype: SaveDtypeOption = SaveDtype.float32,
    eval_summaries: Annotated[
        list[Path] | None,
        typer.Option(
            "--eval-summary",
            help="summary.json of a `tinyaudio eval` run, for the card's results; repeatable.",
            rich_help_panel=CARD_PANEL,
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Write into a folder that holds files (an earlier export): the files an export writes are "
            "replaced, any others are kept.",
        ),
    ] = False,
    license: Annotated[
        str | None,
        typer.Option(
            "--license",
            help="License id for the card (default: the source card's, else mit).",
            rich_help_panel=CARD_PANEL,
        ),
    ] = None,
    push_to_hub: Annotated[
        str | None,
        typer.Option(
            "--push-to-hub",
            metavar="REPO_ID",
            help="Then upload the folder to this Hub repo, created if needed.",
            rich_help_panel=HUB_PANEL,
        ),
    ] = None,
    private: Annotated[
        bool, typer.Option("--private", help="Create the repo as private.", rich_help_panel=HUB_PANEL)
    ] = False,
    token: TokenOption = None,
    quiet: QuietOption = False,
) -> None:
    """Turn a checkpoint into a self-contained folder for the Hugging Face Hub, and push it if asked.

    The folder holds the published layout (config, projector weights, tokenizer and chat template, feature
    extractor and generation settings), a model card with base models, datasets and eval results, and the code
    that makes transformers' standard snippet work on it: pipeline("automatic-speech-recognition", model=...,
    trust_remote_code=True) gives the same text as `tinyaudio transcribe --no-vad`. The encoder and the LM are
    not copied: the card names them and loading fetches them from their own repos.

    [bold]Examples[/]

      tinyaudio export runs/exp1/checkpoint-5000 exported/

      tinyaudio export runs/exp1/checkpoint-5000 exported/ --dtype bfloat16 --eval-summary eval/summary.json

      tinyaudio export ./my-checkpoint exported/ --push-to-hub my-org/my-asr --private
    """
    from huggingface_hub.utils import disable_progress_bars

    from ..hub.transfer import export_model
    from ..hub.transfer import push_to_hub as push

    quiet_transformers()
    if quiet:
        disable_progress_bars()
    result = export_model(
        checkpoint, out_dir, dtype, eval_summaries or [], license, repo_id=push_to_hub, overwrite=overwrite
    )
    if push_to_hub:
        if not quiet:
            console.print(f"uploading {result.folder} to {push_to_hub} …", highlight=False)
        result.url = push(result.folder, push_to_hub, private, token)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if quiet:
        return
    table = Table("file", "size", title=f"tinyaudio export → {result.folder}", title_justify="left")
    for name, size in result.files:
        table.add_row(name, decimal(size))
    console.print(table)
    if result.url:
        console.print(f"pushed to {result.url}", highlight=False)
