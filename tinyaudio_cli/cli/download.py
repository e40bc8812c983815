"""`tinyaudio download`: fetch a model (checkpoint and bases) or an eval split for offline use, and say what came."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.filesize import decimal
from rich.table import Table

from ..constants import BASES_ENV, DEFAULT_MODEL, MODEL_ENV
from ..errors import TinyAudioError
from .options import HUB_PANEL, QuietOption, TokenOption, complete_dataset, complete_model, console, deprecated

if TYPE_CHECKING:
    from ..data.naming import DataSource
    from ..hub.transfer import DownloadPlan

FILES_PANEL, DATASET_PANEL = "Files", "Dataset"


def download(
    model: Annotated[
        str | None,
        typer.Argument(
            help=f"Checkpoint: Hub id, or a shipped (tiny-en) or local checkpoint whose bases to fetch. "
            f"\\[default: {DEFAULT_MODEL}]",
            envvar=MODEL_ENV,
            show_default=False,
            autocompletion=complete_model,
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            help="Fetch a data set instead: a registry name (e.g. loquacious) or a Hub id, with options after "
            "commas: config=, split= (default: the registry's), as eval and train name data sets.",
            metavar="NAME[,KEY=VALUE...]",
            rich_help_panel=DATASET_PANEL,
            autocompletion=complete_dataset,
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option("--split", help="Split of --data (default: the registry's).", rich_help_panel=DATASET_PANEL),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option("--config", help="Config of --data (default: the registry's).", rich_help_panel=DATASET_PANEL),
    ] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", hidden=True, help="Deprecated: --data.")] = None,
    revision: Annotated[
        str | None,
        typer.Option(
            "--revision", help="Branch, tag or commit of the checkpoint (or dataset).", rich_help_panel=HUB_PANEL
        ),
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(
            "--include", help="Only files matching this glob, in every repo; repeatable.", rich_help_panel=FILES_PANEL
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Skip files matching this glob; repeatable.", rich_help_panel=FILES_PANEL),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir", help="Hub cache to fill (default: HF_HUB_CACHE, under HF_HOME).", rich_help_panel=FILES_PANEL
        ),
    ] = None,
    local_dir: Annotated[
        Path | None,
        typer.Option(
            "--local-dir",
            help="Plain folder instead of the cache: the checkpoint there, each base under bases/.",
            rich_help_panel=FILES_PANEL,
        ),
    ] = None,
    token: TokenOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the files and their total size; fetch nothing.")
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Fetch a model, or one split of an eval set, so that transcribe and eval work offline (HF_HUB_OFFLINE=1).

    For a model: the checkpoint repo and, of its base repos, what tinyaudio reads: the Whisper weights, configs,
    feature extractor and normalizer; the LM's weights, config and tokenizer. Files already there are not fetched
    again, and an interrupted download picks up where it stopped. On success the checkpoint's folder is printed.

    [bold]Examples[/]

      tinyaudio download

      tinyaudio download mazesmazes/tiny-audio --dry-run

      tinyaudio download tiny-en

      tinyaudio download my-org/my-asr --revision v2 --token hf_xxx

      tinyaudio download --data loquacious,split=test,config=medium
    """
    from huggingface_hub.utils import disable_progress_bars

    from ..hub.transfer import download_dataset, download_model

    if dataset is not None:
        deprecated("--dataset", "--data NAME")
        if data is not None:
            raise TinyAudioError("--data and --dataset both name a data set", hint="give --data only")
        data = dataset
    if data and model:
        raise TinyAudioError("name a model or --data, not both")
    if quiet:
        disable_progress_bars()
    options = dict(
        revision=revision,
        include=include or [],
        exclude=exclude or [],
        cache_dir=cache_dir,
        local_dir=local_dir,
        token=token,
        dry_run=dry_run,
    )
    if data:
        source = _data_set(data, split, config)
        plan = download_dataset(source.path, split=source.split, config=source.config, **options)
    else:
        plan = download_model(model or DEFAULT_MODEL, **options)
    stdout = Console(highlight=False, soft_wrap=True)
    if dry_run:
        show_listing(plan, stdout)
        return
    if not quiet:
        show_summary(plan)
    if plan.checkpoint_dir is not None:
        stdout.print(str(plan.checkpoint_dir))
    elif plan.repos and plan.repos[0].location is not None:
        stdout.print(str(plan.repos[0].location))


def _data_set(data: str, split: str | None, config: str | None) -> DataSource:
    """--data as eval and train read it; only a set on the Hub has something to download."""
    from ..data.naming import DataSource

    spelled = {name: f"--{name}" for name, value in (("split", split), ("config", config)) if value is not None}
    source = DataSource.parse(data).merged(spelled, split=split, config=config)
    ignored = [f"{name}=" for name in ("audio_column", "text_column", "id_column", "data_dir") if getattr(source, name)]
    if source.weight != 1.0:
        ignored.append("weight=")
    if ignored:
        raise TinyAudioError(f"{', '.join(ignored)} mean nothing to download", hint="name config= and split= only")
    return source


def show_listing(plan: DownloadPlan, out: Console) -> None:
    """--dry-run: each repository, its files with their sizes and whether they are here already, the totals."""
    table = Table("file", "size", "status", title="tinyaudio download --dry-run", title_justify="left")
    for repo in plan.repos:
        table.add_row(f"[bold]{repo.repo_id}[/] ({repo.role}, {repo.commit[:8]})", decimal(repo.size), "")
        for file in repo.files:
            table.add_row(f"  {file.path}", decimal(file.size), "cached" if file.cached else "to fetch")
    out.print(table)
    out.print(f"{plan.file_count} files, {decimal(plan.size)} in total, {decimal(plan.fetch_size)} to fetch")
    show_skipped(plan, out)


def show_summary(plan: DownloadPlan) -> None:
    table = Table("repository", "role", "commit", "files", "size", title="tinyaudio download", title_justify="left")
    for repo in plan.repos:
        table.add_row(repo.repo_id, repo.role, repo.commit[:8], str(len(repo.files)), decimal(repo.size))
    console.print(table)
    show_skipped(plan, console)
    if plan.bases_env:
        console.print(f"[dim]to load from this folder: export {BASES_ENV}={plan.bases_env}[/]", highlight=False)


def show_skipped(plan: DownloadPlan, out: Console) -> None:
    for name, why in plan.skipped.items():
        out.print(f"[dim]{name}: {why}, nothing to fetch[/]", highlight=False)
