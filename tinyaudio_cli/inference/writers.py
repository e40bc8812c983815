"""Output writers: one small class per format, subtitle cue layout, and atomic file output (outputs.py
keeps track of which files are ours)."""

from __future__ import annotations

import html
import io
import json
import math
import os
import re
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar, TextIO

from tinyaudio_cli.errors import TinyAudioError, UsageError
from tinyaudio_cli.inference.outputs import Ownership, create_temp, not_ours_message, record
from tinyaudio_cli.inference.records import Segment, Transcript

FORMATS = ("txt", "srt", "vtt", "json", "tsv")
ALL_FORMATS = "all"
TSV_HEADER = "start\tend\ttext"
MIN_CUE_MS = 1
# Any run of dashes before ">" reads as a cue timing arrow to line-based subtitle parsers.
ARROW = re.compile(r"-{2,}>")
SAFE_ARROW = "->"


@dataclass
class SubtitleOptions:
    """Layout limits for SRT and WebVTT cues; the defaults follow common broadcast guidelines."""

    max_line_width: int = 42
    max_line_count: int = 2
    max_cue_duration: float = 7.0
    # with word times: no cue spans a pause longer than this, each word is underlined while it is said
    # (openai-whisper's --highlight_words), and a line holds at most this many words
    max_pause: float = 1.0
    highlight_words: bool = False
    max_words_per_line: int | None = None

    def __post_init__(self) -> None:
        if self.max_line_width < 1:
            raise TinyAudioError(f"max line width must be at least 1, got {self.max_line_width}")
        if self.max_line_count < 1:
            raise TinyAudioError(f"max line count must be at least 1, got {self.max_line_count}")
        if self.max_cue_duration < MIN_CUE_MS / 1000:
            raise TinyAudioError(f"max cue duration must be at least {MIN_CUE_MS} ms, got {self.max_cue_duration} s")
        if self.max_words_per_line is not None and self.max_words_per_line < 1:
            raise TinyAudioError(f"max words per line must be at least 1, got {self.max_words_per_line}")


@dataclass(frozen=True)
class Cue:
    """One subtitle on screen; times are seconds holding whole milliseconds."""

    start: float
    end: float
    lines: list[str]
    highlight: tuple[int, int] | None = None  # (line, word in line) being said, with --highlight-words


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _wrap_cues(
    words: list[str],
    fits_time: Callable[[int, int], bool],
    options: SubtitleOptions,
    breaks_before: Callable[[int, list[list[str]]], bool] = lambda index, cue: False,
) -> list[list[list[str]]]:
    """Greedily pack words into cues of lines; returns per cue its lines, each a list of words.

    A word that would overflow the line (or its word count) opens a new line, one that would overflow the line
    count or `fits_time(first, next)` (the cue covering words[first:next]) opens a new cue, as does a word for
    which `breaks_before(index, cue so far)` says so. A word is always accepted into an empty line or cue, so a
    word wider than the line stands alone.
    """
    cues: list[list[list[str]]] = []
    first = 0
    for index, word in enumerate(words):
        cue = cues[-1] if cues else None
        if cue is not None and (not fits_time(first, index + 1) or breaks_before(index, cue)):
            cue = None
        elif cue is not None and (
            len(" ".join(cue[-1])) + 1 + len(word) > options.max_line_width
            or len(cue[-1]) == (options.max_words_per_line or len(words) + 1)
        ):
            if len(cue) == options.max_line_count:
                cue = None
            else:
                cue.append([])
        if cue is None:
            cue = [[]]
            cues.append(cue)
            first = index
        cue[-1].append(word)
    return cues


def _timed_cues(segment: Segment, options: SubtitleOptions) -> list[tuple[int, int, list[list[tuple[str, int, int]]]]]:
    """Lay a segment with word times out as cues cut at word boundaries: (start ms, end ms, lines of (word,
    start ms, end ms)). A pause longer than `max_pause` always ends a cue; a sentence end does once the cue
    holds half a line."""
    words = [w for w in segment.words or [] if w.word.strip()]
    starts = [_ms(w.start) for w in words]
    ends = [max(_ms(w.end), start) for w, start in zip(words, starts, strict=True)]
    limit_ms = math.floor(round(options.max_cue_duration * 1000, 6))
    pause_ms = round(options.max_pause * 1000)

    def fits_time(first: int, stop: int) -> bool:
        return ends[stop - 1] - starts[first] <= limit_ms

    def breaks_before(index: int, cue: list[list[str]]) -> bool:
        if starts[index] - ends[index - 1] > pause_ms:
            return True
        said = sum(len(" ".join(line)) for line in cue)
        return words[index - 1].word.rstrip()[-1:] in ".?!" and said >= options.max_line_width // 2

    texts = [w.word.strip() for w in words]
    cues, first = [], 0
    for lines in _wrap_cues(texts, fits_time, options, breaks_before):
        timed_lines, index = [], first
        for line in lines:
            timed_lines.append([(texts[i], starts[i], ends[i]) for i in range(index, index + len(line))])
            index += len(line)
        cues.append((starts[first], max(ends[index - 1], starts[first]), timed_lines))
        first = index
    return cues


