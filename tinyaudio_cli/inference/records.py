"""Typed result records shared by transcription, the writers and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Word:
    """A word of a segment and when it was said (seconds in the original media), as openai-whisper gives it."""

    word: str  # with its leading space, so the words of a segment join to its text
    start: float
    end: float
    probability: float


@dataclass
class Segment:
    """One decoded stretch of speech; times are seconds in the original media."""

    id: int
    start: float
    end: float
    text: str
    tokens: list[int] = field(default_factory=list)
    repetition_cut: bool = False
    words: list[Word] | None = None  # with word timing only
    # confidence: the mean log-probability of `tokens` under greedy decoding (<= 0), and the VAD's mean speech
    # probability over the segment (0..1; None without VAD, where nothing measured it)
    avg_logprob: float | None = None
    speech_probability: float | None = None
    # why --min-confidence judged the segment invented (None: kept); a dropped segment stays in JSON only
    dropped: str | None = None


@dataclass
class Transcript:
    """Everything tinyaudio knows about one transcribed input."""

    source: str
    segments: list[Segment]
    duration: float
    model: str
    language: str = "en"

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.kept if s.text.strip())

    @property
    def kept(self) -> list[Segment]:
        """The segments --min-confidence kept: what txt, srt, vtt and tsv show."""
        return [s for s in self.segments if s.dropped is None]
