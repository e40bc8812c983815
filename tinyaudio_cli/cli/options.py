"""What several commands share: the stderr console, help panels, option types and small helpers.

Command modules import from here (and from style.py), never from app.py, so the CLI has no import cycle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console

from ..constants import MODEL_ENV

console = Console(stderr=True)  # progress, summaries and errors; a command's results go to stdout

MODEL_PANEL, INPUT_PANEL, OUTPUT_PANEL, PERF_PANEL, HUB_PANEL = "Model", "Input", "Output", "Performance", "Hub"

ModelOption = Annotated[
    str,
    typer.Option(
        "--model", "-m", envvar=MODEL_ENV, help="Checkpoint: Hub id or local folder.", rich_help_panel=MODEL_PANEL
    ),
]


def _checked(check_name: str) -> Callable[[typer.Context, str], str]:
    """A callback that runs `model.loading.<check_name>` while the command line is parsed, so a device this
    machine lacks or an unknown dtype is a usage error before any file is read or model loaded (but not while
    the shell completes a command line). model.loading is imported only then: it imports torch. The UsageError
    it raises reaches the one error handler in app.py, like every other."""

    def callback(ctx: typer.Context, value: str) -> str:
        if ctx.resilient_parsing:
            return value
        from ..model import loading

        getattr(loading, check_name)(value)
        return value

    return callback


DeviceOption = Annotated[
    str,
    typer.Option(
        "--device",
        help="auto, cpu, cuda, cuda:N or mps.",
        callback=_checked("check_device"),
        rich_help_panel=PERF_PANEL,
    ),
]
DtypeOption = Annotated[
    str,
    typer.Option(
        "--dtype",
        help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16.",
        callback=_checked("check_dtype"),
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
EncoderContextOption = Annotated[
    str,
    typer.Option(
        "--encoder-context",
        help="What the Whisper encoder runs over: 'audio' (each clip's audio and 5 s of the window's padding: a "
        "fraction of the work for short clips), 'full' (the whole 30 s window, as the reference does), or seconds "
        "of padding. --reference-mode always uses the whole window.",
        callback=_checked("check_encoder_context"),
        rich_help_panel=PERF_PANEL,
    ),
]
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="CPU threads for the model (default: every core, unless OMP_NUM_THREADS is set).",
        rich_help_panel=PERF_PANEL,
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary, errors only.")]
# output format flags and subtitle layout shared by transcribe and align
SrtFlag = Annotated[bool, typer.Option("--srt", help="Same as -f srt.", rich_help_panel=OUTPUT_PANEL)]
VttFlag = Annotated[bool, typer.Option("--vtt", help="Same as -f vtt.", rich_help_panel=OUTPUT_PANEL)]
JsonFlag = Annotated[bool, typer.Option("--json", help="Same as -f json.", rich_help_panel=OUTPUT_PANEL)]
HighlightWordsOption = Annotated[
    bool,
    typer.Option(
        "--highlight-words",
        help="Underline each word in SRT/VTT cues while it is said (in transcribe: implies --word-timestamps).",
        rich_help_panel=OUTPUT_PANEL,
    ),
]
MaxWordsPerLineOption = Annotated[
    int | None,
    typer.Option(
        "--max-words-per-line", min=1, help="Subtitle words per line (with word times).", rich_help_panel=OUTPUT_PANEL
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Hugging Face token for private, gated or pushed-to repos (default: HF_TOKEN or the saved login).",
        rich_help_panel=HUB_PANEL,
    ),
]


def quiet_transformers() -> None:
    """transformers' own progress bars and notices would interleave with ours."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
