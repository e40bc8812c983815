"""`tinyaudio eval`: pick a sample source, run the evaluation library, show progress and the results."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .. import distributed
from ..constants import DEFAULT_ENCODER_CONTEXT, DEFAULT_MODEL, MODEL_ENV
from ..errors import TinyAudioError
from ..inference.confidence import DEFAULT_MIN_CONFIDENCE
from .options import (
    INPUT_PANEL,
    MODEL_PANEL,
    OUTPUT_PANEL,
    PERF_PANEL,
    BatchSizeOption,
    DeviceOption,
    Dtype,
    DtypeOption,
    EncoderContextOption,
    EvalMinConfidenceOption,
    MaxNewTokensOption,
    QuietOption,
    ReferenceModeOption,
    ThreadsOption,
    complete_dataset,
    complete_model,
    console,
    deprecated,
    quiet_transformers,
)
from .style import clock

if TYPE_CHECKING:
    from ..evaluation.runner import EvalProgress, EvalReport, EvalSource

DEFAULT_DATASET = "loquacious"
FAILED_SHOWN = 20  # the rest are in summary.json
results_console = Console()  # the results are the command's output: stdout, so they can be piped


def eval_command(
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            help=f"The samples: a registered set (loquacious, librispeech-clean, tedlium, ami, ...), a Hub id, a "
            f"local folder (Parquet files laid out like a Hub dataset, or media files with same-named .txt "
            f"references), a Parquet file, or a JSONL/CSV/TSV manifest with 'audio' (relative to it), 'text' and "
            f"optional 'id' fields. Options after commas: config=, split=, audio_column=, text_column=, "
            f"id_column=, data_dir= (a local copy of a registered set). Default: {DEFAULT_DATASET}.",
            metavar="NAME[,KEY=VALUE...]",
            rich_help_panel=INPUT_PANEL,
            show_default=False,
            autocompletion=complete_dataset,
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option("--config", help="Dataset config (default: the set's own).", rich_help_panel=INPUT_PANEL),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option("--split", help="Dataset split (default: the set's test split).", rich_help_panel=INPUT_PANEL),
    ] = None,
    audio_column: Annotated[
        str | None, typer.Option("--audio-column", help="Column holding the audio.", rich_help_panel=INPUT_PANEL)
    ] = None,
    text_column: Annotated[
        str | None,
        typer.Option("--text-column", help="Column holding the reference text.", rich_help_panel=INPUT_PANEL),
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id-column", help="Column holding the sample id.", rich_help_panel=INPUT_PANEL)
    ] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", hidden=True, help="Deprecated: --data.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", hidden=True, help="Deprecated: --data NAME,data_dir=PATH.")
    ] = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", hidden=True, help="Deprecated: --data.")] = None,
    folder: Annotated[Path | None, typer.Option("--folder", hidden=True, help="Deprecated: --data.")] = None,
    max_samples: Annotated[
        int | None,
        typer.Option(
            "--max-samples", "-n", min=0, help="Evaluate the first N samples only.", rich_help_panel=INPUT_PANEL
        ),
    ] = None,
    shuffle: Annotated[
        bool,
        typer.Option(
            "--shuffle",
            help="Shuffle before taking --max-samples (repeatable with --seed).",
            rich_help_panel=INPUT_PANEL,
        ),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for --shuffle.", rich_help_panel=INPUT_PANEL)] = 0,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            envvar=MODEL_ENV,
            help=f"Checkpoint: Hub id or local folder; repeat to compare models on the same samples. "
            f"Default: {DEFAULT_MODEL}.",
            rich_help_panel=MODEL_PANEL,
            show_default=False,
            autocompletion=complete_model,
        ),
    ] = None,
    reference_mode: ReferenceModeOption = False,
    max_new_tokens: MaxNewTokensOption = None,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir",
            "-o",
            help="Write summary.json, predictions.jsonl and wer_by_duration.png here (a subfolder per model "
            "when comparing). Default: show the results only.",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = None,
    no_normalize: Annotated[
        bool,
        typer.Option(
            "--no-normalize",
            help="Score raw text: no Whisper English normaliser, so case and punctuation count as errors.",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = False,
    batch_size: BatchSizeOption = None,
    warmup_batches: Annotated[
        int,
        typer.Option(
            "--warmup-batches",
            min=0,
            help="Untimed runs of the first batch before timing starts.",
            rich_help_panel=PERF_PANEL,
        ),
    ] = 1,
    pack: Annotated[
        bool,
        typer.Option(
            "--pack",
            help="Pack several short clips into one 30 s encoder window (far fewer encoder passes; each clip "
            "then hears its neighbours instead of silence, which can change results slightly).",
            rich_help_panel=PERF_PANEL,
        ),
    ] = False,
    vad: Annotated[
        bool,
        typer.Option(
            "--vad",
            help="Transcribe every clip as `tinyaudio transcribe` does (voice detection, a window per speech "
            "region), not only clips over 30 s. Whisper baselines still decode whole clips.",
            rich_help_panel=MODEL_PANEL,
        ),
    ] = False,
    min_confidence: EvalMinConfidenceOption = DEFAULT_MIN_CONFIDENCE,
    device: DeviceOption = "auto",
    dtype: DtypeOption = Dtype.auto,
    encoder_context: EncoderContextOption = DEFAULT_ENCODER_CONTEXT,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Word error rate and speed of one or more models on LoquaciousSet, the Open ASR sets or your own data.

    References and hypotheses go through Whisper's English normaliser (as on the Open ASR Leaderboard) and
    are scored as one corpus: WER, CER, substitutions, deletions and insertions, WER by utterance length and
    the most frequent substitutions. RTFx is seconds of audio per second of model work. Samples whose audio
    cannot be decoded are listed and left out of the score, never dropped silently. Datasets are read
    offline from a local copy or the Hugging Face cache (`tinyaudio download --data NAME` fetches one).

    [bold]Examples[/]

      tinyaudio eval --data loquacious,config=medium --max-samples 500 -o results/

      tinyaudio eval --data loquacious,data_dir=~/data/LoquaciousSet -m ./my-checkpoint

      tinyaudio eval --data calls/manifest.jsonl -m mazesmazes/tiny-audio -m ./finetuned -o compare/

      tinyaudio eval --data org/my-set,audio_column=speech,text_column=sentence,split=validation
    """
    from ..evaluation.runner import EvalOptions, run_evaluation

    flags = {"config": config, "split": split, "audio_column": audio_column, "text_column": text_column}
    flags |= {"id_column": id_column}
    aliases = {"--dataset": dataset, "--data-dir": data_dir, "--manifest": manifest, "--folder": folder}
    source = build_source(data, flags, aliases, max_samples, shuffle, seed)
    options = EvalOptions(
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        mode="reference" if reference_mode else "trimmed",
        max_new_tokens=max_new_tokens,
        normalize=not no_normalize,
        warmup_batches=warmup_batches,
        pack=pack,
        vad=vad,
        min_confidence=min_confidence,
        encoder_context=encoder_context,
        threads=threads,
    )
    quiet_transformers()
    main = distributed.is_main()  # under torchrun, rank 0 shows progress and the merged results
    quiet = quiet or not main
    progress = _progress(quiet)
    try:
        report = run_evaluation(models or [DEFAULT_MODEL], source, options, output_dir, _on_progress(progress))
    finally:
        if progress.live.is_started:  # stopping a display never started would print a blank line
            progress.stop()
    if not quiet:
        show_report(report, results_console)


