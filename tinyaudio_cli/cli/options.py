"""What several commands share: the stderr console, help panels, option types and small helpers.

Command modules import from here (and from style.py), never from app.py, so the CLI has no import cycle."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum
from typing import Annotated, Any

import typer
from rich.console import Console

from ..constants import BUNDLED_MODEL_NAMES, MODEL_ENV
from ..errors import UsageError
from ..inference.confidence import check_min_confidence

console = Console(stderr=True)  # progress, summaries and errors; a command's results go to stdout

MODEL_PANEL, INPUT_PANEL, OUTPUT_PANEL, PERF_PANEL, HUB_PANEL = "Model", "Input", "Output", "Performance", "Hub"

DEVICES = ("auto", "cpu", "cuda", "mps")  # and cuda:N, which only torch could list (too slow for a Tab)


def names(source: Callable[[], Iterable[str]]) -> Callable[[str], list[str]]:
    """A shell completer: the names `source` lists that start with what is typed. With none, every shell's
    script (completions/, or --install-completion) falls back to completing file names, so a value that
    may also be a path (a local checkpoint, a manifest) completes as one."""

    def complete(incomplete: str) -> list[str]:
        return [name for name in source() if name.startswith(incomplete)]

    return complete


def _dataset_names() -> Iterable[str]:
    from ..data.registry import DATASETS  # light: no numpy, no datasets

    return DATASETS


def _format_names() -> Iterable[str]:
    from ..inference.writers import ALL_FORMATS, FORMATS

    return (*FORMATS, ALL_FORMATS)


complete_device = names(lambda: DEVICES)
complete_model = names(lambda: BUNDLED_MODEL_NAMES)  # a shipped model's short name, or a folder
complete_dataset = names(_dataset_names)  # a registered set, or a folder, Parquet file or manifest
complete_format = names(_format_names)

ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        envvar=MODEL_ENV,
        help="Checkpoint: Hub id or local folder.",
        rich_help_panel=MODEL_PANEL,
        autocompletion=complete_model,
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


class Choice(str, Enum):
    """A closed set of option values. A member is its value wherever a str goes (comparisons, f-strings, JSON,
    the libraries' str parameters), so commands pass it on as it comes."""

    __str__ = str.__str__
    __format__ = str.__format__
    __hash__ = str.__hash__  # a dict keyed by the plain values finds a member


class Dtype(Choice):
    """What load_model takes (model.loading.DTYPES, and auto)."""

    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class SaveDtype(Choice):
    """What a checkpoint's projector weights are stored in."""

    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Scheduler(Choice):
    """Learning-rate schedules (transformers' get_scheduler names that training offers)."""

    cosine = "cosine"
    linear = "linear"
    constant = "constant"
    constant_with_warmup = "constant_with_warmup"
    cosine_with_restarts = "cosine_with_restarts"
    polynomial = "polynomial"


class Preset(Choice):
    """Named starting points for train (training.config.PRESETS)."""

    loquacious = "loquacious"
    smoke = "smoke"
    tiny_en = "tiny-en"


def choices(enum: type[Choice], what: str) -> dict[str, Any]:
    """typer.Option settings for a closed set of values: help shows [a|b|c], the shell completes them, and a
    value outside the set is the app's one error line (a UsageError, exit 2, raised while the command line is
    parsed) rather than a boxed parser message. The command gets the enum member (a str)."""
    values = [member.value for member in enum]

    def check(value: str) -> Choice:
        if value not in values:
            raise UsageError(f"unknown {what} {value!r} ({', '.join(values)})")
        return enum(value)

    def callback(ctx: typer.Context, value: Any) -> Any:
        if value is None or ctx.resilient_parsing:  # not given, or the shell is completing a half-typed line
            return value
        return [check(item) for item in value] if isinstance(value, list) else check(value)

    def complete(incomplete: str) -> list[str]:
        return [value for value in values if value.startswith(incomplete)]

    return {"metavar": f"[{'|'.join(values)}]", "callback": callback, "autocompletion": complete}


DeviceOption = Annotated[
    str,
    typer.Option(
        "--device",
        help="auto, cpu, cuda, cuda:N or mps.",
        callback=_checked("check_device"),
        autocompletion=complete_device,
        rich_help_panel=PERF_PANEL,
    ),
]
DtypeOption = Annotated[
    str,
    typer.Option(
        "--dtype", help="auto: bfloat16 on CUDA, float32 on CPU.", rich_help_panel=PERF_PANEL, **choices(Dtype, "dtype")
    ),
]
SaveDtypeOption = Annotated[
    str, typer.Option("--dtype", help="Precision of the stored projector weights.", **choices(SaveDtype, "dtype"))
]
BatchSizeOption = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        min=1,
        help="Windows per batch (default: 16 on a CPU; on a GPU, as many as its free memory holds, up to 256).",
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


def _min_confidence(text: str) -> float:
    """--min-confidence's value, or one usage line (a number out of range, or no number at all)."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--min-confidence must be a number between 0 and 1, got {text!r}") from None
    return check_min_confidence(value)


MinConfidenceOption = Annotated[
    float,
    typer.Option(
        "--min-confidence",
        parser=_min_confidence,
        metavar="P",
        help="Drop segments whose mean VAD speech probability is under P: text the model invented over music or "
        'noise. They leave txt/srt/vtt/tsv and stay in JSON marked "dropped" with the reason. 0 keeps all; with '
        "--no-vad nothing is dropped. The default, Silero's own threshold, removed 9 of 15 invented segments "
        "and 2 of 232 real ones (short spoken digits) in benchmarks/confidence.py.",
        rich_help_panel=OUTPUT_PANEL,
    ),
]
EvalMinConfidenceOption = Annotated[
    float,
    typer.Option(
        "--min-confidence",
        parser=_min_confidence,
        metavar="P",
        help="As in transcribe: clips that go through voice detection (--vad, or over 30 s) leave out of their "
        "hypothesis the segments whose speech probability is under P. 0 keeps all.",
        rich_help_panel=MODEL_PANEL,
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


def deprecated(spelling: str, instead: str) -> None:
    """The one-line notice for an option spelling kept for one release after it was replaced."""
    console.print(
        f"[yellow]warning:[/] {spelling} is deprecated and will be removed in the next release; use {instead}",
        highlight=False,
        soft_wrap=True,
    )


def quiet_transformers() -> None:
    """transformers' own progress bars and notices would interleave with ours."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
