"""Media files → transcripts: decode, find speech, pack it into encoder windows, decode each region.

Each speech region the VAD finds is encoded on its own (the encoder over its frames and some padding,
model.context), or with `pack` several regions share a window, pauses left out (one empty frame between
neighbours); each region is decoded from its own projector frames (the trimmed attention mode), which keeps
segments short and their times exact. Windows from different files share batches. `transcribe` is the
one-file path; `transcribe_files` the batched pipeline behind the CLI. Both take audio already in memory
(16 kHz mono float32 arrays, as `NamedAudio` or bare) as well as media files: eval hands its decoded clips
over without writing them out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio.media import SAMPLE_RATE, WINDOW_SAMPLES, stream_audio
from ..audio.vad import SpeechRegion, SpeechWindow, VadOptions, iter_fixed_windows, iter_speech_windows
from ..data.prefetch import Prefetched
from ..errors import TinyAudioError
from ..model.alignment import FRAMES_PER_SECOND, snap_to_sound
from ..model.batching import auto_batch_size, with_backoff
from ..model.decoding import guarded, token_budget
from ..model.modeling import DEFAULT_MODE, AttentionMode, TinyAudioModel, next_offset
from .confidence import DEFAULT_MIN_CONFIDENCE, drop_reason
from .records import Segment, Transcript, Word

QUEUE_WINDOWS = 32  # encoder windows decoded ahead of the model (or a batch, if more): ~2 MB each
BLOCK_SAMPLES = 30 * SAMPLE_RATE  # an array is cut into the blocks stream_audio reads a file in


@dataclass(frozen=True)
class NamedAudio:
    """Audio already in memory: 16 kHz mono samples (float32, or converted to it), and the name its records
    carry where a file's would carry its path."""

    name: str
    samples: np.ndarray


# what transcribe_files takes: media files, or audio in memory (a bare array is named `array-<its index>`)
AudioInput = str | Path | NamedAudio | np.ndarray


@dataclass
class TranscribeOptions:
    mode: AttentionMode = DEFAULT_MODE
    batch_size: int | None = None  # windows per batch; None: as many as fit (model.batching.auto_batch_size)
    max_new_tokens: int | None = None  # None: a budget from each region's length
    vad: VadOptions | None = field(default_factory=VadOptions)  # None: one window from the start
    stop_loops: bool = True  # a row repeating itself stops early (its text is cut at the loop)
    # pack a file's speech regions into shared encoder windows: fewer encoder passes, but each region then hears
    # its neighbours instead of the silence it was trained with, which costs small models much accuracy
    pack: bool = False
    # time every word with the Whisper base's decoder over the encoder states already computed (model.alignment)
    word_timestamps: bool = False
    # segments whose VAD speech probability is under this are marked dropped (see inference.confidence); 0: none
    min_confidence: float = DEFAULT_MIN_CONFIDENCE


@dataclass
class FileResult:
    path: Path  # the file, or an array's name
    transcript: Transcript | None = None
    error: str | None = None
    model_seconds: float = 0.0
    index: int = 0  # where the input stood among those given (results come in the order they finish)


@dataclass
class Placement:
    """A speech region inside an encoder window: where its samples sit, and when it was said."""

    region: SpeechRegion
    offset: int
    length: int


@dataclass
class EncoderWindow:
    file: int
    samples: np.ndarray
    placements: list[Placement]


@dataclass
class _Pending:
    """A file whose windows are still being decoded."""

    path: Path
    source: str  # the path or name the transcript records
    segments: list[Segment] = field(default_factory=list)
    windows_left: int = 0
    duration: float | None = None
    model_seconds: float = 0.0