def _segment_cues(
    segment: Segment, start_ms: int, end_ms: int, options: SubtitleOptions
) -> list[tuple[int, int, list[str]]]:
    """Lay one segment out as (start ms, end ms, lines), sharing its time out in proportion to characters
    (with word times, `_timed_cues` cuts at the words instead)."""
    words = segment.text.split()
    if not words:
        return []
    # offsets[i] is where word i starts in " ".join(words); a cue owns the space after its last word.
    offsets = [0]
    for word in words:
        offsets.append(offsets[-1] + len(word) + 1)
    total = offsets[-1] - 1
    span = end_ms - start_ms
    limit_ms = math.floor(round(options.max_cue_duration * 1000, 6))

    def time_at(word_index: int) -> int:
        if word_index == len(words):
            return end_ms
        return start_ms + round(span * offsets[word_index] / total)

    def fits_time(first: int, stop: int) -> bool:
        return time_at(stop) - time_at(first) <= limit_ms

    cues: list[tuple[int, int, list[str]]] = []
    first = 0
    for lines in _wrap_cues(words, fits_time, options):
        stop = first + sum(len(line) for line in lines)
        cue_start = time_at(first)
        # Only a lone word can still be too long here; it is shown for the longest time allowed.
        cue_end = min(time_at(stop), cue_start + limit_ms)
        cues.append((cue_start, cue_end, [" ".join(line) for line in lines]))
        first = stop
    return cues


def subtitle_cues(segments: Sequence[Segment], options: SubtitleOptions) -> list[Cue]:
    """Split segments into cues that respect the layout limits, in strictly increasing time order.

    All arithmetic is in whole milliseconds so formatting never rounds one cue into the next. Model
    timestamps can overlap or run backwards; rather than reorder text, a cue starting before the
    previous one ends is pushed to that end, and every cue lasts at least MIN_CUE_MS.
    """
    cues: list[Cue] = []
    previous_end = 0

    def add(start: int, end: int, lines: list[str], highlight: tuple[int, int] | None = None) -> None:
        nonlocal previous_end
        start = max(start, previous_end)
        end = max(end, start + MIN_CUE_MS)
        cues.append(Cue(start / 1000, end / 1000, lines, highlight))
        previous_end = end

    for segment in segments:
        if any(w.word.strip() for w in segment.words or []):
            for cue_start, cue_end, timed_lines in _timed_cues(segment, options):
                lines = [" ".join(word for word, _, _ in line) for line in timed_lines]
                if not options.highlight_words:
                    add(cue_start, cue_end, lines)
                    continue
                # one cue per word, underlined from its start to the next word's (the text stays on screen)
                said = [(w_start, (row, column)) for row, line in enumerate(timed_lines)
                        for column, (_, w_start, _) in enumerate(line)]  # fmt: skip
                if said[0][0] > cue_start:
                    add(cue_start, said[0][0], lines)
                for k, (w_start, where) in enumerate(said):
                    add(w_start, said[k + 1][0] if k + 1 < len(said) else cue_end, lines, where)
            continue
        start_ms = _ms(segment.start)
        end_ms = max(_ms(segment.end), start_ms)
        for cue_start, cue_end, lines in _segment_cues(segment, start_ms, end_ms, options):
            add(cue_start, cue_end, lines)
    return cues


def format_timestamp(seconds: float, decimal_marker: str) -> str:
    """HH:MM:SS<marker>mmm, hours growing past two digits when needed."""
    ms = _ms(seconds)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


def _flat(text: str) -> str:
    """Collapse all whitespace so tabs and newlines cannot break line-oriented formats."""
    return " ".join(text.split())


class ResultWriter(ABC):
    extension: ClassVar[str]

    @abstractmethod
    def write(self, transcript: Transcript, stream: TextIO, options: SubtitleOptions) -> None: ...


class WriteTXT(ResultWriter):
    extension = "txt"

    def write(self, transcript: Transcript, stream: TextIO, options: SubtitleOptions) -> None:
        for segment in transcript.kept:
            if text := _flat(segment.text):
                print(text, file=stream)


