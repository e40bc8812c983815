"""Forced alignment of a transcript the user already has (`tinyaudio align`): subtitles from a script, karaoke,
dubbing, checking a data set.

The voice detector cuts the media into speech regions (each at most 30 s, the encoder's window). A long text
cannot be aligned over a whole recording at once, so it is first spread over the regions: the Whisper base's
own decoder transcribes each region roughly, and the given words are matched to those rough words in order
(difflib); words with no match go with their neighbours. Then each region's share of the text is timed word by
word (`model.alignment`). The mean probability the decoder gives the words is the file's alignment score: text
that does not belong to the audio scores low, and the caller warns.

Each file is read twice (once to spread the text, once to time it), so that a long recording is never held in
memory whole.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..audio.vad import VadOptions
from ..constants import SAMPLE_RATE
from ..errors import TinyAudioError
from ..model.alignment import FRAMES_PER_SECOND
from ..model.modeling import TinyAudioModel
from .records import Segment, Transcript, Word
from .transcribe import EncoderWindow, TranscribeOptions, WordRequest, pack_regions, speech_windows, timed_words

# Measured on matching and unrelated texts (see tests/test_align.py): the mean word probability of a text that
# belongs to the audio stays well above this, and of an unrelated text well below.
LOW_SCORE = 0.2
MIN_WORD_PROBABILITY = 1e-4  # the resolution of a word's stored probability


@dataclass(frozen=True)
class AlignOptions:
    vad: VadOptions | None = field(default_factory=VadOptions)  # None: consecutive 30 s windows
    batch_size: int = 8  # windows encoded at a time


@dataclass
class AlignResult:
    path: Path
    transcript: Transcript | None = None
    score: float = 0.0  # mean probability of the aligned words
    error: str | None = None

    @property
    def low_score(self) -> bool:
        return self.transcript is not None and self.score < LOW_SCORE


def read_text(path: Path) -> str:
    """A transcript file as words: plain text, or the cue text of an SRT/VTT file (timings and numbers dropped)."""
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise TinyAudioError(f"cannot read the text {path}: {error}") from None
    if path.suffix.lower() in (".srt", ".vtt"):
        lines = [
            line
            for line in raw.splitlines()
            if "-->" not in line and not line.strip().isdigit() and line.strip() != "WEBVTT"
        ]
        raw = re.sub(r"<[^>]+>", "", "\n".join(lines))
    text = " ".join(raw.split())
    if not text:
        raise TinyAudioError(f"{path} holds no words to align")
    return text


def align_file(model: TinyAudioModel, media: Path, text: str, options: AlignOptions | None = None) -> AlignResult:
    """Time the words of `text` in `media`; a file that cannot be read is an AlignResult with an error."""
    options = options or AlignOptions()
    words = text.split()
    try:
        rough = [
            model.aligner().transcribe_frames(states, _token_limit(window))
            for window, states, _, _ in _encoded(model, media, options)
        ]
        shares = spread_words(words, rough)
        segments: list[Segment] = []
        probabilities: list[float] = []
        duration = 0.0
        requests: list[WordRequest] = []

        def flush() -> None:  # the regions of an encoder batch are timed together
            for (_, _, placement, share), timed in zip(requests, timed_words(requests, model), strict=True):
                probabilities.extend(word.probability for word in timed)
                region = placement.region
                segment = Segment(len(segments), region.start, region.end, share, words=timed)
                segment.avg_logprob = _avg_logprob(timed)
                segment.speech_probability = region.speech_probability  # the VAD's, as transcribe gives it
                segments.append(segment)
            requests.clear()

        for index, (window, states, _, _) in enumerate(_encoded(model, media, options)):
            placement = window.placements[0]
            duration = max(duration, placement.region.end)
            share = " ".join(shares[index]) if index < len(shares) else ""
            if share:
                requests.append((states, window.samples, placement, share))
            if len(requests) == options.batch_size:
                flush()
        flush()
    except TinyAudioError as error:
        return AlignResult(media, error=error.message)
    transcript = Transcript(str(media), segments, _duration(media, duration), getattr(model, "name", "tinyaudio"))
    return AlignResult(media, transcript, float(np.mean(probabilities)) if probabilities else 0.0)


def _avg_logprob(words: Sequence[Word]) -> float | None:
    """A segment's confidence in transcribe's terms: there the mean log-probability of the LM's tokens, here the
    mean log of the probabilities the Whisper decoder gives the given words (each the mean over its tokens).
    Words keep 4 decimals, so a word shown as probability 0 counts as 0.0001 (a log, not -inf)."""
    if not words:
        return None
    return round(float(np.mean([math.log(max(word.probability, MIN_WORD_PROBABILITY)) for word in words])), 4)


def spread_words(words: Sequence[str], hypotheses: Sequence[str]) -> list[list[str]]:
    """The given words shared out over regions in order, by matching them to each region's rough transcript;
    an unmatched word goes with the region of the last matched word before it (or the first after it)."""
    if not hypotheses:
        return []
    spoken = [(_plain(word), region) for region, text in enumerate(hypotheses) for word in text.split()]
    matcher = difflib.SequenceMatcher(None, [_plain(w) for w in words], [w for w, _ in spoken], autojunk=False)
    region_of: list[int | None] = [None] * len(words)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            region_of[block.a + k] = spoken[block.b + k][1]
    known = [region for region in region_of if region is not None]
    current = known[0] if known else 0
    shares: list[list[str]] = [[] for _ in hypotheses]
    for word, region in zip(words, region_of, strict=True):
        current = region if region is not None else current
        shares[current].append(word)
    return shares


def _token_limit(window: EncoderWindow) -> int:
    """Enough tokens for fast speech over the region (about 8 a second), so a decoder stuck in a loop stops."""
    return 16 + math.ceil(15 * window.placements[0].length / SAMPLE_RATE)


def _plain(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())


EncodedRegion = tuple[EncoderWindow, torch.Tensor, int, int]  # a window, its encoder states, the region's frames


def _encoded(model: TinyAudioModel, media: Path, options: AlignOptions) -> Iterator[EncodedRegion]:
    """Each speech region in a window of its own with the encoder's states of that window and the frames
    [first, last) that hold the region."""
    transcribe_options = TranscribeOptions(vad=options.vad)
    windows = pack_regions(0, speech_windows(media, transcribe_options, lambda n: None), model.samples_per_token, False)
    hop = SAMPLE_RATE // FRAMES_PER_SECOND
    batch: list[EncoderWindow] = []

    def run() -> Iterator[EncodedRegion]:
        with torch.inference_mode():
            states = model.encoder_states(model.features([window.samples for window in batch]))
        for window, window_states in zip(batch, states, strict=True):
            placement = window.placements[0]
            first = placement.offset // hop
            last = min(len(window_states), math.ceil((placement.offset + placement.length) / hop))
            yield window, window_states, first, last
        batch.clear()

    for window in windows:
        batch.append(window)
        if len(batch) == options.batch_size:
            yield from run()
    if batch:
        yield from run()


def _duration(media: Path, fallback: float) -> float:
    from ..audio.media import media_seconds

    seconds = media_seconds(media)
    return seconds if seconds > 0 else fallback
