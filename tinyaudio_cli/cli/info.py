"""`tinyaudio info`: one screen to paste into a bug report."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def info(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show versions, GPUs, the ffmpeg in use, whether every dependency imports, and the models on this machine.

    Paste the output into a bug report.

    [bold]Examples[/]

      tinyaudio info

      tinyaudio info --json > info.json
    """
    from ..info import collect

    report = collect()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(show_header=False, title="tinyaudio info", title_justify="left")
    table.add_row("tinyaudio", report["tinyaudio"])
    table.add_row("python", f"{report['python']} ({report['platform']})")
    for name, version in report["packages"].items():
        table.add_row(name, version or "[red]not installed[/]")
    cuda = report["cuda"]
    gpus = ", ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in cuda["gpus"]) or "none"
    table.add_row("CUDA", f"{cuda['version'] or 'no'} · GPUs: {gpus}")
    ffmpeg = report["ffmpeg"]
    table.add_row(
        "ffmpeg", f"{ffmpeg['version']} at {ffmpeg['path']}" if ffmpeg["path"] else f"[red]{ffmpeg['error']}[/]"
    )
    table.add_row("default model", report["default_model"])
    for base in report["bases_folders"]:
        state = "" if base["exists"] else f" [red]({base.get('error') or 'no such folder'})[/]"
        table.add_row("TINYAUDIO_BASES", f"{base['id']} = {base['path']}{state}")
    broken = [d for d in report["dependencies"] if d["error"]]
    table.add_row(
        "dependencies",
        f"all {len(report['dependencies'])} import"
        if not broken
        else "[red]" + "; ".join(f"{d['name']}: {d['error']}" for d in broken) + "[/]",
    )
    for model in report["shipped_models"]:
        bases = ", ".join(f"{b['id']} ({b['from']})" for b in model["bases"])
        table.add_row(f"shipped: {model['name']}", f"{model['path']} · bases: {bases}")
    cache = report["hf_cache"]
    table.add_row("HF cache", cache["cache"])
    models = ", ".join(f"{m['id']} ({m['size_mb']} MB)" for m in cache["models"]) or "none in the cache"
    table.add_row("tinyaudio models", models)
    bases = ", ".join(
        f"{b['id']} ({b['size_mb']} MB)" if b["cached"] else f"{b['id']} (not cached)" for b in cache["bases"]
    )
    table.add_row("bases", bases or "-")
    Console().print(table)
