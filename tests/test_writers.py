"""Writers: every format from hand-built transcripts, checked with independent parsers and ffmpeg."""

from __future__ import annotations

import hashlib
import html
import io
import itertools
import json
import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import TextIO

import pytest
import srt
import webvtt

from tinyaudio_cli.errors import TinyAudioError
from tinyaudio_cli.inference import writers
from tinyaudio_cli.inference.records import Segment, Transcript
from tinyaudio_cli.inference.writers import (
    FORMATS,
    WRITERS,
    Cue,
    SubtitleOptions,
    expand_formats,
    output_path,
    plan_outputs,
    subtitle_cues,
    write_outputs,
    write_to_stream,
)

LONG_TEXT = " ".join(f"word{i}" if i % 7 else f"considerably{i}" for i in range(64))  # 64 words, mixed lengths
UNICODE_TEXT = "Grüße aus Köln — 東京 で会いましょう, naïve café ✓ ünïcödé"
ARROW_TEXT = "if a --> b then x <b> y & z ---> done"
LONG_WORD = "https://example.com/" + "a" * 60
DEFAULT = SubtitleOptions()
NARROW = SubtitleOptions(max_line_width=12, max_line_count=1, max_cue_duration=2.0)
OPTIONS = [DEFAULT, NARROW, SubtitleOptions(max_line_width=20, max_line_count=3, max_cue_duration=0.5)]
HAS_FFMPEG = shutil.which("ffmpeg") is not None


def make_transcript(segments: list[Segment]) -> Transcript:
    end = max((segment.end for segment in segments), default=0.0)
    return Transcript(source="talk.wav", segments=segments, duration=end, model="tiny-test")


def mixed_transcript() -> Transcript:
    """Ordered, non-overlapping segments covering every awkward case the writers must survive."""
    texts = [
        (0.0, 2.5, " Hello there, general Kenobi."),
        (3.0, 27.0, LONG_TEXT),
        (27.5, 31.0, UNICODE_TEXT),
        (31.0, 31.05, "very short with several words in it"),
        (31.2, 32.0, ""),
        (32.0, 33.0, "  \n  "),
        (33.0, 36.0, ARROW_TEXT),
        (36.0, 38.0, "first line\n\nsecond line after a blank one\tand a tab"),
        (38.0, 49.0, LONG_WORD),
        (50.0, 50.4, "ok"),
    ]
    segments = [
        Segment(id=i, start=start, end=end, text=text, tokens=[i, i + 1]) for i, (start, end, text) in enumerate(texts)
    ]
    segments[1].repetition_cut = True
    return make_transcript(segments)


def ms(value: float | timedelta) -> int:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    return round(seconds * 1000)


def cues_per_segment(cues: list[Cue], segments: list[Segment]) -> list[tuple[Segment, list[Cue]]]:
    """Give each segment the cues holding its words, checking on the way that no word is lost."""
    grouped = []
    remaining = list(cues)
    for segment in segments:
        words = segment.text.split()
        if not words:
            continue
        taken: list[Cue] = []
        while sum(len(" ".join(cue.lines).split()) for cue in taken) < len(words):
            taken.append(remaining.pop(0))
        assert " ".join(" ".join(cue.lines) for cue in taken).split() == words
        grouped.append((segment, taken))
    assert remaining == []
    return grouped


def assert_cue_rules(cues: list[Cue], options: SubtitleOptions) -> None:
    for cue in cues:
        assert 1 <= len(cue.lines) <= options.max_line_count
        for line in cue.lines:
            assert line and line == line.strip()
            assert len(line) <= options.max_line_width or " " not in line
        assert abs(ms(cue.start) - cue.start * 1000) < 1e-6 and abs(ms(cue.end) - cue.end * 1000) < 1e-6
        assert 0 < ms(cue.end) - ms(cue.start) <= ms(options.max_cue_duration)
    for before, after in itertools.pairwise(cues):
        assert ms(before.end) <= ms(after.start)


