"""`tinyaudio transcribe`'s driver: find inputs, plan outputs, run the pipeline, show progress and a summary."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from .. import distributed
from ..audio.media import find_media, header_seconds, media_seconds
from ..constants import DEFAULT_ENCODER_CONTEXT, DEFAULT_MODEL
from ..errors import TinyAudioError, UsageError
from ..inference.confidence import DEFAULT_MIN_CONFIDENCE
from ..inference.outputs import Checked, Ownership, check_plans
from ..inference.writers import FORMATS, SubtitleOptions, expand_formats, plan_outputs, write_outputs, write_to_stream
from .options import (
    INPUT_PANEL,
    OUTPUT_PANEL,
    PERF_PANEL,
    BatchSizeOption,
    DeviceOption,
    Dtype,
    DtypeOption,
    EncoderContextOption,
    HighlightWordsOption,
    JsonFlag,
    MaxNewTokensOption,
    MaxWordsPerLineOption,
    MinConfidenceOption,
    ModelOption,
    QuietOption,
    ReferenceModeOption,
    SrtFlag,
    ThreadsOption,
    VttFlag,
    complete_format,
    console,
    quiet_transformers,
)
from .style import clock

STDOUT = "-"
# Formats that describe one recording: one timeline (srt, vtt) or rows without a file column (tsv).
ONE_RECORDING_FORMATS = ("srt", "vtt", "tsv")


def transcribe(
    inputs: Annotated[
        list[Path], typer.Argument(help="Media files or folders (searched recursively).", show_default=False)
    ],
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            help="txt, srt, vtt, json, tsv or all; repeatable.",
            rich_help_panel=OUTPUT_PANEL,
            autocompletion=complete_format,
        ),
    ] = None,
    srt: SrtFlag = False,
    vtt: VttFlag = False,
    json_: JsonFlag = False,
    txt: Annotated[bool, typer.Option("--txt", help="Same as -f txt.", rich_help_panel=OUTPUT_PANEL)] = False,
    output_dir: Annotated[
        str | None,
        typer.Option(
            "--output-dir",
            "-o",
            help="Write under this folder, mirroring the input tree; '-' writes one format to stdout. "
            "Default: next to each input.",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Redo inputs already done, replacing outputs tinyaudio wrote (never a file it did not write).",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = False,
    max_line_width: Annotated[
        int, typer.Option("--max-line-width", min=1, help="Subtitle characters per line.", rich_help_panel=OUTPUT_PANEL)
    ] = 42,
    max_line_count: Annotated[
        int, typer.Option("--max-line-count", min=1, help="Subtitle lines per cue.", rich_help_panel=OUTPUT_PANEL)
    ] = 2,
    max_cue_duration: Annotated[
        float,
        typer.Option(
            "--max-cue-duration",
            min=0.1,
            help="Longest subtitle cue in seconds. Without word times, a segment split across cues shares its "
            "time out in proportion to text length.",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = 7.0,
    word_timestamps: Annotated[
        bool,
        typer.Option(
            "--word-timestamps",
            help="Time every word with the Whisper base's decoder: JSON segments get 'words', subtitle cues are "
            "cut at words and never span a long pause.",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = False,
    highlight_words: HighlightWordsOption = False,
    max_words_per_line: MaxWordsPerLineOption = None,
    min_confidence: MinConfidenceOption = DEFAULT_MIN_CONFIDENCE,
    extensions: Annotated[
        list[str] | None,
        typer.Option(
            "--ext", help="Also pick files with this extension in folders; repeatable.", rich_help_panel=INPUT_PANEL
        ),
    ] = None,
    no_vad: Annotated[
        bool,
        typer.Option(
            "--no-vad",
            help="No voice detection: the whole of each file in consecutive 30 s windows, one segment each.",
            rich_help_panel=INPUT_PANEL,
        ),
    ] = False,
    model: ModelOption = DEFAULT_MODEL,
    reference_mode: ReferenceModeOption = False,
    max_new_tokens: MaxNewTokensOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = Dtype.auto,
    batch_size: BatchSizeOption = None,
    pack: Annotated[
        bool,
        typer.Option(
            "--pack",
            help="Pack a file's speech regions into shared 30 s encoder windows (fewer encoder passes; each region "
            "then hears its neighbours instead of silence, which costs accuracy, much of it for small models).",
            rich_help_panel=PERF_PANEL,
        ),
    ] = False,
    encoder_context: EncoderContextOption = DEFAULT_ENCODER_CONTEXT,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Transcribe media files or whole folders to txt, SRT, VTT, JSON or TSV.

    Any container or codec ffmpeg reads works. Silero VAD finds the speech; silence is never sent to
    the model. Inputs whose outputs tinyaudio already wrote are skipped, so an interrupted run resumes; a
    file tinyaudio did not write (a reference transcript beside its audio) is never replaced.

    [bold]Examples[/]

      tinyaudio transcribe meeting.mp4 --srt

      tinyaudio transcribe recordings/ -f srt -f json -o transcripts/

      tinyaudio transcribe talk.mp3 -o - > talk.txt

      tinyaudio transcribe talk.mp4 --srt --word-timestamps --max-words-per-line 8

      tinyaudio transcribe clip.wav --no-vad --reference-mode -m ./my-checkpoint
    """
    chosen = list(formats or []) + [
        name for name, on in (("srt", srt), ("vtt", vtt), ("json", json_), ("txt", txt)) if on
    ]
    try:
        with exit_on_signals():
            code = run_transcribe(
                inputs=inputs,
                formats=chosen or ["txt"],
                output_dir=output_dir,
                overwrite=overwrite,
                subtitle=SubtitleOptions(
                    max_line_width,
                    max_line_count,
                    max_cue_duration,
                    highlight_words=highlight_words,
                    max_words_per_line=max_words_per_line,
                ),
                word_timestamps=word_timestamps or highlight_words,
                min_confidence=min_confidence,
                extensions=extensions or [],
                vad=not no_vad,
                model_name=model,
                mode="reference" if reference_mode else "trimmed",
                max_new_tokens=max_new_tokens,
                device=device,
                dtype=dtype,
                batch_size=batch_size,
                pack=pack,
                encoder_context=encoder_context,
                threads=threads,
                quiet=quiet,
                console=console,
            )
    except Stopped as stopped:
        console.print(f"[bold red]stopped[/] by {stopped.name}", highlight=False, soft_wrap=True)
        raise typer.Exit(128 + stopped.signum) from None
    raise typer.Exit(code)