DEPRECATED = {"--dataset": "--data NAME", "--data-dir": "--data NAME,data_dir=PATH", "--manifest": "--data FILE",
              "--folder": "--data FOLDER"}  # fmt: skip


def build_source(
    data: str | None,
    flags: dict[str, str | None],
    aliases: dict[str, str | Path | None],
    max_samples: int | None,
    shuffle: bool,
    seed: int,
) -> EvalSource:
    """The one source `--data` names (with the dataset flags merged in), or one of the spellings it replaces."""
    from ..data.naming import DataSource
    from ..evaluation.runner import EvalSource

    for flag, value in aliases.items():
        if value is not None and distributed.is_main():
            deprecated(flag, DEPRECATED[flag])
    named = [flag for flag, value in (("--data", data), *aliases.items()) if value is not None and flag != "--data-dir"]
    if len(named) > 1:
        raise TinyAudioError(f"{' and '.join(named)} both name samples", hint="evaluate one source at a time")
    given = data or aliases["--dataset"] or aliases["--manifest"] or aliases["--folder"] or DEFAULT_DATASET
    spelled = {name: f"--{name.replace('_', '-')}" for name, value in flags.items() if value is not None}
    data_dir = aliases["--data-dir"]
    if data_dir is not None:
        spelled["data_dir"] = "--data-dir"
    source = DataSource.parse(str(given)).merged(spelled, **flags, data_dir=str(data_dir) if data_dir else None)
    if source.weight != 1.0:
        raise TinyAudioError("weight= only applies to train's --data", hint="drop it here")
    # the old flags said what the path is; --data looks at it
    kind = "manifest" if aliases["--manifest"] else "folder" if aliases["--folder"] else source.kind
    picking = dict(max_samples=max_samples, shuffle=shuffle, seed=seed)
    if kind != "dataset":
        source.refuse_dataset_options(kind, spelled)
        return EvalSource(kind, str(Path(source.path).expanduser()), **picking)
    return EvalSource(
        "dataset", source.path, source.data_dir, source.config, source.split,
        source.audio_column, source.text_column, source.id_column, **picking,
    )  # fmt: skip