def test_registry_lists_every_format_in_order() -> None:
    assert tuple(WRITERS) == FORMATS
    assert all(WRITERS[fmt].extension == fmt for fmt in FORMATS)


def test_expand_formats() -> None:
    assert expand_formats(["srt", "all", "txt"]) == ["srt", "txt", "vtt", "json", "tsv"]
    assert expand_formats(["SRT, vtt", "srt"]) == ["srt", "vtt"]
    assert expand_formats(["all"]) == list(FORMATS)
    with pytest.raises(TinyAudioError, match="docx"):
        expand_formats(["srt", "docx"])


@pytest.mark.parametrize("bad", [{"max_line_width": 0}, {"max_line_count": 0}, {"max_cue_duration": 0}])
def test_subtitle_options_reject_impossible_limits(bad: dict) -> None:
    with pytest.raises(TinyAudioError):
        SubtitleOptions(**bad)


@pytest.mark.parametrize("options", OPTIONS, ids=["default", "narrow", "short"])
def test_cues_respect_layout_time_and_text(options: SubtitleOptions) -> None:
    transcript = mixed_transcript()
    cues = subtitle_cues(transcript.segments, options)
    assert_cue_rules(cues, options)
    for segment, owned in cues_per_segment(cues, transcript.segments):
        assert ms(segment.start) <= ms(owned[0].start)
        assert ms(owned[-1].end) <= ms(segment.end)


def test_long_segment_time_is_shared_by_characters() -> None:
    segment = Segment(id=0, start=3.0, end=27.0, text=LONG_TEXT)
    cues = subtitle_cues([segment], DEFAULT)
    assert len(cues) >= 4  # 24 s cannot fit in fewer 7 s cues
    total = len(LONG_TEXT)
    offset = 0
    for cue in cues:
        expected = 3000 + 24_000 * offset / total
        assert abs(ms(cue.start) - expected) <= 1
        offset += len(" ".join(cue.lines)) + 1
    assert ms(cues[-1].end) == 27_000
    # Contiguous inside a segment: no flicker between the cues of one sentence.
    assert all(ms(a.end) == ms(b.start) for a, b in itertools.pairwise(cues))


def test_slow_speech_is_split_further_at_words() -> None:
    # Fits one cue by layout, but 20 s on screen would break the duration limit.
    segment = Segment(id=0, start=0.0, end=20.0, text="so um well yes and then")
    cues = subtitle_cues([segment], DEFAULT)
    assert len(cues) >= 3
    assert_cue_rules(cues, DEFAULT)
    assert " ".join(" ".join(cue.lines) for cue in cues) == segment.text
    assert ms(cues[0].start) == 0 and ms(cues[-1].end) == 20_000


def test_one_word_longer_than_the_limit_is_capped() -> None:
    segment = Segment(id=0, start=38.0, end=49.0, text=LONG_WORD)
    (cue,) = subtitle_cues([segment], DEFAULT)
    assert cue.lines == [LONG_WORD]
    assert (ms(cue.start), ms(cue.end)) == (38_000, 45_000)


def test_overlapping_and_zero_length_segments_still_give_increasing_cues() -> None:
    segments = [
        Segment(id=0, start=0.0, end=5.0, text="the first one"),
        Segment(id=1, start=3.0, end=4.0, text="overlaps the first"),
        Segment(id=2, start=6.0, end=6.0, text="zero length"),
        Segment(id=3, start=5.0, end=5.5, text="goes backwards"),
        Segment(id=4, start=-1.0, end=-2.0, text="nonsense times"),
        Segment(id=5, start=7.0, end=7.0005, text="rounds onto itself"),
    ]
    cues = subtitle_cues(segments, DEFAULT)
    assert_cue_rules(cues, DEFAULT)
    assert " ".join(" ".join(cue.lines) for cue in cues).split() == " ".join(s.text for s in segments).split()


