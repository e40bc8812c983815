"""`tinyaudio align`: time the words of a transcript the user already has, for one file or a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..constants import DEFAULT_MODEL
from ..errors import TinyAudioError, UsageError
from .options import (
    INPUT_PANEL,
    OUTPUT_PANEL,
    DeviceOption,
    Dtype,
    DtypeOption,
    HighlightWordsOption,
    JsonFlag,
    MaxWordsPerLineOption,
    ModelOption,
    QuietOption,
    SrtFlag,
    VttFlag,
    console,
    names,
)

ALIGN_FORMATS = ("json", "srt", "vtt", "tsv")  # not txt: beside its media, clip.txt is the text being aligned


def align(
    media: Annotated[Path, typer.Argument(help="A media file, or a folder of media files with same-named .txt.")],
    text: Annotated[
        Path | None,
        typer.Argument(
            help="The transcript of MEDIA: plain text, or an SRT/VTT file (its cue text).", show_default=False
        ),
    ] = None,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            help="json, srt, vtt or tsv; repeatable (default json).",
            rich_help_panel=OUTPUT_PANEL,
            autocompletion=names(lambda: ALIGN_FORMATS),
        ),
    ] = None,
    srt: SrtFlag = False,
    vtt: VttFlag = False,
    json_: JsonFlag = False,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir",
            "-o",
            help="Write under this folder (default: next to each input).",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Redo inputs whose outputs tinyaudio wrote.", rich_help_panel=OUTPUT_PANEL),
    ] = False,
    highlight_words: HighlightWordsOption = False,
    max_words_per_line: MaxWordsPerLineOption = None,
    no_vad: Annotated[
        bool,
        typer.Option("--no-vad", help="No voice detection: consecutive 30 s windows.", rich_help_panel=INPUT_PANEL),
    ] = False,
    model: ModelOption = DEFAULT_MODEL,
    device: DeviceOption = "auto",
    dtype: DtypeOption = Dtype.auto,
    quiet: QuietOption = False,
) -> None:
    """Time every word of a transcript you already have (a script, lyrics, a data set's text).

    The checkpoint's Whisper base aligns: the voice detector finds the speech, the text is spread over it, and
    each word gets its start, end and probability. A text that does not match its audio is aligned anyway and
    flagged with a warning (low alignment score).

    [bold]Examples[/]

      tinyaudio align talk.mp4 talk.txt --srt

      tinyaudio align recordings/ -f json -f vtt -o aligned/ -m tiny-en
    """
    chosen = list(formats or []) + [name for name, on in (("srt", srt), ("vtt", vtt), ("json", json_)) if on]
    code = run_align(
        media, text, chosen or ["json"], output_dir, overwrite, highlight_words, max_words_per_line, not no_vad,
        model, device, dtype, quiet,
    )  # fmt: skip
    raise typer.Exit(code)


def _pairs(media: Path, text: Path | None) -> list[tuple[Path, Path, Path | None]]:
    """(media, its text, the folder argument it was found under) for a file and its text, or a folder."""
    from ..audio.media import find_media

    if media.is_dir():
        if text is not None:
            raise UsageError("a folder takes no TEXT: each media file is aligned to the same-named .txt beside it")
        found = [(m, m.with_suffix(".txt"), media) for m in find_media([media])]
        if not found:
            raise TinyAudioError(f"no media files in {media}")
        return found
    if not media.exists():
        raise UsageError(f"{media} does not exist")
    return [(media, text if text is not None else media.with_suffix(".txt"), None)]


def run_align(
    media: Path,
    text: Path | None,
    formats: list[str],
    output_dir: Path | None,
    overwrite: bool,
    highlight_words: bool,
    max_words_per_line: int | None,
    vad: bool,
    model_name: str,
    device: str,
    dtype: str,
    quiet: bool,
) -> int:
    from ..inference.outputs import Ownership, check_plans
    from ..inference.writers import SubtitleOptions, expand_formats, plan_outputs, write_outputs
    from .options import quiet_transformers

    formats = expand_formats(formats)
    unknown = [f for f in formats if f not in ALIGN_FORMATS]
    if unknown or not formats:
        raise UsageError(f"align writes {', '.join(ALIGN_FORMATS)}; not {', '.join(unknown) or 'nothing'}")
    triples = _pairs(media, text)
    texts = {m: t for m, t, _ in triples}
    plans = plan_outputs([(m, root) for m, _, root in triples], formats, output_dir)
    ownership = Ownership()
    checked = check_plans(plans, output_dir, overwrite, ownership)
    failed = list(checked.refused)
    todo = []
    for path in checked.todo:  # a missing or empty text fails its file before any model work
        if not texts[path].is_file():
            failed.append((path, f"no text {texts[path].name} to align"))
        else:
            todo.append(path)
    done = 0
    if todo:
        from ..audio.vad import VadOptions
        from ..inference.align import AlignOptions, align_file, read_text
        from ..model import load_model

        quiet_transformers()
        if not quiet:
            console.print(f"loading {escape(model_name)} …", highlight=False, soft_wrap=True)
        model = load_model(model_name, device=device, dtype=dtype)
        options = AlignOptions(vad=VadOptions() if vad else None)
        subtitles = SubtitleOptions(highlight_words=highlight_words, max_words_per_line=max_words_per_line)
        for path in todo:
            try:
                result = align_file(model, path, read_text(texts[path]), options)
            except TinyAudioError as error:
                failed.append((path, error.message))
                continue
            if result.error or result.transcript is None:
                failed.append((path, result.error or "nothing to align"))
                continue
            write_outputs(result.transcript, plans[path], subtitles, ownership)
            done += 1
            if result.low_score:
                console.print(
                    f"[yellow]warning[/] {escape(str(path))}: low alignment score {result.score:.2f}: "
                    "does the text belong to this audio?",
                    highlight=False,
                    soft_wrap=True,
                )
            elif not quiet:
                console.print(
                    f"aligned {escape(str(path))} (score {result.score:.2f})", highlight=False, soft_wrap=True
                )
    for path, reason in failed:
        console.print(f"[red]failed[/] {escape(str(path))}: {escape(reason)}", highlight=False, soft_wrap=True)
    if not quiet:
        table = Table(title="tinyaudio align", show_header=False, title_justify="left")
        table.add_row("done", str(done))
        table.add_row("skipped (outputs exist; --overwrite to redo)", str(len(checked.skipped)))
        table.add_row("failed", str(len(failed)))
        console.print(table)
    return 1 if failed else 0
