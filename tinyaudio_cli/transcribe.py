"""Media files → transcripts: decode, find speech, batch windows across files, decode each region.

Every Whisper window costs a full 30 s encoder pass however little speech it holds, so the VAD packs
neighbouring speech regions into one window; the window is encoded once and each region is decoded
from its own projector frames (the trimmed attention mode), which keeps segments short and their
times exact. `transcribe` is the one-file path; `transcribe_files` the batched pipeline behind the CLI.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .audio import SAMPLE_RATE, stream_audio
from .errors import TinyAudioError
from .model.modeling import DEFAULT_MODE, AttentionMode, TinyAudioModel
from .records import Segment, Transcript
from .vad import SpeechRegion, SpeechWindow, VadOptions, iter_fixed_windows, iter_speech_windows

# Fast speech is about 8 LM tokens a second; a region asking for far more is an LM stuck in a loop.
TOKENS_PER_SECOND_LIMIT = 15
TOKEN_BUDGET_FLOOR = 16
# A phrase of up to REPEAT_MAX_PERIOD tokens said REPEAT_MIN_COUNT times in a row, over at least
# REPEAT_MIN_TOKENS tokens, is a decoding loop rather than speech.
REPEAT_MAX_PERIOD = 24
REPEAT_MIN_COUNT = 4
REPEAT_MIN_TOKENS = 16


@dataclass
class TranscribeOptions:
    mode: AttentionMode = DEFAULT_MODE
    batch_size: int = 8
    max_new_tokens: int | None = None  # None: a budget from each region's length
    vad: VadOptions | None = field(default_factory=VadOptions)  # None: one window from the start


@dataclass
class FileResult:
    path: Path
    transcript: Transcript | None = None
    error: str | None = None
    model_seconds: float = 0.0


@dataclass
class _Pending:
    """A file whose windows are still being decoded."""

    path: Path
    segments: list[Segment] = field(default_factory=list)
    windows_left: int = 0
    duration: float | None = None
    model_seconds: float = 0.0


@dataclass
class _Unit:
    """One stretch of audio to decode: a region of a window, or (reference mode) the whole window."""

    file: int
    region: SpeechRegion
    frames: torch.Tensor


def cut_repetition(token_ids: Sequence[int]) -> tuple[list[int], bool]:
    """Cut a decoding loop back to its first occurrence; True when something was cut."""
    ids = list(token_ids)
    for start in range(len(ids)):
        for period in range(1, REPEAT_MAX_PERIOD + 1):
            phrase = ids[start : start + period]
            count = 1
            while ids[start + count * period : start + (count + 1) * period] == phrase:
                count += 1
            if count >= REPEAT_MIN_COUNT and count * period >= REPEAT_MIN_TOKENS:
                return ids[: start + period], True
    return ids, False


def token_budget(model: TinyAudioModel, seconds: float, options: TranscribeOptions) -> int:
    if options.max_new_tokens:
        return options.max_new_tokens
    return min(model.config.max_new_tokens, TOKEN_BUDGET_FLOOR + math.ceil(seconds * TOKENS_PER_SECOND_LIMIT))


def iter_windows(path: Path, options: TranscribeOptions, on_samples: Callable[[int], None]) -> Iterator[SpeechWindow]:
    def counted(blocks: Iterable) -> Iterator:
        for block in blocks:
            on_samples(len(block))
            yield block

    blocks = counted(stream_audio(path))
    if options.vad is None:
        yield from iter_fixed_windows(blocks)
    else:
        yield from iter_speech_windows(blocks, options.vad)


def _units(model: TinyAudioModel, file: int, window: SpeechWindow, projected: torch.Tensor, mode: str) -> list[_Unit]:
    if mode == "reference":
        region = SpeechRegion(window.regions[0].start, window.regions[-1].end)
        return [_Unit(file, region, projected)]
    units = []
    for region in window.regions:
        first, last = model.frame_span(
            round((region.start - window.start) * SAMPLE_RATE), round((region.end - window.start) * SAMPLE_RATE)
        )
        units.append(_Unit(file, region, projected[first:last]))
    return units


def _decode_windows(
    model: TinyAudioModel, batch: list[tuple[int, SpeechWindow]], options: TranscribeOptions
) -> list[tuple[int, Segment]]:
    projected = model.encode(model.features([window.samples for _, window in batch]))
    units = [
        unit
        for (file, window), p in zip(batch, projected, strict=True)
        for unit in _units(model, file, window, p, options.mode)
    ]
    units.sort(key=lambda unit: len(unit.frames))
    segments = []
    for start in range(0, len(units), options.batch_size):
        chunk = units[start : start + options.batch_size]
        budgets = [token_budget(model, u.region.end - u.region.start, options) for u in chunk]
        ids = model.generate_from_frames([u.frames for u in chunk], options.mode, budgets)
        for unit, token_ids in zip(chunk, ids, strict=True):
            text_ids = [t for t in token_ids if t not in model.stop_ids]
            kept, cut = cut_repetition(text_ids)
            text = model.decode_text(kept)
            segment = Segment(0, unit.region.start, unit.region.end, text, list(token_ids), cut)
            segments.append((unit.file, segment))
    return segments


def transcribe_files(
    model: TinyAudioModel, paths: Sequence[Path], options: TranscribeOptions | None = None
) -> Iterator[FileResult]:
    """Transcribe many files, windows from different files sharing batches; yields each file when done."""
    options = options or TranscribeOptions()
    pending: dict[int, _Pending] = {}
    batch: list[tuple[int, SpeechWindow]] = []

    def flush() -> Iterator[FileResult]:
        if batch:
            started = time.perf_counter()
            with torch.inference_mode():
                decoded = _decode_windows(model, batch, options)
            elapsed = time.perf_counter() - started
            for file, _ in batch:
                pending[file].windows_left -= 1
                pending[file].model_seconds += elapsed / len(batch)
            for file, segment in decoded:
                pending[file].segments.append(segment)
            batch.clear()
        for file in [f for f, state in pending.items() if state.duration is not None and state.windows_left == 0]:
            yield _finish(model, pending.pop(file))

    for file, path in enumerate(paths):
        state = pending[file] = _Pending(Path(path))
        samples = 0

        def count(n: int) -> None:
            nonlocal samples
            samples += n

        try:
            for window in iter_windows(state.path, options, count):
                state.windows_left += 1
                batch.append((file, window))
                if len(batch) >= options.batch_size:
                    yield from flush()
        except TinyAudioError as error:
            del pending[file]
            batch[:] = [(f, w) for f, w in batch if f != file]
            yield FileResult(state.path, error=error.message)
            continue
        state.duration = samples / SAMPLE_RATE
        yield from flush() if not batch else iter(())
    yield from flush()


def _finish(model: TinyAudioModel, state: _Pending) -> FileResult:
    segments = sorted((s for s in state.segments if s.text), key=lambda s: s.start)
    for number, segment in enumerate(segments):
        segment.id = number
    transcript = Transcript(str(state.path), segments, state.duration or 0.0, getattr(model, "name", "tinyaudio"))
    return FileResult(state.path, transcript, model_seconds=state.model_seconds)


def transcribe(model: TinyAudioModel, path: str | Path, options: TranscribeOptions | None = None) -> Transcript:
    """Transcribe one media file; raises TinyAudioError when it cannot be decoded."""
    result = next(iter(transcribe_files(model, [Path(path)], options)))
    if result.error:
        raise TinyAudioError(result.error)
    assert result.transcript is not None
    return result.transcript