def _progress(quiet: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("samples · {task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
    )


def _on_progress(progress: Progress):
    tasks: dict[int, TaskID] = {}

    def update(event: EvalProgress) -> None:
        if not tasks:  # started on the first event, so an early error prints nothing but itself
            progress.start()
        if event.model_index not in tasks:
            label = f"[{event.model_index + 1}/{event.models}] {event.model}" if event.models > 1 else event.model
            tasks[event.model_index] = progress.add_task(label, total=event.samples_total, status="")
        if event.stage == "loading":
            status = "loading the model"
        elif event.stage == "done":
            status = "scored"
        else:
            speed = event.audio_seconds / event.model_seconds if event.model_seconds else 0.0
            status = f"{clock(event.audio_seconds)} of audio · RTFx {speed:.1f}"
        total = event.samples_total if event.stage != "done" else event.samples_done
        progress.update(tasks[event.model_index], completed=event.samples_done, total=total, status=status)

    return update


# -- the results --------------------------------------------------------------------------------


def show_report(report: EvalReport, out: Console) -> None:
    source = report.source
    where = "/".join(part for part in (source["config"], source["split"]) if part)
    scoring = "normalised" if report.options.normalize else "raw text, not normalised"
    title = " · ".join(part for part in ("tinyaudio eval", source["dataset"], where, scoring) if part)
    table = Table(title=title, title_justify="left")
    for column in ("model", "WER", "CER", "S", "D", "I", "scored", "failed", "RTFx"):
        table.add_column(column, justify="left" if column == "model" else "right", overflow="fold")
    for result in report.results:
        score = result.score
        table.add_row(
            result.model,
            f"{100 * score.wer:.2f}%",
            f"{100 * score.cer:.2f}%",
            str(score.substitutions),
            str(score.deletions),
            str(score.insertions),
            str(len(score.samples)),
            str(len(result.failed)),
            f"{result.timing.rtfx:.1f}",
        )
    out.print(table)
    for result in report.results:
        timing = result.timing
        out.print(
            f"[dim]{result.model}: {timing.audio_seconds:.1f} s audio in {timing.model_seconds:.2f} s of model work "
            f"on {result.device} ({result.dtype}, batch {result.batch_size}); "
            f"not timed: data {timing.data_seconds:.2f} s, model load {timing.load_seconds:.2f} s[/]",
            highlight=False,
        )
    out.print(_by_duration(report))
    out.print(_substitutions(report))
    _show_failed(report, out)
    if report.output_dir is not None:
        out.print(f"results written to {report.output_dir}", highlight=False)


def _by_duration(report: EvalReport) -> Table:
    table = Table(title="WER by duration", title_justify="left")
    table.add_column("duration")
    labels = list(dict.fromkeys(b.label for r in report.results for b in r.score.by_duration))
    cells = {label: [] for label in labels}
    for result in report.results:
        table.add_column(f"{result.model} (samples)", justify="right", overflow="fold")
        found = {bucket.label: bucket for bucket in result.score.by_duration}
        for label in labels:
            bucket = found.get(label)
            cells[label].append(f"{100 * bucket.wer:.2f}% ({bucket.samples})" if bucket else "-")
    for label in labels:
        table.add_row(label, *cells[label])
    return table


def _substitutions(report: EvalReport) -> Table:
    """The most frequent substitutions, one column per model, most frequent first."""
    table = Table(title="most frequent substitutions (reference → hypothesis × count)", title_justify="left")
    columns = []
    for result in report.results:
        table.add_column(result.model, overflow="fold")
        columns.append([f"{s.reference} → {s.hypothesis} × {s.count}" for s in result.score.top_substitutions])
    rows = max(len(column) for column in columns)
    for row in range(rows):
        table.add_row(*(column[row] if row < len(column) else "" for column in columns))
    if not rows:
        table.add_row(*("(none)" for _ in columns))
    return table


def _show_failed(report: EvalReport, out: Console) -> None:
    # Decoding failures belong to the data, so every model saw the same ones: list them once.
    failed = report.results[0].failed
    if not failed:
        return
    out.print(f"[red]{len(failed)} sample(s) could not be decoded and are excluded from WER and CER:[/]")
    for outcome in failed[:FAILED_SHOWN]:
        out.print(f"  [red]✗[/] {outcome.id}: {outcome.error}", highlight=False)
    if len(failed) > FAILED_SHOWN:
        out.print(f"  … and {len(failed) - FAILED_SHOWN} more (see summary.json)")