class SubtitlesWriter(ResultWriter):
    decimal_marker: ClassVar[str]

    def write_header(self, stream: TextIO) -> None:
        """Nothing by default; WebVTT needs its signature line."""

    @abstractmethod
    def cue_line(self, line: str) -> str:
        """Make one line of text safe for the format."""

    def cue_index(self, index: int) -> str | None:
        return None

    def write(self, transcript: Transcript, stream: TextIO, options: SubtitleOptions) -> None:
        self.write_header(stream)
        for index, cue in enumerate(subtitle_cues(transcript.kept, options), start=1):
            if (identifier := self.cue_index(index)) is not None:
                print(identifier, file=stream)
            start = format_timestamp(cue.start, self.decimal_marker)
            end = format_timestamp(cue.end, self.decimal_marker)
            print(f"{start} --> {end}", file=stream)
            for row, line in enumerate(cue.lines):
                if cue.highlight is not None and cue.highlight[0] == row:
                    words = [self.cue_line(word) for word in line.split(" ")]
                    words[cue.highlight[1]] = f"<u>{words[cue.highlight[1]]}</u>"
                    print(" ".join(words), file=stream)
                else:
                    print(self.cue_line(line), file=stream)
            print(file=stream)


class WriteSRT(SubtitlesWriter):
    extension = "srt"
    decimal_marker = ","

    def cue_index(self, index: int) -> str | None:
        return str(index)

    def cue_line(self, line: str) -> str:
        # SRT has no escapes; soften arrows so no text line can pass for a timing line.
        return ARROW.sub(SAFE_ARROW, line)


class WriteVTT(SubtitlesWriter):
    extension = "vtt"
    decimal_marker = "."

    def write_header(self, stream: TextIO) -> None:
        print("WEBVTT\n", file=stream)

    def cue_line(self, line: str) -> str:
        # WebVTT payloads are markup: "<" and "&" must be entities, and escaping ">" also keeps "-->" out.
        return html.escape(line, quote=False)


class WriteJSON(ResultWriter):
    extension = "json"

    def write(self, transcript: Transcript, stream: TextIO, options: SubtitleOptions) -> None:
        segments: list[dict[str, object]] = []
        for segment in transcript.segments:
            record: dict[str, object] = {
                "id": segment.id,
                "start": segment.start,
                "end": segment.end,
                "text": segment.text,
                "tokens": list(segment.tokens),
                "avg_logprob": segment.avg_logprob,
                "speech_probability": segment.speech_probability,
            }
            if segment.repetition_cut:
                record["repetition_cut"] = True
            if segment.dropped is not None:  # kept here, with the reason, so a user sees what was left out
                record["dropped"] = True
                record["drop_reason"] = segment.dropped
            if segment.words is not None:
                record["words"] = [asdict(word) for word in segment.words]
            segments.append(record)
        result = {
            "text": transcript.text,
            "segments": segments,
            "language": transcript.language,
            "duration": transcript.duration,
            "model": transcript.model,
        }
        json.dump(result, stream, ensure_ascii=False)
        print(file=stream)


class WriteTSV(ResultWriter):
    """Integer milliseconds, like openai-whisper, so no locale or float format gets in the way."""

    extension = "tsv"

    def write(self, transcript: Transcript, stream: TextIO, options: SubtitleOptions) -> None:
        print(TSV_HEADER, file=stream)
        for segment in transcript.kept:
            print(f"{_ms(segment.start)}\t{_ms(segment.end)}\t{_flat(segment.text)}", file=stream)


WRITERS: dict[str, type[ResultWriter]] = {
    writer.extension: writer for writer in (WriteTXT, WriteSRT, WriteVTT, WriteJSON, WriteTSV)
}


def expand_formats(names: Sequence[str]) -> list[str]:
    """Resolve format names ("all" and comma lists included) to an ordered list without repeats."""
    formats: list[str] = []
    for item in names:
        for name in filter(None, (part.strip().lower() for part in item.split(","))):
            if name == ALL_FORMATS:
                expanded = list(FORMATS)
            elif name in WRITERS:
                expanded = [name]
            else:
                raise UsageError(f"unknown output format {name!r}", hint=f"choose from {', '.join(FORMATS)} or all")
            formats.extend(fmt for fmt in expanded if fmt not in formats)
    return formats


def _writer(fmt: str) -> ResultWriter:
    if fmt not in WRITERS:
        raise TinyAudioError(f"unknown output format {fmt!r}", hint=f"choose one of {', '.join(FORMATS)}")
    return WRITERS[fmt]()


def write_to_stream(transcript: Transcript, fmt: str, stream: TextIO, options: SubtitleOptions) -> None:
    """Write one format to an open stream, e.g. stdout for `-o -`."""
    _writer(fmt).write(transcript, stream, options)


