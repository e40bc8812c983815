"""Word timestamps in the outputs: JSON words in openai-whisper's shape, subtitle cues cut at word boundaries
(never across a long pause), highlighted words, words per line; and, on the real Whisper tiny.en base with the
shipped tiny-en, words timed inside their segments through `transcribe`."""

from __future__ import annotations

import io
import itertools
import json
import os
from pathlib import Path

import pytest
import srt
import webvtt
from conftest import compose, espeak, need

from tinyaudio_cli.inference.records import Segment, Transcript, Word
from tinyaudio_cli.inference.writers import SubtitleOptions, subtitle_cues, write_to_stream

REALSTACK = Path(os.environ.get("TINYAUDIO_REALSTACK_DIR", Path.home() / ".cache" / "tinyaudio" / "realstack"))
BASES = {
    "openai/whisper-tiny.en": REALSTACK / "whisper-tiny.en",
    "HuggingFaceTB/SmolLM2-135M-Instruct": REALSTACK / "smollm2-135m-instruct",
}


def timed_transcript() -> Transcript:
    """Two segments; the first has a 1.5 s pause after 'again.' and a sentence end after 'time.'."""
    said = [
        (" It", 1.0, 1.2), (" is", 1.25, 1.4), (" time.", 1.45, 1.9), (" We", 2.0, 2.1), (" start", 2.15, 2.5),
        (" again.", 2.55, 3.0), (" Now", 4.5, 4.8), (" listen", 4.85, 5.3),
    ]  # fmt: skip
    words = [Word(text, start, end, 0.9) for text, start, end in said]
    first = Segment(0, 1.0, 5.3, "It is time. We start again. Now listen", [1, 2], words=words)
    second = Segment(1, 7.0, 8.0, "Plain text without word times", [3])
    return Transcript("talk.wav", [first, second], 9.0, "test")


def written(fmt: str, options: SubtitleOptions) -> str:
    stream = io.StringIO()
    write_to_stream(timed_transcript(), fmt, stream, options)
    return stream.getvalue()


def test_json_segments_carry_words_in_openai_whispers_shape():
    data = json.loads(written("json", SubtitleOptions()))
    words = data["segments"][0]["words"]
    assert words[0] == {"word": " It", "start": 1.0, "end": 1.2, "probability": 0.9}
    assert "".join(w["word"] for w in words).strip() == data["segments"][0]["text"]
    assert "words" not in data["segments"][1]


def test_cues_start_at_words_and_never_span_a_long_pause():
    cues = list(srt.parse(written("srt", SubtitleOptions(max_line_width=20, max_pause=1.0))))
    starts = {1.0, 1.25, 1.45, 2.0, 2.15, 2.55, 4.5, 4.85}
    timed = [cue for cue in cues if cue.start.total_seconds() < 6]
    assert all(cue.start.total_seconds() in starts for cue in timed)
    # the 1.5 s pause between 'again.' (ends 3.0) and 'Now' (4.5) is never inside a cue
    assert not any(cue.start.total_seconds() < 3.5 < cue.end.total_seconds() for cue in cues)
    # 'time.' ends a sentence once the cue holds half a line: the next cue starts at 'We'
    assert [cue.content.replace("\n", " ") for cue in timed] == ["It is time.", "We start again.", "Now listen"]
    assert [cue.end.total_seconds() for cue in timed] == [1.9, 3.0, 5.3]
    assert all(a.end <= b.start for a, b in itertools.pairwise(cues))


def test_highlighted_words_are_underlined_one_cue_each(tmp_path):
    options = SubtitleOptions(max_line_width=20, highlight_words=True)
    path = tmp_path / "talk.vtt"
    path.write_text(written("vtt", options))
    cues = webvtt.read(str(path))
    underlined = [cue for cue in cues if "<u>" in cue.raw_text]
    assert len(underlined) == 8  # one per timed word
    assert underlined[0].raw_text == "<u>It</u> is time." and underlined[2].raw_text == "It is <u>time.</u>"
    assert [cue.start for cue in underlined[:3]] == ["00:00:01.000", "00:00:01.250", "00:00:01.450"]
    srt_cues = list(srt.parse(written("srt", options)))
    assert all(a.end <= b.start for a, b in itertools.pairwise(srt_cues))


def test_max_words_per_line():
    cues = subtitle_cues(timed_transcript().segments[:1], SubtitleOptions(max_words_per_line=1, max_line_count=2))
    assert all(len(line.split()) == 1 for cue in cues for line in cue.lines)
    # two one-word lines a cue; a sentence end alone ends no cue until it holds half a line
    assert [cue.lines for cue in cues] == [["It", "is"], ["time.", "We"], ["start", "again."], ["Now", "listen"]]


@pytest.mark.slow
@pytest.mark.skipif(not (REALSTACK / "BUILD_INFO.json").is_file(), reason=f"real bases not built at {REALSTACK}")
def test_tiny_en_words_lie_in_their_segments_and_start_near_the_truth(tmp_path):
    from tinyaudio_cli.model import load_model
    from tinyaudio_cli.transcribe import TranscribeOptions, transcribe

    need("espeak-ng")
    pieces: list = [0.5]
    for sentence in ("We will meet at two on Saturday.", "Where did you put the dark table?"):
        pieces += [espeak(tmp_path, sentence, speed=150), 1.5]
    speech = compose(tmp_path, "two", pieces)
    clip, truth = speech.path, [start for start, _ in speech.spans]
    model = load_model("tiny-en", device="cpu", bases=BASES)
    transcript = transcribe(model, clip, TranscribeOptions(word_timestamps=True))
    assert len(transcript.segments) == 2
    for segment, sentence_start in zip(transcript.segments, truth, strict=True):
        assert segment.words, segment
        assert "".join(w.word for w in segment.words).strip() == " ".join(segment.text.split())
        assert all(segment.start <= w.start <= w.end <= segment.end for w in segment.words)
        assert all(a.start <= b.start for a, b in itertools.pairwise(segment.words))
        assert abs(segment.words[0].start - sentence_start) < 0.2  # the first word starts with the speech
    assert transcript.segments[-1].words[-1].end <= transcript.duration
