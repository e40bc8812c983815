"""Corpus-level WER/CER scoring of (reference, hypothesis) pairs, with the breakdowns a report needs.

WER here is always the corpus rate: all word errors over all reference words, which is what the Open
ASR Leaderboard and papers report. The mean of per-utterance rates is a different (and noisier)
number that over-weights short utterances, so it is only offered as `mean_utterance_wer`.

Empty references (after normalisation) are scored, not dropped: every hypothesis word on them is an
insertion that adds to the corpus errors while adding nothing to the reference word count. Their
per-sample WER follows jiwer's convention for an empty reference: the number of insertions.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial

import jiwer

from tinyaudio_cli.errors import TinyAudioError
from tinyaudio_cli.evaluation.normalize import normalize_text

# (label, start seconds inclusive, end seconds exclusive): short clips and long windows fail differently.
DURATION_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("<5s", 0.0, 5.0),
    ("5-10s", 5.0, 10.0),
    ("10-20s", 10.0, 20.0),
    ("20-30s", 20.0, 30.0),
    (">=30s", 30.0, math.inf),
)
UNKNOWN_DURATION = "unknown"
TOP_SUBSTITUTIONS = 20


@dataclass
class Pair:
    """One utterance to score: what was said and what the model wrote."""

    id: str
    reference: str
    hypothesis: str
    duration: float | None = None


@dataclass
class ScoredSample:
    """One utterance after normalisation and alignment."""

    id: str
    reference: str
    hypothesis: str
    reference_norm: str
    hypothesis_norm: str
    duration: float | None
    errors: int
    ref_words: int
    wer: float
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    hits: int = 0


@dataclass
class BucketScore:
    """Corpus WER over the utterances whose duration falls in one bucket."""

    label: str
    samples: int
    ref_words: int
    errors: int
    wer: float
    audio_seconds: float


@dataclass
class Substitution:
    """A reference word the model kept replacing with the same wrong word."""

    reference: str
    hypothesis: str
    count: int


@dataclass
class CorpusScore:
    """Everything an evaluation report shows about one scored corpus."""

    wer: float
    cer: float
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    ref_words: int
    samples: list[ScoredSample]
    by_duration: list[BucketScore] = field(default_factory=list)
    top_substitutions: list[Substitution] = field(default_factory=list)
    empty_references: int = 0
    normalized: bool = True

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def mean_utterance_wer(self) -> float:
        """Unweighted mean of per-utterance WERs; shown for contrast, never as the headline number."""
        return sum(sample.wer for sample in self.samples) / len(self.samples)


def score_corpus(pairs: Iterable[Pair], normalize: bool = True, spelling_map_path: str | None = None) -> CorpusScore:
    """Align every pair once with jiwer and derive corpus, per-sample and bucketed scores from it.

    `normalize` runs both sides through `normalize_text` (with `spelling_map_path`'s map if given);
    without it, text is only split on whitespace, so case and punctuation count as errors.
    """
    pairs = list(pairs)
    if not pairs:
        raise TinyAudioError("Nothing to score: no transcribed samples", hint="check the dataset and --max-samples")
    prepare = partial(normalize_text, spelling_map_path=spelling_map_path) if normalize else _collapse_spaces
    references = [prepare(pair.reference) for pair in pairs]
    hypotheses = [prepare(pair.hypothesis) for pair in pairs]

    words = jiwer.process_words(references, hypotheses)
    samples = [
        _scored_sample(pair, reference, hypothesis, alignment, len(ref_tokens))
        for pair, reference, hypothesis, alignment, ref_tokens in zip(
            pairs, references, hypotheses, words.alignments, words.references, strict=True
        )
    ]
    ref_words = sum(sample.ref_words for sample in samples)
    return CorpusScore(
        wer=_rate(words.substitutions + words.deletions + words.insertions, ref_words, words.insertions),
        cer=jiwer.process_characters(references, hypotheses).cer,
        substitutions=words.substitutions,
        deletions=words.deletions,
        insertions=words.insertions,
        hits=words.hits,
        ref_words=ref_words,
        samples=samples,
        by_duration=score_by_duration(samples),
        top_substitutions=top_substitutions(words),
        empty_references=sum(1 for sample in samples if sample.ref_words == 0),
        normalized=normalize,
    )


def score_by_duration(samples: list[ScoredSample]) -> list[BucketScore]:
    """Corpus WER per duration bucket, in bucket order; buckets with no samples are left out."""
    groups: dict[str, list[ScoredSample]] = {}
    for sample in samples:
        groups.setdefault(duration_bucket(sample.duration), []).append(sample)
    order = [label for label, _, _ in DURATION_BUCKETS] + [UNKNOWN_DURATION]
    return [_bucket_score(label, groups[label]) for label in order if label in groups]


def duration_bucket(duration: float | None) -> str:
    """The label of the bucket holding `duration` seconds."""
    if duration is None or math.isnan(duration):
        return UNKNOWN_DURATION
    for label, start, end in DURATION_BUCKETS:
        if start <= duration < end:
            return label
    return DURATION_BUCKETS[0][0]  # negative durations only come from broken metadata


def top_substitutions(words: jiwer.WordOutput, limit: int = TOP_SUBSTITUTIONS) -> list[Substitution]:
    """The most frequent (reference word -> hypothesis word) substitutions across the corpus."""
    counts: Counter[tuple[str, str]] = Counter()
    for alignment, reference, hypothesis in zip(words.alignments, words.references, words.hypotheses, strict=True):
        for chunk in alignment:
            if chunk.type == "substitute":
                ref_span = reference[chunk.ref_start_idx : chunk.ref_end_idx]
                hyp_span = hypothesis[chunk.hyp_start_idx : chunk.hyp_end_idx]
                counts.update(zip(ref_span, hyp_span, strict=True))
    return [Substitution(ref, hyp, count) for (ref, hyp), count in counts.most_common(limit)]


def rtfx(audio_seconds: float, model_seconds: float) -> float:
    """Inverse real-time factor: seconds of audio transcribed per second of model time (higher is faster).

    Zero model time (nothing ran, or a clock too coarse) gives inf rather than a division error.
    """
    if model_seconds <= 0:
        return math.inf if audio_seconds > 0 else 0.0
    return audio_seconds / model_seconds


def _scored_sample(
    pair: Pair,
    reference_norm: str,
    hypothesis_norm: str,
    alignment: list[jiwer.AlignmentChunk],
    ref_words: int,
) -> ScoredSample:
    counts = Counter[str]()
    for chunk in alignment:
        # Substitutions, deletions and hits are counted on the reference side; insertions have none.
        span = chunk.ref_end_idx - chunk.ref_start_idx
        counts[chunk.type] += span if chunk.type != "insert" else chunk.hyp_end_idx - chunk.hyp_start_idx
    errors = counts["substitute"] + counts["delete"] + counts["insert"]
    return ScoredSample(
        id=pair.id,
        reference=pair.reference,
        hypothesis=pair.hypothesis,
        reference_norm=reference_norm,
        hypothesis_norm=hypothesis_norm,
        duration=pair.duration,
        errors=errors,
        ref_words=ref_words,
        wer=_rate(errors, ref_words, counts["insert"]),
        substitutions=counts["substitute"],
        deletions=counts["delete"],
        insertions=counts["insert"],
        hits=counts["equal"],
    )


def _bucket_score(label: str, samples: list[ScoredSample]) -> BucketScore:
    ref_words = sum(sample.ref_words for sample in samples)
    errors = sum(sample.errors for sample in samples)
    return BucketScore(
        label=label,
        samples=len(samples),
        ref_words=ref_words,
        errors=errors,
        wer=_rate(errors, ref_words, sum(sample.insertions for sample in samples)),
        audio_seconds=sum(sample.duration or 0.0 for sample in samples),
    )


def _rate(errors: int, ref_words: int, insertions: int) -> float:
    # With no reference words jiwer reports the insertion count; follow it so both always agree.
    return errors / ref_words if ref_words else float(insertions)


def _collapse_spaces(text: str) -> str:
    return " ".join(text.split())