def test_rounding_never_overlaps_neighbours() -> None:
    # 1.0006 rounds up to 1001 ms while the next start 1.0004 rounds down to 1000 ms.
    segments = [
        Segment(id=0, start=0.0, end=1.0006, text="one"),
        Segment(id=1, start=1.0004, end=2.0, text="two"),
    ]
    first, second = subtitle_cues(segments, DEFAULT)
    assert ms(first.end) == 1001 and ms(second.start) == 1001


def write_all(transcript: Transcript, folder: Path, options: SubtitleOptions = DEFAULT) -> dict[str, Path]:
    targets = {fmt: folder / f"talk.{fmt}" for fmt in FORMATS}
    write_outputs(transcript, targets, options)
    return targets


@pytest.mark.parametrize("options", OPTIONS, ids=["default", "narrow", "short"])
def test_srt_parses_and_matches_the_cues(tmp_path: Path, options: SubtitleOptions) -> None:
    transcript = mixed_transcript()
    path = write_all(transcript, tmp_path, options)["srt"]
    cues = subtitle_cues(transcript.segments, options)
    parsed = list(srt.parse(path.read_text(encoding="utf-8"), ignore_errors=False))
    assert [item.index for item in parsed] == list(range(1, len(cues) + 1))
    for item, cue in zip(parsed, cues, strict=True):
        assert (ms(item.start), ms(item.end)) == (ms(cue.start), ms(cue.end))
        assert item.content == "\n".join(cue.lines).replace("--->", "->").replace("-->", "->")
    as_cues = [Cue(i.start.total_seconds(), i.end.total_seconds(), i.content.split("\n")) for i in parsed]
    assert_cue_rules(as_cues, options)
    text = path.read_text(encoding="utf-8")
    assert text.count("-->") == len(cues)  # only in timing lines


@pytest.mark.parametrize("options", OPTIONS, ids=["default", "narrow", "short"])
def test_vtt_parses_and_matches_the_cues(tmp_path: Path, options: SubtitleOptions) -> None:
    transcript = mixed_transcript()
    path = write_all(transcript, tmp_path, options)["vtt"]
    cues = subtitle_cues(transcript.segments, options)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("WEBVTT\n\n")
    assert text.count("-->") == len(cues)
    captions = list(webvtt.read(str(path)))
    assert len(captions) == len(cues)
    for caption, cue in zip(captions, cues, strict=True):
        assert caption.start == writers.format_timestamp(cue.start, ".")
        assert caption.end == writers.format_timestamp(cue.end, ".")
        assert [html.unescape(line) for line in caption.lines] == cue.lines


def test_subtitle_files_keep_every_word(tmp_path: Path) -> None:
    transcript = mixed_transcript()
    paths = write_all(transcript, tmp_path)
    words = transcript.text.split()
    srt_words = " ".join(item.content for item in srt.parse(paths["srt"].read_text("utf-8"))).split()
    vtt_words = html.unescape(" ".join(c.text for c in webvtt.read(str(paths["vtt"])))).split()
    assert vtt_words == words
    assert srt_words == [word.replace("--->", "->").replace("-->", "->") for word in words]
    assert "東京" in srt_words and "<b>" not in paths["vtt"].read_text("utf-8")


def test_subtitle_timestamp_format() -> None:
    assert writers.format_timestamp(3723.0045, ",") == "01:02:03,004"  # float noise rounds down
    assert writers.format_timestamp(0.0005, ".") == "00:00:00.000"
    assert writers.format_timestamp(360_000.25, ".") == "100:00:00.250"


def ffmpeg_reads(path: Path) -> list[srt.Subtitle]:
    """Convert with ffmpeg to SRT on stdout: proves ffmpeg parsed the file and shows what it read."""
    result = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "srt", "-"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return list(srt.parse(result.stdout))


