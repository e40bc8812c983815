"""Voice activity detection: find the speech in a stream of audio and cut it into model-sized windows.

Silero VAD scores every 32 ms frame; a hysteresis like silero's own get_speech_timestamps turns the
scores into speech regions, and neighbouring regions are packed into windows of at most
max_window_seconds, each a contiguous slice of the original audio. Everything streams: only the
audio of the window under construction is kept, so a long recording costs no more memory than a
short one.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import torch

from tinyaudio_cli.audio.media import SAMPLE_RATE, WINDOW_SECONDS
from tinyaudio_cli.errors import TinyAudioError

FRAME_SAMPLES = 512  # the frame Silero scores at 16 kHz (32 ms)
CONTEXT_SAMPLES = 64  # Silero sees the tail of the previous frame in front of each frame
HIDDEN_SIZE = 128  # width of Silero's LSTM state
MAX_BATCH_FRAMES = 1024  # ~33 s of audio per model call keeps the feature tensors small
NEG_THRESHOLD_GAP = 0.15  # as in silero: once in speech, only scores below threshold - 0.15 are silence
MIN_WINDOW_SECONDS = 1.0


@dataclass
class VadOptions:
    """How speech is told from silence, and how it is packed into windows."""

    threshold: float = 0.5
    min_speech_duration_ms: int = 250
    min_silence_duration_ms: int = 500  # a pause at least this long ends a speech region
    speech_pad_ms: int = 200
    max_window_seconds: float = WINDOW_SECONDS
    # Regions closer than this share a window (while it fits); a longer pause starts a new one, so
    # windows don't carry long silences the model would have to sit through.
    merge_gap_seconds: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise TinyAudioError(f"VAD threshold must be between 0 and 1, got {self.threshold}")
        if self.max_window_seconds < MIN_WINDOW_SECONDS:
            raise TinyAudioError(
                f"VAD windows must be at least {MIN_WINDOW_SECONDS:g} s long, got {self.max_window_seconds:g}"
            )
        # Padding may take at most a quarter of a window, so a window always has room for speech.
        if not 0 <= self.speech_pad_ms <= self.max_window_seconds * 1000 / 4:
            raise TinyAudioError(f"VAD speech padding of {self.speech_pad_ms} ms does not fit the window")
        if min(self.min_speech_duration_ms, self.min_silence_duration_ms, self.merge_gap_seconds) < 0:
            raise TinyAudioError("VAD durations must not be negative")


@dataclass(frozen=True)
class SpeechRegion:
    """A stretch of speech; seconds in the original media."""

    start: float
    end: float
    # Silero's mean speech probability over the region's speech, its padding left out (None without VAD): how
    # sure the VAD is that this is speech, for telling real speech from text a model invents over noise
    speech_probability: float | None = field(default=None, compare=False)


@dataclass
class SpeechWindow:
    """A contiguous slice of the original audio that starts at `start` seconds and holds speech."""

    start: float
    samples: np.ndarray
    regions: list[SpeechRegion] = field(default_factory=list)

    @property
    def end(self) -> float:
        return self.start + len(self.samples) / SAMPLE_RATE

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@functools.cache
def _silero_model() -> torch.jit.ScriptModule:
    threads = torch.get_num_threads()
    import silero_vad  # importing it pins torch to one thread for the whole process

    torch.set_num_threads(threads)
    with warnings.catch_warnings():  # its loader uses APIs that torch and importlib now deprecate
        warnings.simplefilter("ignore", DeprecationWarning)
        model = silero_vad.load_silero_vad(onnx=False)  # the JIT file the package ships: no download
    if not all(hasattr(getattr(model, "_model", None), name) for name in ("stft", "encoder", "decoder")):
        raise TinyAudioError(
            "this silero-vad version has an unknown model layout", hint="pip install 'silero-vad>=5.1'"
        )
    return model


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    # Silero's LSTM steps are tiny: syncing several threads at each one costs more than the work
    # (measured 10-40x slower on a busy 2-core machine). Torch's setting is process-wide, so restore it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _SileroScorer:
    """Silero's streaming model, run a batch of frames at a time.

    Silero's own API takes one frame per call; 60 s of audio is 1,875 calls. Only its LSTM carries
    state from frame to frame, so the STFT and convolutions run on all frames at once and the LSTM
    cell's weights run as one nn.LSTM over the sequence: the same scores, 25-50x faster.
    """

    def __init__(self) -> None:
        silero = _silero_model()._model
        self._features = torch.nn.Sequential(silero.stft, silero.encoder)
        self._head = silero.decoder.decoder
        cell = silero.decoder.rnn
        self._lstm = torch.nn.LSTM(HIDDEN_SIZE, HIDDEN_SIZE)
        with torch.no_grad():
            for lstm_weight, cell_weight in (
                (self._lstm.weight_ih_l0, cell.weight_ih),
                (self._lstm.weight_hh_l0, cell.weight_hh),
                (self._lstm.bias_ih_l0, cell.bias_ih),
                (self._lstm.bias_hh_l0, cell.bias_hh),
            ):
                lstm_weight.copy_(cell_weight)
        self._lstm.eval()
        self._state = (torch.zeros(1, 1, HIDDEN_SIZE), torch.zeros(1, 1, HIDDEN_SIZE))
        self._context = torch.zeros(1, CONTEXT_SAMPLES)

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Speech probabilities for consecutive (n, 512) frames, continuing from the previous call."""
        with _one_torch_thread():
            return self._score(frames)

    def _score(self, frames: np.ndarray) -> np.ndarray:
        scores = []
        for first in range(0, len(frames), MAX_BATCH_FRAMES):
            batch = torch.from_numpy(np.ascontiguousarray(frames[first : first + MAX_BATCH_FRAMES]))
            contexts = torch.cat([self._context, batch[:-1, -CONTEXT_SAMPLES:]])
            self._context = batch[-1:, -CONTEXT_SAMPLES:].clone()
            features = self._features(torch.cat([contexts, batch], dim=1)).squeeze(-1)
            hidden, self._state = self._lstm(features.unsqueeze(1), self._state)
            scores.append(self._head(hidden.squeeze(1).unsqueeze(-1)).reshape(len(batch)))
        return torch.cat(scores).numpy() if scores else np.zeros(0, dtype=np.float32)


