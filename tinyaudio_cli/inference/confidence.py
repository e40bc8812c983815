"""Which segments `--min-confidence` judges invented: text a model wrote over something that was not speech.

The rule is the one `benchmarks/confidence.py` measured best: a segment goes when Silero's mean speech
probability over it is under the threshold. The LM's own avg_logprob is reported but not used: a small LM is
often surest of itself exactly when it invents (a fluent loop over noise scores near 0), so on the shipped
model it tells invented text from speech no better than chance. Without VAD (--no-vad) nothing measured the
speech, and every segment is kept.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import UsageError
from .records import Segment

# Measured (benchmarks/confidence.py, see the README): the default keeps every real speech segment measured
DEFAULT_MIN_SPEECH_PROBABILITY: float | None = 0.6
DEFAULT_MIN_AVG_LOGPROB: float | None = None  # not part of the rule (see above)
DEFAULT_MIN_CONFIDENCE = DEFAULT_MIN_SPEECH_PROBABILITY


def check_min_confidence(value: float) -> float:
    """A usable --min-confidence: a probability, 0 keeping everything."""
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise UsageError(f"--min-confidence must be between 0 and 1 (0 keeps every segment), got {value:g}")
    return value


def drop_reason(segment: Segment, min_confidence: float) -> str | None:
    """Why the segment counts as invented under `min_confidence`, or None to keep it."""
    probability = segment.speech_probability
    if min_confidence > 0 and probability is not None and probability < min_confidence:
        return f"speech probability {probability:.2f} < {min_confidence:g}"
    return None


def mark_dropped(segments: Iterable[Segment], min_confidence: float) -> None:
    for segment in segments:
        segment.dropped = drop_reason(segment, min_confidence)