@pytest.mark.skipif(not HAS_FFMPEG, reason="ffmpeg not installed")
@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_ffmpeg_reads_subtitles_as_written(tmp_path: Path, fmt: str) -> None:
    transcript = mixed_transcript()
    path = write_all(transcript, tmp_path, NARROW)[fmt]
    cues = subtitle_cues(transcript.segments, NARROW)
    parsed = ffmpeg_reads(path)
    assert [(ms(item.start), ms(item.end)) for item in parsed] == [(ms(c.start), ms(c.end)) for c in cues]
    read_words = " ".join(item.content for item in parsed).split()
    if fmt == "vtt":  # ffmpeg decodes the entities, so the text comes back exactly
        assert read_words == transcript.text.split()
    else:  # SRT has no escapes: arrows are softened and ffmpeg reads "<b>" as a bold tag it closes
        expected = [word.replace("--->", "->").replace("-->", "->") for word in transcript.text.split()]
        assert [word.replace("</b>", "") for word in read_words] == expected


def test_json_has_whisper_shape(tmp_path: Path) -> None:
    transcript = mixed_transcript()
    path = write_all(transcript, tmp_path)["json"]
    assert "東京".encode() in path.read_bytes()  # ensure_ascii=False, UTF-8
    data = json.loads(path.read_text(encoding="utf-8"))
    assert set(data) == {"text", "segments", "language", "duration", "model"}
    assert (data["text"], data["language"], data["model"]) == (transcript.text, "en", "tiny-test")
    assert data["duration"] == transcript.duration
    assert len(data["segments"]) == len(transcript.segments)
    for record, segment in zip(data["segments"], transcript.segments, strict=True):
        expected_keys = {"id", "start", "end", "text", "tokens", "avg_logprob", "speech_probability"}
        expected_keys |= {"repetition_cut"} if segment.id == 1 else set()
        assert set(record) == expected_keys
        assert record["id"] == segment.id and record["text"] == segment.text
        assert (record["start"], record["end"]) == (segment.start, segment.end)
        assert record["tokens"] == segment.tokens and all(type(t) is int for t in record["tokens"])
    assert data["segments"][1]["repetition_cut"] is True


def test_tsv_uses_integer_milliseconds(tmp_path: Path) -> None:
    transcript = mixed_transcript()
    lines = write_all(transcript, tmp_path)["tsv"].read_text(encoding="utf-8").splitlines()
    assert lines[0] == "start\tend\ttext"
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == len(transcript.segments)
    for (start, end, text), segment in zip(rows, transcript.segments, strict=True):
        assert (int(start), int(end)) == (round(segment.start * 1000), round(segment.end * 1000))
        assert text == " ".join(segment.text.split())
    assert rows[3][:2] == ["31000", "31050"]


def test_txt_has_one_line_per_spoken_segment(tmp_path: Path) -> None:
    transcript = mixed_transcript()
    lines = write_all(transcript, tmp_path)["txt"].read_text(encoding="utf-8").splitlines()
    assert lines == [" ".join(s.text.split()) for s in transcript.segments if s.text.strip()]
    assert lines[0] == "Hello there, general Kenobi."


def test_silence_gives_valid_empty_subtitles(tmp_path: Path) -> None:
    transcript = make_transcript([Segment(id=0, start=0.0, end=1.0, text="  ")])
    paths = write_all(transcript, tmp_path)
    assert list(srt.parse(paths["srt"].read_text("utf-8"))) == []
    assert list(webvtt.read(str(paths["vtt"]))) == []
    assert paths["txt"].read_text("utf-8") == ""


@pytest.mark.parametrize("fmt", FORMATS)
def test_stream_output_matches_file_output(tmp_path: Path, fmt: str) -> None:
    transcript = mixed_transcript()
    path = write_all(transcript, tmp_path)[fmt]
    stream = io.StringIO()
    write_to_stream(transcript, fmt, stream, DEFAULT)
    assert stream.getvalue() == path.read_text(encoding="utf-8")