@dataclass
class _Cut:
    """A window decided by the segmenter, in samples of the original audio."""

    start: int
    end: int
    regions: list[tuple[int, int]]
    probabilities: list[float | None] = field(default_factory=list)  # per region: mean speech score


class _Segmenter:
    """Turns frame scores into windows, deciding each as soon as the audio seen so far allows.

    Times are in samples. Closed regions are kept with their padded start and unpadded end; end
    padding is settled when the window is cut, once the next onset (if any) is known.
    """

    def __init__(self, options: VadOptions) -> None:
        def samples(seconds: float) -> int:
            return round(seconds * SAMPLE_RATE)

        self.threshold = options.threshold
        self.neg_threshold = max(options.threshold - NEG_THRESHOLD_GAP, 0.01)
        self.min_speech = samples(options.min_speech_duration_ms / 1000)
        self.min_silence = samples(options.min_silence_duration_ms / 1000)
        self.pad = samples(options.speech_pad_ms / 1000)
        self.max_window = samples(options.max_window_seconds)
        self.merge_gap = samples(options.merge_gap_seconds)

        self.samples_seen = 0  # frames scored so far, in samples
        self.onset: int | None = None  # where the region in progress turned to speech
        self.piece_start = 0  # where the region in progress begins in the current window
        self.silence_from: int | None = None  # where the region in progress last went quiet
        self.regions: list[tuple[int, int]] = []  # closed regions of the current window
        self.probabilities: list[float | None] = []  # of each closed region: its mean score, padding left out
        self.emitted_until = 0  # no window may begin before the end of the last one
        self.scores: list[float] = []  # scores since frame scores_from, for finding quiet cut points
        self.scores_from = 0

    def push(self, scores: np.ndarray) -> list[_Cut]:
        cuts: list[_Cut] = []
        for score in scores.tolist():
            position = self.samples_seen
            self.samples_seen += FRAME_SAMPLES
            self.scores.append(score)
            if score >= self.threshold:
                self.silence_from = None
                if self.onset is None:
                    self._begin_region(position)
            elif score < self.neg_threshold and self.onset is not None:
                if self.silence_from is None:
                    self.silence_from = position
                if position - self.silence_from >= self.min_silence:
                    self._end_region(self.silence_from, cuts)
            self._enforce_limits(cuts)
        return cuts

    def finish(self, total_samples: int) -> list[_Cut]:
        """Close what is still open once the audio has ended after total_samples."""
        cuts: list[_Cut] = []
        if self.onset is not None:
            self._end_region(self.silence_from if self.silence_from is not None else total_samples, cuts)
        if self.regions:
            cuts.append(self._cut_window(limit=total_samples))
        return cuts

    def keep_from(self) -> int:
        """The earliest sample a future window can still need."""
        if self.regions:
            keep = self.regions[0][0]
        elif self.onset is not None:
            keep = self.piece_start
        else:  # a region starting at the next frame would be padded back this far
            keep = max(self.emitted_until, self.samples_seen - self.pad)
        first_frame = keep // FRAME_SAMPLES
        del self.scores[: max(0, first_frame - self.scores_from)]
        self.scores_from = max(self.scores_from, first_frame)
        return keep

    def _begin_region(self, onset: int) -> None:
        floor = self.emitted_until
        if self.regions:  # share the pause with the previous region when both paddings don't fit
            floor = max(floor, self._padded_end(self.regions[-1][1], onset))
        self.onset = onset
        self.piece_start = max(onset - self.pad, floor)

    def _end_region(self, end: int, cuts: list[_Cut]) -> None:
        # Only now is it known whether the region is long enough to keep, and so whether it is the
        # neighbour whose onset limits the previous region's padding (as in silero).
        assert self.onset is not None
        if end - self.onset > self.min_speech and end > self.piece_start:
            if self.regions and self.onset - self.regions[-1][1] > self.merge_gap:
                cuts.append(self._cut_window(next_onset=self.onset))
            self.regions.append((self.piece_start, end))
            self.probabilities.append(self._mean_score(max(self.onset, self.piece_start), end))
        self.onset = self.silence_from = None

    def _enforce_limits(self, cuts: list[_Cut]) -> None:
        if self.onset is None:
            # Nothing more can join: the pause is too long already (and too long for a next
            # region to claim half of it as padding).
            if self.regions and self.samples_seen - self.regions[-1][1] > max(self.merge_gap, 2 * self.pad):
                cuts.append(self._cut_window())
            return
        # The region in progress may close at the next frame, padded: cut now if that could overflow.
        while self.samples_seen + self.pad > self._window_start() + self.max_window:
            if self.regions:  # cut at the pause before the region in progress
                cuts.append(self._cut_window(next_onset=self.onset))
            elif cut := self._split_region():
                cuts.append(cut)

    def _window_start(self) -> int:
        return self.regions[0][0] if self.regions else self.piece_start

    def _padded_end(self, end: int, next_onset: int | None) -> int:
        if next_onset is None:
            return end + self.pad
        return end + min(self.pad, (next_onset - end) // 2)

    def _cut_window(self, next_onset: int | None = None, limit: int | None = None) -> _Cut:
        """Emit the closed regions as one window."""
        regions = self.regions
        padded = [(start, min(end + self.pad, later)) for (start, end), (later, _) in pairwise(regions)]
        start, last_end = regions[-1]
        end = self._padded_end(last_end, next_onset)
        if limit is not None:
            end = min(end, limit)
        padded.append((start, end))
        cut = _Cut(padded[0][0], end, padded, self.probabilities)
        self.regions, self.probabilities = [], []
        self.emitted_until = end
        return cut

    def _mean_score(self, start: int, end: int) -> float | None:
        """The mean score of the frames overlapping samples [start, end) (keep_from keeps those of the region in
        progress); None when there is none."""
        first = max(start // FRAME_SAMPLES - self.scores_from, 0)
        last = min(-(-end // FRAME_SAMPLES) - self.scores_from, len(self.scores))
        return round(float(np.mean(self.scores[first:last])), 4) if last > first else None

    def _split_region(self) -> _Cut | None:
        """Cut a region too long for one window; the region stays open after the cut.

        If it has gone quiet (for less than a full pause so far), the window ends at that pause; otherwise
        at the quietest frame of the window's second half.
        """
        start = self.piece_start
        highest = min(start + self.max_window, self.samples_seen)
        if self.silence_from is None:
            end = self._quietest_point(max(start + FRAME_SAMPLES, start + self.max_window // 2), highest)
        else:
            end = min(self.silence_from + self.pad, highest)
            if end <= start:  # nothing but that pause since the last cut: skip ahead, still open
                self.piece_start = self.emitted_until = self.samples_seen - self.pad
                return None
        assert self.onset is not None  # only a region in progress is split
        quiet_from = self.silence_from if self.silence_from is not None and self.silence_from > start else end
        core = self._mean_score(max(self.onset, start), min(end, quiet_from))
        self.piece_start = self.emitted_until = end
        return _Cut(start, end, [(start, end)], [core])

    def _quietest_point(self, lowest: int, highest: int) -> int:
        """The middle of the lowest-scoring frame whose middle lies in [lowest, highest]."""
        half_frame = FRAME_SAMPLES // 2
        first = max(math.ceil((lowest - half_frame) / FRAME_SAMPLES), self.scores_from)
        last = (highest - half_frame) // FRAME_SAMPLES
        candidates = self.scores[first - self.scores_from : last - self.scores_from + 1]
        if not candidates:
            return highest
        # The last of equally quiet frames, for the longest window.
        return (last - int(np.argmin(candidates[::-1]))) * FRAME_SAMPLES + half_frame


def iter_speech_windows(blocks: Iterable[np.ndarray], options: VadOptions | None = None) -> Iterator[SpeechWindow]:
    """Speech windows of a 16 kHz mono stream, in order, each at most options.max_window_seconds long."""
    options = options or VadOptions()
    scorer = _SileroScorer()
    segmenter = _Segmenter(options)
    audio = np.zeros(0, dtype=np.float32)
    audio_start = 0  # sample index of audio[0] in the original stream
    total = 0
    for block in blocks:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        total += len(block)
        audio = np.concatenate([audio, block])
        first = segmenter.samples_seen - audio_start
        count = (len(audio) - first) // FRAME_SAMPLES
        if count:
            frames = audio[first : first + count * FRAME_SAMPLES].reshape(count, FRAME_SAMPLES)
            for cut in segmenter.push(scorer(frames)):
                yield _window(cut, audio, audio_start)
        keep = segmenter.keep_from()
        audio, audio_start = audio[keep - audio_start :], keep
    rest = audio[segmenter.samples_seen - audio_start :]
    if len(rest):  # silero scores the last partial frame zero-padded
        frame = np.zeros((1, FRAME_SAMPLES), dtype=np.float32)
        frame[0, : len(rest)] = rest
        cuts = segmenter.push(scorer(frame))
    else:
        cuts = []
    for cut in cuts + segmenter.finish(total):
        yield _window(cut, audio, audio_start)


def _window(cut: _Cut, audio: np.ndarray, audio_start: int) -> SpeechWindow:
    # A copy, so the window doesn't pin the whole buffer it was cut from.
    samples = audio[cut.start - audio_start : cut.end - audio_start].copy()
    regions = [
        SpeechRegion(start / SAMPLE_RATE, end / SAMPLE_RATE, probability)
        for (start, end), probability in zip(cut.regions, cut.probabilities, strict=True)
    ]
    return SpeechWindow(start=cut.start / SAMPLE_RATE, samples=samples, regions=regions)


def iter_fixed_windows(blocks: Iterable[np.ndarray], max_seconds: float = WINDOW_SECONDS) -> Iterator[SpeechWindow]:
    """The --no-vad path: the whole stream in consecutive windows of max_seconds (the last one shorter), as
    openai-whisper reads a file without VAD; each window is one region, timed where it is in the stream."""
    wanted = round(max_seconds * SAMPLE_RATE)
    parts: list[np.ndarray] = []
    have = start = 0

    def window() -> SpeechWindow:
        samples = np.concatenate(parts)
        first, last = start / SAMPLE_RATE, (start + len(samples)) / SAMPLE_RATE
        return SpeechWindow(start=first, samples=samples, regions=[SpeechRegion(first, last)])

    for block in blocks:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        while len(block):
            parts.append(block[: wanted - have])
            have += len(parts[-1])
            block = block[len(parts[-1]) :]
            if have == wanted:
                yield window()
                parts, have, start = [], 0, start + wanted
    if have:
        yield window()
