"""Samples before their audio is decoded, and the two listed sources: manifests and folders of media files.

A `SampleEntry` is one utterance as every source yields it, to `eval` and to `train` alike: an id, the
reference text, how to read the audio (16 kHz mono float32) and how long it is, estimated without decoding,
so processes sharing a source decode only their own share. `load()` turns it into an `EvalSample`, whose
audio is None exactly when `error` says why: a sample that cannot be used is still yielded and counted,
never dropped silently (that would flatter the WER, or hide a half-copied training set).

Folders follow one rule: every media file under the folder is a sample, its reference the same-named
`.txt` beside it. A media file without its `.txt` is still listed, with `problem` set and no text: eval
reports it as a failed sample, train skips it and counts it with the empty transcripts.
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..constants import SAMPLE_RATE
from ..errors import TinyAudioError
from .naming import MANIFEST_SUFFIXES

Item = TypeVar("Item")


@dataclass
class EvalSample:
    """One utterance to transcribe and score; `audio` is None exactly when `error` says why."""

    id: str
    audio: np.ndarray | None
    text: str
    duration: float
    error: str | None = None


@dataclass
class SampleEntry:
    """A sample before its audio is decoded: enough to share samples out by length, or skip them, cheaply."""

    id: str
    text: str
    read: Callable[[], np.ndarray]  # decodes the audio; raises TinyAudioError when it cannot
    length: Callable[[], float]  # from the header, a duration column or the encoded size; never decodes
    stated_seconds: float | None = None  # the length the data states (a duration column): free to read
    problem: str | None = None  # why this sample cannot be used whatever its audio (no reference beside it)

    @property
    def seconds(self) -> float:
        """The estimated length, read only when asked for (one process never needs it)."""
        return self.length()

    def load(self) -> EvalSample:
        """The sample with its audio decoded, or with the reason it could not be."""
        if self.problem is not None:
            return EvalSample(self.id, None, self.text, 0.0, self.problem)
        try:
            audio = self.read()
        except TinyAudioError as error:
            return EvalSample(self.id, None, self.text, self.stated_seconds or 0.0, error.message)
        return EvalSample(self.id, audio, self.text, len(audio) / SAMPLE_RATE)


class CountedEntries(Iterator[SampleEntry]):
    """Entries whose number is known before any is read (a manifest, a folder), so progress can show it."""

    def __init__(self, entries: Iterable[SampleEntry], total: int) -> None:
        self._entries = iter(entries)
        self.total = total

    def __next__(self) -> SampleEntry:
        return next(self._entries)


def decoded(entries: Iterable[SampleEntry]) -> Iterator[EvalSample]:
    """Each entry's sample, its audio decoded."""
    return (entry.load() for entry in entries)


def file_entry(sample_id: str, path: Path, text: str) -> SampleEntry:
    """A sample whose audio is a media file (read as `transcribe` reads it; its length from the header)."""
    from ..audio.media import header_seconds, load_audio

    return SampleEntry(sample_id, text, lambda: load_audio(path), lambda: header_seconds(path))


def manifest_listing(path: Path) -> list[SampleEntry]:
    """Every entry of a JSONL, CSV or TSV manifest with `audio` (relative to the manifest), `text` and
    optionally `id` fields; a malformed manifest fails as a whole."""
    kind = MANIFEST_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise TinyAudioError(f"Unsupported manifest {path.name}", hint=f"use one of: {', '.join(MANIFEST_SUFFIXES)}")
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            if kind == "json":
                records = _json_lines(handle)
            else:  # line 1 is the header
                records = list(enumerate(csv.DictReader(handle, delimiter=kind), start=2))
    except OSError as error:
        raise TinyAudioError(f"Cannot read manifest {path}: {error}", hint="check the path") from error
    return [_manifest_entry(path, number, record) for number, record in records]


def folder_listing(root: Path) -> list[SampleEntry]:
    """Every media file under `root` (recursively, in a stable order), with the same-named `.txt` beside it as
    its reference; one without its `.txt` is listed with `problem` set (see the module's docstring)."""
    from ..audio.media import find_media

    if not root.is_dir():
        raise TinyAudioError(f"{root} is not a folder", hint="pass a folder of media files with .txt references")
    entries = [_folder_entry(media.relative_to(root).with_suffix("").as_posix(), media) for media in find_media([root])]
    if not entries:
        raise TinyAudioError(f"No media files in {root}", hint="put audio files and same-named .txt files there")
    return entries


def manifest_entries(
    path: str | Path, max_samples: int | None = None, shuffle: bool = False, seed: int = 0
) -> CountedEntries:
    """A manifest's samples (see manifest_listing), optionally shuffled and cut to `max_samples`."""
    chosen = select(manifest_listing(Path(path)), max_samples, shuffle, seed)
    return CountedEntries(chosen, len(chosen))


def folder_entries(
    path: str | Path, max_samples: int | None = None, shuffle: bool = False, seed: int = 0
) -> CountedEntries:
    """A folder's samples (see folder_listing), optionally shuffled and cut to `max_samples`."""
    chosen = select(folder_listing(Path(path)), max_samples, shuffle, seed)
    return CountedEntries(chosen, len(chosen))


def select(entries: list[Item], max_samples: int | None, shuffle: bool, seed: int) -> list[Item]:
    """`entries`, shuffled with `seed` when asked, then the first `max_samples` of them."""
    if shuffle:
        entries = entries.copy()
        random.Random(seed).shuffle(entries)
    return entries[:max_samples] if max_samples is not None else entries


def _folder_entry(sample_id: str, media: Path) -> SampleEntry:
    reference = media.with_suffix(".txt")
    if not reference.is_file():
        problem = f"no reference file {reference.name} next to {media.name}"
        return SampleEntry(sample_id, "", partial(_refuse, problem), lambda: 0.0, problem=problem)
    return file_entry(sample_id, media, reference.read_text(encoding="utf-8").strip())


def _refuse(problem: str) -> np.ndarray:
    raise TinyAudioError(problem)


def _json_lines(handle: Iterable[str]) -> list[tuple[int, dict[str, Any]]]:
    records = []
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as error:
            raise TinyAudioError(f"Line {number} of the manifest is not JSON: {error}") from error
    return records


def _manifest_entry(manifest: Path, number: int, record: Any) -> SampleEntry:
    if not isinstance(record, dict) or not record.get("audio") or record.get("text") is None:
        raise TinyAudioError(
            f"Entry {number} of {manifest.name} needs 'audio' and 'text' fields",
            hint='each entry looks like {"audio": "clips/a.wav", "text": "hello", "id": "a"}',
        )
    # Joining onto the manifest's folder leaves absolute paths as they are.
    audio = manifest.parent / Path(os.path.expanduser(str(record["audio"])))
    return file_entry(str(record.get("id") or record["audio"]), audio, str(record["text"]))