class Stopped(BaseException):
    """A termination signal, raised in the main thread so that `finally` blocks (temporary files) run.
    A BaseException, like KeyboardInterrupt, so that no `except Exception` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


@contextlib.contextmanager
def exit_on_signals() -> Iterator[None]:
    """SIGTERM (and SIGHUP) end the run like Ctrl-C does, through the cleanup, instead of killing it on the spot."""
    wanted = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Stopped(signum)

    previous = {signum: signal.signal(signum, stop) for signum in wanted}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def collect_inputs(inputs: list[Path], extensions: list[str]) -> list[tuple[Path, Path | None]]:
    """(media, root) pairs: root is the folder argument a file was found under (None for a file given)."""
    pairs: list[tuple[Path, Path | None]] = []
    for item in inputs:
        root = item if item.is_dir() else None
        pairs.extend((media, root) for media in find_media([item], extensions))
    if not pairs:
        raise TinyAudioError("no media files found", hint="name files or folders holding audio or video")
    return pairs


def run_transcribe(
    *,
    inputs: list[Path],
    formats: list[str],
    output_dir: str | None,
    overwrite: bool,
    subtitle: SubtitleOptions,
    extensions: list[str],
    vad: bool,
    model_name: str,
    mode: str,
    max_new_tokens: int | None,
    device: str,
    dtype: str,
    batch_size: int | None,
    quiet: bool,
    console: Console,
    pack: bool = False,
    word_timestamps: bool = False,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    encoder_context: str = DEFAULT_ENCODER_CONTEXT,
    threads: int | None = None,
) -> int:
    """Transcribe, write, summarise; the exit code. Under torchrun every rank plans the same outputs, takes
    its share of the files still to do (balanced by file size, a cheap stand-in for duration that needs no
    probing), writes its own outputs; rank 0 prints the merged summary and every rank returns its exit code."""
    formats = expand_formats(formats)
    if not formats:
        raise UsageError(f"-f names no output format: choose from {', '.join(FORMATS)} or all")
    subtitle_options = subtitle
    to_stdout = output_dir == STDOUT
    if to_stdout and len(formats) != 1:
        raise UsageError("-o - writes one format to stdout", hint="choose exactly one --format")
    pairs = collect_inputs(inputs, extensions)
    if to_stdout and formats[0] in ONE_RECORDING_FORMATS and len({m.resolve() for m, _ in pairs}) > 1:
        # Concatenated, their timelines would restart and WebVTT would need cue times that never go back.
        raise UsageError(
            f"-o - writes {formats[0]} for one input at a time, got {len(pairs)}: use -o DIR, or txt or json to stdout"
        )
    plans = {} if to_stdout else plan_outputs(pairs, formats, Path(output_dir) if output_dir else None)
    rank, ranks, _ = distributed.world()
    device = distributed.init(device)
    ownership = Ownership()
    try:
        if to_stdout:
            checked = Checked(todo=[media for media, _ in pairs])
        else:
            # rank 0 alone looks at the disk (and clears stale temps) before any rank writes; every rank gets
            # its verdict, or its error, so that all stop together
            verdict = _check(plans, output_dir, overwrite, ownership) if rank == 0 else None
            checked = _raise_if_error(distributed.broadcast(verdict))
        skipped, todo = checked.skipped, checked.todo
        if rank == 0 and not quiet:
            for path, reason in checked.refused:
                _print_failed(console, path, reason)
        mine = distributed.shard_by_weight(todo, [header_seconds(m) for m in todo], rank, ranks) if ranks > 1 else todo
        settings = {
            "model_name": model_name,
            "mode": mode,
            "max_new_tokens": max_new_tokens,
            "vad": vad,
            "device": device,
            "dtype": dtype,
            "batch_size": batch_size,
            "pack": pack,
            "word_timestamps": word_timestamps,
            "min_confidence": min_confidence,
            "encoder_context": encoder_context,
            "threads": threads,
        }
        quiet_here = quiet or rank != 0  # progress and per-file lines from rank 0 only
        done, failed, streamed = _transcribe_share(
            mine, formats, plans, subtitle_options, to_stdout, ranks, settings, quiet_here, console, ownership
        )
        if ranks > 1:
            shares = distributed.gather((done, failed, streamed))
            done = sum(share[0] for share in shares)
            failed_at = {path: reason for share in shares for path, reason in share[1]}
            failed = [(path, failed_at[path]) for path in todo if path in failed_at]
            if rank == 0 and to_stdout:  # one stream, in input order, as one process writes it
                texts = {path: text for share in shares for path, text in share[2].items()}
                _to_stdout(lambda stream: stream.write("".join(texts[path] for path in todo if path in texts)))
        failed = checked.refused + failed
    finally:
        distributed.close()
    if rank == 0 and not quiet:
        _summary(console, done, skipped, failed)
    elif rank == 0 and failed:
        for path, reason in failed:
            _print_failed(console, path, reason)
    return 1 if failed else 0


def _check(
    plans: dict[Path, dict[str, Path]], output_dir: str | None, overwrite: bool, ownership: Ownership
) -> Checked | tuple[str, str | None, int]:
    """check_plans, with an error returned as (message, hint, exit code) so it can be sent to every rank."""
    try:
        return check_plans(plans, Path(output_dir) if output_dir else None, overwrite, ownership)
    except TinyAudioError as error:
        return error.message, error.hint, error.exit_code


def _raise_if_error(verdict: Checked | tuple[str, str | None, int]) -> Checked:
    if isinstance(verdict, Checked):
        return verdict
    message, hint, exit_code = verdict
    raise (UsageError if exit_code == UsageError.exit_code else TinyAudioError)(message, hint=hint)


def _print_failed(console: Console, path: Path, reason: str) -> None:
    # soft_wrap: one line per file whatever the width rich assumes (80 columns for a pipe or a log), to grep
    console.print(f"[red]failed[/] {escape(str(path))}: {escape(reason)}", highlight=False, soft_wrap=True)


def _to_stdout(write: Callable[[TextIO], object]) -> None:
    """Write to stdout; a failure to (a full disk, a closed pipe) ends the run with one line."""
    try:
        write(sys.stdout)
        sys.stdout.flush()
    except OSError as error:
        # What is still buffered would fail again when Python exits and print a traceback of its own.
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        raise TinyAudioError(f"cannot write to standard output: {error.strerror or error}") from None


def _transcribe_share(
    todo: list[Path],
    formats: list[str],
    plans: dict[Path, dict[str, Path]],
    subtitle_options: SubtitleOptions,
    to_stdout: bool,
    ranks: int,
    settings: dict,
    quiet: bool,
    console: Console,
    ownership: Ownership,
) -> tuple[int, list[tuple[Path, str]], dict[Path, str]]:
    """This process's files: (files done, (file, reason) for each failure, text held back for stdout).
    With several ranks, stdout text is held back so that rank 0 can write all of it in input order.
    `settings`: model_name, mode, max_new_tokens, vad, device, dtype, batch_size, pack, word_timestamps,
    encoder_context, threads."""
    failed: list[tuple[Path, str]] = []
    streamed: dict[Path, str] = {}
    done, audio_seconds = 0, 0.0
    if not todo:
        return done, failed, streamed
    from ..audio.vad import VadOptions
    from ..inference.transcribe import TranscribeOptions, transcribe_files
    from ..model import load_model
    from ..model.context import context_padding
    from ..model.loading import set_threads

    quiet_transformers()
    set_threads(settings["threads"])

    with _progress(console, quiet) as progress:
        # the bar counts seconds of audio, so a long file moves it and the ETA; lengths are read before the model
        # loads (headers, or ffmpeg's container duration for the first files; a size estimate past that)
        task = progress.add_task(f"loading {settings['model_name']}", total=None, status="")
        expected = {path: _expected_seconds(path, index) for index, path in enumerate(todo)}
        reached: dict[Path, float] = {}
        model = load_model(settings["model_name"], device=settings["device"], dtype=settings["dtype"])
        model.context_padding = context_padding(settings["encoder_context"])
        options = TranscribeOptions(
            mode=settings["mode"],
            batch_size=settings["batch_size"],
            max_new_tokens=settings["max_new_tokens"],
            vad=VadOptions() if settings["vad"] else None,
            pack=settings["pack"],
            word_timestamps=settings["word_timestamps"],
            min_confidence=settings["min_confidence"],
        )
        started = time.perf_counter()

        def show() -> None:
            elapsed = time.perf_counter() - started
            heard = sum(reached.values())
            speed = f" · RTFx {heard / elapsed:.1f}" if elapsed > 0 and heard else ""
            status = f"{len(reached) - len(partial)}/{len(todo)} files · {clock(heard)} of audio{speed}"
            progress.update(task, completed=heard, total=max(sum(expected.values()), heard), status=status)

        partial: set[Path] = set()  # files the model is still inside

        def moved(path: Path, seconds: float) -> None:
            reached[path] = min(max(reached.get(path, 0.0), seconds), expected[path])
            partial.add(path)
            show()

        progress.update(task, description="transcribing")
        show()
        for result in transcribe_files(model, todo, options, on_progress=moved):
            partial.discard(result.path)
            expected[result.path] = reached[result.path] = (
                result.transcript.duration if result.transcript is not None else expected[result.path]
            )
            reason = result.error or ("unknown error" if result.transcript is None else None)
            if result.transcript is not None and reason is None:
                transcript = result.transcript
                if to_stdout and ranks > 1:
                    buffer = io.StringIO()
                    write_to_stream(transcript, formats[0], buffer, subtitle_options)
                    streamed[result.path] = buffer.getvalue()
                elif to_stdout:  # a stdout that takes nothing more ends the run
                    _to_stdout(functools.partial(write_to_stream, transcript, formats[0], options=subtitle_options))
                else:
                    try:
                        write_outputs(transcript, plans[result.path], subtitle_options, ownership)
                    except TinyAudioError as error:
                        reason = error.message
            if reason is None:
                done += 1
                audio_seconds += result.transcript.duration if result.transcript else 0.0
            else:
                failed.append((result.path, reason))
                if not quiet:
                    _print_failed(progress.console, result.path, reason)
            show()
    return done, failed, streamed


MAX_PROBED_FILES = 64  # ffmpeg reads a container's duration in ~30 ms; past this many files, estimate from size


def _expected_seconds(path: Path, index: int) -> float:
    return media_seconds(path) if index < MAX_PROBED_FILES else header_seconds(path)


def _progress(console: Console, quiet: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )


def _summary(console: Console, done: int, skipped: list[Path], failed: list[tuple[Path, str]]) -> None:
    table = Table(title="tinyaudio transcribe", show_header=False, title_justify="left")
    table.add_row("done", str(done))
    table.add_row("skipped (outputs exist; --overwrite to redo)", str(len(skipped)))
    table.add_row("failed", str(len(failed)))
    console.print(table)
    for path, reason in failed:
        console.print(f"  [red]✗[/] {escape(str(path))}: {escape(reason)}", highlight=False, soft_wrap=True)