def test_stream_output_needs_one_known_format() -> None:
    for fmt in ("all", "docx"):
        with pytest.raises(TinyAudioError):
            write_to_stream(mixed_transcript(), fmt, io.StringIO(), DEFAULT)


class BrokenWriter(writers.ResultWriter):
    extension = "srt"

    def write(self, transcript: Transcript, stream: TextIO, options: SubtitleOptions) -> None:
        stream.write("1\n00:00:00,000 --> ")
        raise RuntimeError("writer died mid-file")


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*") if path.name.endswith(".tmp"))


def written_by_tinyaudio(path: Path, text: str) -> str:
    """Have tinyaudio write `path` (its format from the suffix) for a one-segment transcript; its content."""
    transcript = Transcript("old.wav", [Segment(0, 0.0, 1.0, text)], 1.0, "tiny")
    write_outputs(transcript, {path.suffix.lstrip("."): path}, DEFAULT)
    return path.read_text(encoding="utf-8")


def test_failing_writer_leaves_targets_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = tmp_path / "talk.srt"
    before = written_by_tinyaudio(old, "old subtitles")
    monkeypatch.setitem(WRITERS, "srt", BrokenWriter)
    fresh = tmp_path / "talk.txt"
    with pytest.raises(RuntimeError, match="mid-file"):
        write_outputs(mixed_transcript(), {"txt": fresh, "srt": old}, DEFAULT)
    assert old.read_text(encoding="utf-8") == before
    assert not fresh.exists()  # rendered fine, but nothing moves until every format has
    assert leftovers(tmp_path) == []


