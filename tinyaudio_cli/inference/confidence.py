"""Which segments `--min-confidence` judges invented: text a model wrote over something that was not speech.

The rule, chosen by measurement (benchmarks/confidence.py): a segment goes when Silero's mean speech probability
over its speech is under the threshold. The LM's own avg_logprob is reported but not used: a small LM is often
surest of itself exactly when it invents (a fluent loop over noise scores near 0): on tiny-en the threshold
that removes 77 % of the segments invented without VAD (-1.0) also removes 59 % of real speech segments; on a
checkpoint retrained on human speech (505 steps), -1.5 removes 99 % of them but 74 % of real speech. Without VAD
(--no-vad) nothing measured the speech, and every segment is kept.
"""

from __future__ import annotations

from ..errors import UsageError
from .records import Segment

# Silero's own speech threshold: a segment goes when, on average over its speech, the VAD scored it as less
# likely speech than not. Measured (benchmarks/confidence.py, 2026-11-30, the same for both checkpoints, as the
# VAD decides): it removed 9 of the 15 segments invented over music the VAD let through, and 2 of 232 real
# speech segments (spoken digits under 0.6 s, one of them right); 0.6 removed 12 of 15 but 4 of 232 (another
# right digit among them), and a real word lost unseen is worse than an invented one kept.
DEFAULT_MIN_SPEECH_PROBABILITY: float | None = 0.5
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