def write_outputs(
    transcript: Transcript, targets: dict[str, Path], options: SubtitleOptions, ownership: Ownership | None = None
) -> None:
    """Write every format, then move them all into place; only files tinyaudio wrote are ever replaced.

    Every format is rendered in memory first, so a failing writer touches no file. Each then goes to a
    hidden temporary file beside its target (same file system, so os.replace is atomic), fsynced before
    the rename, so a crash leaves either the old file or the new one. An existing target that tinyaudio
    did not write (see outputs.py) stops the whole input before anything is written.
    """
    ownership = ownership or Ownership()
    rendered: dict[Path, bytes] = {}
    for fmt, path in targets.items():
        buffer = io.StringIO(newline="")
        _writer(fmt).write(transcript, buffer, options)
        rendered[path] = buffer.getvalue().encode("utf-8")
    for path in rendered:
        if os.path.lexists(path) and not ownership.is_ours(path):
            raise TinyAudioError(not_ours_message(path))
    temps: dict[Path, tuple[Path, BinaryIO]] = {}
    target: Path | None = None
    try:
        for target, data in rendered.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            temps[target] = create_temp(target.parent)
            handle = temps[target][1]
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        by_folder: dict[Path, dict[str, bytes]] = defaultdict(dict)
        for target, data in rendered.items():
            by_folder[target.parent][target.name] = data
        for folder, written in by_folder.items():
            record(folder, written)
        for target, (temp, handle) in list(temps.items()):
            if os.name == "nt":  # Windows renames no open file; elsewhere the lock is held through the rename
                handle.close()
            os.replace(temp, target)
            handle.close()
            del temps[target]
    except OSError as error:
        raise TinyAudioError(
            f"cannot write {target or error.filename}: {error.strerror or error}",
            hint="check that the output folder is writable and has free space",
        ) from error
    finally:
        for temp, handle in temps.values():  # also on KeyboardInterrupt and the CLI's SIGTERM exit
            handle.close()
            temp.unlink(missing_ok=True)


def output_path(media: Path, fmt: str, output_dir: Path | None, root: Path | None) -> Path:
    """Where one format of one input goes.

    Without output_dir, beside the input; with it, at the input's path relative to `root` (the
    directory argument it was found under, or its own folder when root is None) so inputs in
    different subfolders never collide. Only the last suffix is swapped: talk.v2.mp4 -> talk.v2.srt.
    """
    name = f"{media.stem}.{_writer(fmt).extension}"
    if output_dir is None:
        return media.parent / name
    base = media.parent if root is None else root
    try:
        relative = media.parent.relative_to(base)
    except ValueError:
        try:
            relative = media.parent.resolve().relative_to(base.resolve())
        except ValueError:
            raise TinyAudioError(f"{media} is not inside {base}") from None
    return output_dir / relative / name


def _same_file_key(path: Path) -> str:
    # Resolved, so a/../a/talk.srt is seen to be a/talk.srt.
    return str(path.resolve())


def _collision_key(path: Path) -> str:
    # Case-folded too: talk.srt and Talk.srt are one file on macOS and Windows, so count them as a clash.
    return _same_file_key(path).casefold()


def plan_outputs(
    inputs: Sequence[tuple[Path, Path | None]], formats: Sequence[str], output_dir: Path | None
) -> dict[Path, dict[str, Path]]:
    """Output paths for every (media, root) input and format, with no two inputs sharing a file.

    Inputs whose outputs would collide (talk.mp3 and talk.wav side by side) all keep their full file
    name instead (talk.mp3.srt, talk.wav.srt): neither silently wins, and the result does not depend
    on the order inputs were listed in. A clash that survives that, or an output that would overwrite
    an input, is an error. Repeated inputs are planned once.
    """
    fmts = expand_formats(formats)
    plans: dict[Path, dict[str, Path]] = {}
    seen: set[Path] = set()
    for media, root in inputs:
        if (resolved := media.resolve()) not in seen:
            seen.add(resolved)
            plans[media] = {fmt: output_path(media, fmt, output_dir, root) for fmt in fmts}

    def owners_by_path(key: Callable[[Path], str]) -> dict[str, list[Path]]:
        owners: dict[str, list[Path]] = defaultdict(list)
        for media, outputs in plans.items():
            for path in outputs.values():
                owners[key(path)].append(media)
        return owners

    clashing = {media for owners in owners_by_path(_collision_key).values() if len(owners) > 1 for media in owners}
    for media in clashing:
        plans[media] = {
            fmt: path.with_name(f"{media.name}.{WRITERS[fmt].extension}") for fmt, path in plans[media].items()
        }
    # Case-only differences are left to the file system from here on: nothing more can tell them apart.
    for path, owners in owners_by_path(_same_file_key).items():
        if len(owners) > 1:
            raise TinyAudioError(
                f"{owners[0]} and {owners[1]} would both be written to {path}",
                hint="transcribe them in separate runs or to different output folders",
            )
    input_keys = {_collision_key(media) for media in plans}
    for media, outputs in plans.items():
        for path in outputs.values():
            if _collision_key(path) in input_keys:
                raise TinyAudioError(f"output {path} for {media} would overwrite an input file")
    return plans
