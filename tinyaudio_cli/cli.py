"""The `tinyaudio` command line: parse options, call the library, render results. Nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from . import __version__
from .errors import TinyAudioError

MODEL_ENV = "TINYAUDIO_MODEL"
DEFAULT_MODEL = "mazesmazes/tiny-audio"

app = typer.Typer(
    name="tinyaudio",
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
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.", rich_help_panel=PERF_PANEL)]
DtypeOption = Annotated[
    str,
    typer.Option(
        "--dtype",
        help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16.",
        rich_help_panel=PERF_PANEL,
    ),
]
BatchSizeOption = Annotated[
    int, typer.Option("--batch-size", min=1, help="Windows per batch.", rich_help_panel=PERF_PANEL)
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
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary, errors only.")]


def fail(error: TinyAudioError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {error.message}", highlight=False, soft_wrap=True)
    if error.hint:
        console.print(f"[dim]hint: {error.hint}[/]", highlight=False, soft_wrap=True)
    return typer.Exit(1)


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


# -- transcribe ---------------------------------------------------------------------------------------


@app.command(no_args_is_help=True)
def transcribe(
    inputs: Annotated[
        list[Path], typer.Argument(help="Media files or folders (searched recursively).", show_default=False)
    ],
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format", "-f", help="txt, srt, vtt, json, tsv or all; repeatable.", rich_help_panel=OUTPUT_PANEL
        ),
    ] = None,
    srt: Annotated[bool, typer.Option("--srt", help="Same as -f srt.", rich_help_panel=OUTPUT_PANEL)] = False,
    vtt: Annotated[bool, typer.Option("--vtt", help="Same as -f vtt.", rich_help_panel=OUTPUT_PANEL)] = False,
    json_: Annotated[bool, typer.Option("--json", help="Same as -f json.", rich_help_panel=OUTPUT_PANEL)] = False,
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
            help="Replace existing outputs (default: skip inputs already done).",
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
            help="Longest subtitle cue in seconds. A segment split across cues shares its time out in "
            "proportion to text length.",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = 7.0,
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
            help="No voice detection: one window from the start of each file (at most 30 s).",
            rich_help_panel=INPUT_PANEL,
        ),
    ] = False,
    model: ModelOption = DEFAULT_MODEL,
    reference_mode: Annotated[
        bool,
        typer.Option(
            "--reference-mode",
            help="Attend to the whole 30 s window, padding included, as the reference implementation does.",
            rich_help_panel=MODEL_PANEL,
        ),
    ] = False,
    max_new_tokens: MaxNewTokensOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    batch_size: BatchSizeOption = 8,
    quiet: QuietOption = False,
) -> None:
    """Transcribe media files or whole folders to txt, SRT, VTT, JSON or TSV.

    Any container or codec ffmpeg reads works. Silero VAD finds the speech; silence is never sent to
    the model. Inputs whose outputs already exist are skipped, so an interrupted run resumes.

    [bold]Examples[/]

      tinyaudio transcribe meeting.mp4 --srt

      tinyaudio transcribe recordings/ -f srt -f json -o transcripts/

      tinyaudio transcribe talk.mp3 -o - > talk.txt

      tinyaudio transcribe clip.wav --no-vad --reference-mode -m ./my-checkpoint
    """
    from .cli_transcribe import run_transcribe

    chosen = list(formats or []) + [
        name for name, on in (("srt", srt), ("vtt", vtt), ("json", json_), ("txt", txt)) if on
    ]
    try:
        code = run_transcribe(
            inputs=inputs,
            formats=chosen or ["txt"],
            output_dir=output_dir,
            overwrite=overwrite,
            subtitle=(max_line_width, max_line_count, max_cue_duration),
            extensions=extensions or [],
            vad=not no_vad,
            model_name=model,
            mode="reference" if reference_mode else "trimmed",
            max_new_tokens=max_new_tokens,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            quiet=quiet,
            console=console,
        )
    except TinyAudioError as error:
        raise fail(error) from None
    raise typer.Exit(code)


def main() -> None:
    app()