def test_failing_rename_leaves_target_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_replace(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied", str(dst))

    old = tmp_path / "talk.json"
    before = written_by_tinyaudio(old, "old")
    monkeypatch.setattr(writers.os, "replace", no_replace)
    with pytest.raises(TinyAudioError, match=r"cannot write .*talk\.json"):
        write_outputs(mixed_transcript(), {"json": old}, DEFAULT)
    assert old.read_text(encoding="utf-8") == before
    assert leftovers(tmp_path) == []


def test_successful_write_replaces_and_creates_folders(tmp_path: Path) -> None:
    old = tmp_path / "talk.txt"
    written_by_tinyaudio(old, "stale")
    nested = tmp_path / "out" / "deeper" / "talk.srt"
    write_outputs(mixed_transcript(), {"txt": old, "srt": nested}, DEFAULT)
    assert old.read_text(encoding="utf-8").startswith("Hello there")
    assert srt.parse(nested.read_text(encoding="utf-8"))
    assert leftovers(tmp_path) == []
    # Written like any other new file, not with a temp file's private 0600 mode.
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert os.stat(nested).st_mode == os.stat(plain).st_mode


def test_a_file_tinyaudio_did_not_write_is_never_replaced(tmp_path: Path) -> None:
    """A reference transcript beside its audio, or an output the user edited, stays as it is."""
    reference = tmp_path / "clip.txt"
    reference.write_text("the reference transcript\n", encoding="utf-8")
    edited = tmp_path / "talk.srt"
    written_by_tinyaudio(edited, "what the model said")
    edited.write_text(edited.read_text(encoding="utf-8").replace("model", "speaker"), encoding="utf-8")
    fresh = tmp_path / "clip.json"
    for target in (reference, edited):
        before = target.read_text(encoding="utf-8")
        with pytest.raises(TinyAudioError, match="not written by tinyaudio"):
            write_outputs(mixed_transcript(), {"json": fresh, target.suffix[1:]: target}, DEFAULT)
        assert target.read_text(encoding="utf-8") == before
        assert not fresh.exists() and leftovers(tmp_path) == []


def test_outputs_written_are_recorded_by_name_and_content(tmp_path: Path) -> None:
    targets = write_all(mixed_transcript(), tmp_path)
    log = [json.loads(line) for line in (tmp_path / ".tinyaudio-outputs.jsonl").read_text().splitlines()]
    assert sorted(entry["name"] for entry in log) == sorted(path.name for path in targets.values())
    for entry in log:
        data = (tmp_path / entry["name"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["size"] == len(data)
    write_all(mixed_transcript(), tmp_path)  # ours: replaced without a word


def test_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    with pytest.raises(TinyAudioError, match="cannot write"):
        write_outputs(mixed_transcript(), {"txt": blocker / "talk.txt"}, DEFAULT)


def test_output_path_defaults_next_to_input() -> None:
    assert output_path(Path("rec/meeting.mp4"), "srt", None, None) == Path("rec/meeting.srt")
    assert output_path(Path("rec/talk.v2.mp4"), "vtt", None, Path("rec")) == Path("rec/talk.v2.vtt")
    assert output_path(Path("noext"), "txt", None, None) == Path("noext.txt")


def test_output_path_mirrors_folders_under_output_dir() -> None:
    root, out = Path("talks"), Path("out")
    first = output_path(root / "a" / "talk.wav", "srt", out, root)
    second = output_path(root / "b" / "talk.wav", "srt", out, root)
    assert (first, second) == (out / "a" / "talk.srt", out / "b" / "talk.srt")
    assert output_path(Path("x/y/talk.wav"), "json", out, None) == out / "talk.json"
    with pytest.raises(TinyAudioError):
        output_path(Path("elsewhere/talk.wav"), "srt", out, root)


def test_plan_outputs_disambiguates_same_stem_inputs(tmp_path: Path) -> None:
    inputs = [(tmp_path / name, tmp_path) for name in ("talk.wav", "talk.mp3", "other.wav", "Talk.MP4")]
    plans = plan_outputs(inputs, ["srt", "txt"], None)
    assert plans[tmp_path / "talk.wav"]["srt"] == tmp_path / "talk.wav.srt"
    assert plans[tmp_path / "talk.mp3"]["txt"] == tmp_path / "talk.mp3.txt"
    assert plans[tmp_path / "Talk.MP4"]["srt"] == tmp_path / "Talk.MP4.srt"  # case-insensitive clash
    assert plans[tmp_path / "other.wav"] == {"srt": tmp_path / "other.srt", "txt": tmp_path / "other.txt"}
    assert plan_outputs(list(reversed(inputs)), ["srt", "txt"], None) == plans
    # A clash hidden behind a differently spelled folder is still a clash.
    spelled = [(tmp_path / "talk.wav", None), (tmp_path / "x" / ".." / "talk.mp3", None)]
    assert plan_outputs(spelled, ["srt"], None)[spelled[1][0]]["srt"].name == "talk.mp3.srt"


def test_plan_outputs_mirrors_and_refuses_unfixable_clashes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    a, b = tmp_path / "a" / "talk.wav", tmp_path / "b" / "talk.wav"
    same_as_a = tmp_path / "a" / ".." / "a" / "talk.wav"
    plans = plan_outputs([(a, tmp_path), (b, tmp_path), (same_as_a, tmp_path), (a, tmp_path)], ["all"], out)
    assert list(plans) == [a, b]  # one file named two ways is planned once
    assert plans[a]["vtt"] == out / "a" / "talk.vtt" and plans[b]["vtt"] == out / "b" / "talk.vtt"
    # Two folder arguments with the same layout map onto the same files: no name can fix that.
    with pytest.raises(TinyAudioError, match="both be written"):
        plan_outputs([(a, a.parent), (b, b.parent)], ["srt"], out)


def test_plan_outputs_never_overwrites_an_input(tmp_path: Path) -> None:
    with pytest.raises(TinyAudioError, match="overwrite an input"):
        plan_outputs([(tmp_path / "notes.json", tmp_path)], ["json"], None)