def speech_windows(
    source: Path | NamedAudio, options: TranscribeOptions, on_samples: Callable[[int], None]
) -> Iterator[SpeechWindow]:
    def counted(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for block in blocks:
            on_samples(len(block))
            yield block

    blocks = counted(array_blocks(source) if isinstance(source, NamedAudio) else stream_audio(source))
    if options.vad is None:
        yield from iter_fixed_windows(blocks)
    else:
        yield from iter_speech_windows(blocks, options.vad)


def array_blocks(audio: NamedAudio) -> Iterator[np.ndarray]:
    """An array as the pipeline reads a file: float32 blocks; an empty one fails as an empty file does."""
    given = np.asarray(audio.samples)
    if not np.issubdtype(given.dtype, np.floating):  # int16 PCM as floats would be 32768 times too loud
        raise TinyAudioError(
            f"{audio.name}: expected float samples in [-1, 1], got {given.dtype} (divide PCM by 32768)"
        )
    samples = given.astype(np.float32, copy=False)
    if samples.ndim != 1:
        raise TinyAudioError(f"{audio.name}: expected mono audio (one dimension), got shape {samples.shape}")
    if not len(samples):
        raise TinyAudioError(f"{audio.name} contains no audio")
    for start in range(0, len(samples), BLOCK_SAMPLES):
        yield samples[start : start + BLOCK_SAMPLES]


def as_inputs(items: Sequence[AudioInput]) -> list[Path | NamedAudio]:
    """Files as Paths, arrays as NamedAudio (a bare one named by its index)."""
    inputs: list[Path | NamedAudio] = []
    for index, item in enumerate(items):
        if isinstance(item, np.ndarray):
            inputs.append(NamedAudio(f"array-{index}", item))
        else:
            inputs.append(item if isinstance(item, NamedAudio) else Path(item))
    return inputs


def pack_regions(file: int, windows: Iterable[SpeechWindow], align: int, pack: bool = True) -> Iterator[EncoderWindow]:
    """Speech regions, in order and without the pauses between them, packed into full windows (`pack`), or
    each at the start of a window of its own, as a model sees a clip in training."""
    parts: list[np.ndarray] = []
    placements: list[Placement] = []
    end = 0
    for window in windows:
        for region in window.regions:
            first = round((region.start - window.start) * SAMPLE_RATE)
            audio = window.samples[first : first + round((region.end - region.start) * SAMPLE_RATE)]
            offset = next_offset(end, align) if placements else 0
            if placements and (not pack or offset + len(audio) > WINDOW_SAMPLES):
                yield _assemble(file, parts, placements, end)
                parts, placements, offset = [], [], 0
            parts.append((offset, audio))
            placements.append(Placement(region, offset, len(audio)))
            end = offset + len(audio)
    if placements:
        yield _assemble(file, parts, placements, end)


def _assemble(file: int, parts: list, placements: list[Placement], end: int) -> EncoderWindow:
    samples = np.zeros(end, dtype=np.float32)
    for offset, audio in parts:
        samples[offset : offset + len(audio)] = audio
    return EncoderWindow(file, samples, placements)


def whole_windows(file: int, windows: Iterable[SpeechWindow]) -> Iterator[EncoderWindow]:
    """Reference mode: each window as it is in the file, decoded as one segment from all its frames."""
    for window in windows:
        weighted = [(r.end - r.start, r.speech_probability) for r in window.regions]
        probability = None
        if all(p is not None for _, p in weighted) and (total := sum(w for w, _ in weighted)) > 0:
            probability = round(sum(w * p for w, p in weighted) / total, 4)  # type: ignore[operator]
        region = SpeechRegion(window.regions[0].start, window.regions[-1].end, probability)
        yield EncoderWindow(file, window.samples, [Placement(region, 0, len(window.samples))])


def _decode(model: TinyAudioModel, batch: list[EncoderWindow], options: TranscribeOptions) -> list[tuple[int, Segment]]:
    states, projected = model.encode_audio([window.samples for window in batch], options.mode)
    units: list[tuple[int, Placement, torch.Tensor, int]] = []  # file, placement, its frames, window in batch
    for index, (window, frames) in enumerate(zip(batch, projected, strict=True)):
        for placement in window.placements:
            if options.mode == "reference":
                units.append((window.file, placement, frames, index))
            else:
                first, last = model.frame_span(placement.offset, placement.offset + placement.length)
                units.append((window.file, placement, frames[first:last], index))
    units.sort(key=lambda unit: len(unit[2]))
    segments = []
    rows = options.batch_size or max(1, len(units))  # set by transcribe_files
    for start in range(0, len(units), rows):
        chunk = units[start : start + rows]
        budgets = [token_budget(model, p.length / SAMPLE_RATE, options.max_new_tokens) for _, p, _, _ in chunk]
        frames = [unit[2] for unit in chunk]
        logprobs: list[list[float]] = []
        ids = model.generate_from_frames(frames, options.mode, budgets, options.stop_loops, logprobs)
        decoded: list[tuple[int, Segment, WordRequest]] = []
        for (file, placement, _, index), token_ids, scores in zip(chunk, ids, logprobs, strict=True):
            kept, text, cut = guarded(model, token_ids)
            region = placement.region
            segment = Segment(0, region.start, region.end, text, kept, cut)
            # the kept tokens are the first ones generated (a cut keeps those before the loop)
            segment.avg_logprob = round(sum(scores[: len(kept)]) / len(kept), 4) if kept else None
            segment.speech_probability = region.speech_probability
            segment.dropped = drop_reason(segment, options.min_confidence)
            decoded.append((file, segment, (states[index], batch[index].samples, placement, text)))
        if options.word_timestamps:  # the chunk's texts timed together: the aligner batches them
            for (_, segment, _), words in zip(decoded, timed_words([r for _, _, r in decoded], model), strict=True):
                segment.words = words
        segments += [(file, segment) for file, segment, _ in decoded]
    return segments


WordRequest = tuple[torch.Tensor, np.ndarray, Placement, str]  # a window's encoder states and samples, a region, text


def timed_words(requests: Sequence[WordRequest], model: TinyAudioModel) -> list[list[Word]]:
    """The words of each region's text, timed by the Whisper base's decoder over the encoder states of its
    window (the frames that hold the region), snapped to pauses, in media seconds inside the region. The
    texts go through the decoder in batches (`WhisperAligner.align_many`)."""
    hop = SAMPLE_RATE // FRAMES_PER_SECOND
    spans = []
    for states, _, placement, _ in requests:
        first = placement.offset // hop
        spans.append((first, min(len(states), math.ceil((placement.offset + placement.length) / hop))))
    wanted = [index for index, (_, _, _, text) in enumerate(requests) if text.strip()]
    aligned = (
        model.aligner().align_many([(requests[i][0][slice(*spans[i])], requests[i][3]) for i in wanted])
        if wanted
        else []
    )
    words: list[list[Word]] = [[] for _ in requests]
    for index, timings in zip(wanted, aligned, strict=True):
        _, samples, placement, _ = requests[index]
        first, last = spans[index]
        timed = snap_to_sound(timings, samples[first * hop : last * hop])
        region = placement.region
        origin = region.start - (placement.offset - first * hop) / SAMPLE_RATE  # media time of frame `first`
        latest = region.start
        for word in timed:
            start = min(max(origin + word.start, latest), region.end)
            end = min(max(origin + word.end, start), region.end)
            words[index].append(Word(word.word, round(start, 3), round(end, 3), round(word.probability, 4)))
            latest = start
    return words


def transcribe_files(
    model: TinyAudioModel,
    paths: Sequence[AudioInput],
    options: TranscribeOptions | None = None,
    on_progress: Callable[[Path, float], None] | None = None,
) -> Iterator[FileResult]:
    """Transcribe many files (or arrays, see AudioInput), windows from different inputs sharing batches; yields
    each input when done (FileResult.index says which).

    Audio decoding and speech detection run on a background thread (data.prefetch), ahead of the model.
    `on_progress(path, seconds)` is told after each batch how far into each file it reached, so a long file shows
    it is moving.
    """
    inputs = as_inputs(paths)
    options = options or TranscribeOptions()
    batch_size = options.batch_size or auto_batch_size(model)
    options = replace(options, batch_size=batch_size)
    pending: dict[int, _Pending] = {}
    batch: list[EncoderWindow] = []

    def smaller(size: int) -> None:
        nonlocal batch_size
        batch_size = min(batch_size, size)  # later batches start at the size that fitted

    def finished() -> Iterator[FileResult]:
        for file in [f for f, state in pending.items() if state.duration is not None and state.windows_left == 0]:
            yield _finish(model, file, pending.pop(file))

    def flush() -> Iterator[FileResult]:
        if batch:
            started = time.perf_counter()
            with torch.inference_mode():
                decoded = with_backoff(lambda windows: _decode(model, windows, options), batch, smaller)
            elapsed = time.perf_counter() - started
            for window in batch:
                pending[window.file].windows_left -= 1
                pending[window.file].model_seconds += elapsed / len(batch)
                if on_progress is not None and window.placements:
                    on_progress(pending[window.file].path, max(p.region.end for p in window.placements))
            for file, segment in decoded:
                pending[file].segments.append(segment)
            batch.clear()
        yield from finished()

    with Prefetched(_events(model, inputs, options), max(QUEUE_WINDOWS, batch_size), "tinyaudio-audio") as events:
        for kind, file, payload in events:
            state = pending.setdefault(file, _pending(inputs[file]))
            if kind == "window":
                state.windows_left += 1
                batch.append(payload)
                if len(batch) >= batch_size:
                    yield from flush()
            elif kind == "done":
                state.duration = payload
                yield from finished()
            else:
                del pending[file]
                batch[:] = [window for window in batch if window.file != file]
                yield FileResult(state.path, error=payload, index=file)
        yield from flush()


def _pending(source: Path | NamedAudio) -> _Pending:
    if isinstance(source, NamedAudio):
        return _Pending(Path(source.name), source.name)
    return _Pending(source, str(source))


def _events(
    model: TinyAudioModel, inputs: list[Path | NamedAudio], options: TranscribeOptions
) -> Iterator[tuple[str, int, Any]]:
    """Decode and segment every input in order: its encoder windows, then its end (its seconds) or its error."""
    for file, source in enumerate(inputs):
        samples = 0

        def count(n: int) -> None:
            nonlocal samples
            samples += n

        windows = speech_windows(source, options, count)
        if options.mode == "reference":
            encoder_windows = whole_windows(file, windows)
        else:
            encoder_windows = pack_regions(file, windows, model.samples_per_token, options.pack)
        try:
            for window in encoder_windows:
                yield "window", file, window
        except TinyAudioError as error:
            yield "error", file, error.message
        except Exception as error:  # a bug or an odd file must fail that file, not the whole run
            yield "error", file, f"{type(error).__name__}: {error}"
        else:
            yield "done", file, samples / SAMPLE_RATE


def _finish(model: TinyAudioModel, file: int, state: _Pending) -> FileResult:
    segments = sorted((s for s in state.segments if s.text), key=lambda s: s.start)
    for number, segment in enumerate(segments):
        segment.id = number
    transcript = Transcript(state.source, segments, state.duration or 0.0, getattr(model, "name", "tinyaudio"))
    return FileResult(state.path, transcript, model_seconds=state.model_seconds, index=file)


def transcribe(model: TinyAudioModel, path: AudioInput, options: TranscribeOptions | None = None) -> Transcript:
    """Transcribe one media file (or array, see AudioInput); raises TinyAudioError when it cannot be decoded."""
    result = next(iter(transcribe_files(model, [path], options)))
    if result.error:
        raise TinyAudioError(result.error)
    assert result.transcript is not None
    return result.transcript
