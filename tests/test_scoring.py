"""Corpus scoring: totals agree with jiwer, per-sample and bucketed numbers add up, edge cases hold."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import jiwer
import pytest

from tinyaudio_cli.errors import TinyAudioError
from tinyaudio_cli.evaluation.normalize import normalize_text
from tinyaudio_cli.evaluation.scoring import Pair, duration_bucket, rtfx, score_corpus

os.environ["HF_HUB_OFFLINE"] = "1"

PAIRS = [
    Pair("a", "The colour of the sky is blue.", "the color of the sky is glue", 3.2),
    Pair("b", "Mr. Smith paid twenty five dollars.", "mister smith paid $25 dollars", 7.5),
    Pair("c", "Uh, I think it's <inaudible> fine.", "i think it is fine fine", 12.0),
    Pair("d", "one small step", "one step for man", 25.0),
    Pair("e", "Hello world", "", 31.0),
]


def test_corpus_totals_match_jiwer_on_normalised_text() -> None:
    score = score_corpus(PAIRS)
    references = [normalize_text(pair.reference) for pair in PAIRS]
    hypotheses = [normalize_text(pair.hypothesis) for pair in PAIRS]
    expected = jiwer.process_words(references, hypotheses)

    assert score.wer == pytest.approx(expected.wer)
    assert score.cer == pytest.approx(jiwer.cer(references, hypotheses))
    assert (score.substitutions, score.deletions, score.insertions, score.hits) == (
        expected.substitutions,
        expected.deletions,
        expected.insertions,
        expected.hits,
    )
    assert score.ref_words == sum(len(reference.split()) for reference in references)
    assert [sample.reference_norm for sample in score.samples] == references
    assert [sample.hypothesis_norm for sample in score.samples] == hypotheses
    assert score.wer > 0


def test_per_sample_scores_match_jiwer_and_add_up() -> None:
    score = score_corpus(PAIRS)
    for sample in score.samples:
        alone = jiwer.process_words(sample.reference_norm, sample.hypothesis_norm)
        assert sample.wer == pytest.approx(alone.wer)
        assert sample.errors == alone.substitutions + alone.deletions + alone.insertions
        assert (sample.substitutions, sample.deletions, sample.insertions, sample.hits) == (
            alone.substitutions,
            alone.deletions,
            alone.insertions,
            alone.hits,
        )
    assert sum(sample.errors for sample in score.samples) == score.errors
    assert [sample.id for sample in score.samples] == list("abcde")


def test_corpus_wer_is_not_the_mean_of_utterance_wers() -> None:
    # One wrong word in a one-word utterance, nine right words in another: 1/10 errors, not (1 + 0) / 2.
    pairs = [
        Pair("short", "yes", "no"),
        Pair("long", "one two three four five six seven eight nine", "one two three four five six seven eight nine"),
    ]
    score = score_corpus(pairs, normalize=False)
    assert score.wer == pytest.approx(0.1)
    assert score.mean_utterance_wer == pytest.approx(0.5)
    assert score.wer == pytest.approx(jiwer.wer([p.reference for p in pairs], [p.hypothesis for p in pairs]))


def test_empty_reference_counts_its_words_as_insertions() -> None:
    pairs = [Pair("silence", "<inaudible>", "oh hello there"), Pair("speech", "good morning", "good morning")]
    score = score_corpus(pairs)
    silence = score.samples[0]
    assert silence.reference_norm == ""
    assert (silence.ref_words, silence.insertions, silence.errors) == (0, 3, 3)
    assert silence.wer == 3.0  # jiwer's convention for an empty reference
    assert score.empty_references == 1
    assert score.wer == pytest.approx(3 / 2)  # three insertions over the two reference words there are


def test_only_empty_references() -> None:
    score = score_corpus([Pair("x", "", "a b"), Pair("y", "", "")], normalize=False)
    assert score.ref_words == 0
    assert score.wer == jiwer.wer(["", ""], ["a b", ""]) == 2.0


def test_without_normalisation_case_and_punctuation_count() -> None:
    pair = Pair("a", "Hello, world.", "hello world")
    assert score_corpus([pair], normalize=False).wer == 1.0
    assert score_corpus([pair]).wer == 0.0
    assert score_corpus([Pair("b", "  two   spaces ", "two spaces")], normalize=False).wer == 0.0


def test_spelling_map_reaches_the_normaliser(tmp_path: Path) -> None:
    path = tmp_path / "normalizer.json"
    path.write_text(json.dumps({"colour": "hue"}))
    pair = Pair("a", "colour", "hue")
    assert score_corpus([pair]).wer == 1.0
    assert score_corpus([pair], spelling_map_path=str(path)).wer == 0.0


def test_wer_by_duration_bucket() -> None:
    durations = [1.0, 4.99, 5.0, 15.0, 29.9, 30.0, 120.0, None]
    pairs = [Pair(str(i), "a b", "a c" if i % 2 else "a b", duration) for i, duration in enumerate(durations)]
    score = score_corpus(pairs, normalize=False)
    buckets = {bucket.label: bucket for bucket in score.by_duration}
    assert list(buckets) == ["<5s", "5-10s", "10-20s", "20-30s", ">=30s", "unknown"]
    assert [buckets[label].samples for label in buckets] == [2, 1, 1, 1, 2, 1]
    # <5s holds samples 0 (right) and 1 (one of two words wrong): corpus WER 1/4 within the bucket.
    assert buckets["<5s"].wer == pytest.approx(0.25)
    assert buckets["<5s"].audio_seconds == pytest.approx(5.99)
    assert buckets[">=30s"].errors == 1
    assert sum(bucket.errors for bucket in buckets.values()) == score.errors
    assert duration_bucket(float("nan")) == "unknown"


def test_most_frequent_substitutions() -> None:
    pairs = [Pair("a", "red red red cat", "bed bed bed cat"), Pair("b", "red dog", "bed log")]
    pairs += [Pair(f"w{i}", f"word{i}", f"other{i}") for i in range(25)]
    score = score_corpus(pairs, normalize=False)
    top = score.top_substitutions
    assert len(top) == 20
    assert (top[0].reference, top[0].hypothesis, top[0].count) == ("red", "bed", 4)
    assert (top[1].reference, top[1].hypothesis, top[1].count) == ("dog", "log", 1)
    assert all(sub.count == 1 for sub in top[1:])


def test_rtfx() -> None:
    assert rtfx(60.0, 2.0) == 30.0
    assert rtfx(10.0, 0.0) == math.inf
    assert rtfx(0.0, 0.0) == 0.0


def test_nothing_to_score() -> None:
    with pytest.raises(TinyAudioError):
        score_corpus([])
