"""Output files on disk: temporary names, which files tinyaudio wrote, and whether a folder can take them.

tinyaudio never replaces a file it did not write. Every output it writes is recorded, by name and SHA-256
of its bytes, in a hidden log in the output's folder (OWNERSHIP_LOG, one JSON object a line, appended
under a lock so parallel ranks can share a folder). An existing file counts as ours only while its bytes
are bytes we recorded for that name: a reference transcript beside its audio, or an output the user
edited afterwards, is never replaced.

Temporary files are `.tinyaudio-<16 hex>.tmp` beside their target (31 bytes whatever the target's name,
so a long media name never makes one too long). The writer holds an exclusive lock on each while it
lives; a temp nobody holds a lock on is a leftover of a killed run and `remove_stale_temps` deletes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tinyaudio_cli.errors import TinyAudioError, UsageError

try:
    import fcntl
except ImportError:  # Windows: no locks; an open file cannot be deleted there anyway
    fcntl = None  # type: ignore[assignment]

OWNERSHIP_LOG = ".tinyaudio-outputs.jsonl"
TEMP_PREFIX = ".tinyaudio-"
TEMP_SUFFIX = ".tmp"
TEMP_NAME = re.compile(r"\.tinyaudio-[0-9a-f]{16}\.tmp")
# What earlier versions named their temps (".talk.srt.1a2b3c4d.tmp"); only matched for targets of this run.
LEGACY_TEMP = r"\.{name}\.[0-9a-f]{{8}}\.tmp"


def not_ours_message(target: Path) -> str:
    return (
        f"{target} was not written by tinyaudio (or was edited since), so it is not replaced; "
        "write elsewhere with -o DIR"
    )


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _lock(handle: BinaryIO, wait: bool) -> bool:
    """An exclusive lock on an open file; False when another open file holds it and `wait` is off."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def create_temp(folder: Path) -> tuple[Path, BinaryIO]:
    """A new, locked, empty temporary file in `folder`, open for writing; the caller closes and removes it."""
    while True:
        path = folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"
        # Opening by name (not mkstemp) keeps the usual umask-derived permissions on the result.
        handle = open(path, "xb")  # noqa: SIM115 - it outlives this function
        _lock(handle, wait=True)
        # A cleaner in another process may have taken the lock in the instant between open and lock, and
        # removed the file: then this handle points at a file without a name, so start again.
        try:
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                return path, handle
        except FileNotFoundError:
            pass
        handle.close()


def remove_stale_temps(folder: Path, legacy_targets: Iterable[str] = ()) -> list[Path]:
    """Delete temps in `folder` that no live writer holds (leftovers of a killed run); the paths removed.

    Only names of our exact pattern are touched: `.tinyaudio-<16 hex>.tmp`, and the older
    `.<target>.<8 hex>.tmp` for the targets named in `legacy_targets`.
    """
    legacy = [re.compile(LEGACY_TEMP.format(name=re.escape(name))) for name in legacy_targets]
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not (TEMP_NAME.fullmatch(entry.name) or any(p.fullmatch(entry.name) for p in legacy)):
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        path = Path(entry.path)
        try:
            with open(path, "rb") as handle:
                if _lock(handle, wait=False):
                    path.unlink()
                    removed.append(path)
        except OSError:
            continue  # gone already, or in use (Windows): not ours to force
    return removed


class Ownership:
    """Which files in which folders tinyaudio wrote; each folder's log is read once."""

    def __init__(self) -> None:
        self._logs: dict[Path, dict[str, set[str]]] = {}

    def recorded(self, folder: Path) -> dict[str, set[str]]:
        key = folder.absolute()
        if key not in self._logs:
            self._logs[key] = read_log(folder)
        return self._logs[key]

    def is_ours(self, path: Path) -> bool:
        """Whether `path` holds bytes tinyaudio wrote under that name (False for anything not a file)."""
        digests = self.recorded(path.parent).get(path.name)
        if not digests or not path.is_file() or path.is_symlink():
            return False
        try:
            return digest(path.read_bytes()) in digests
        except OSError:
            return False


def read_log(folder: Path) -> dict[str, set[str]]:
    """name -> SHA-256 digests tinyaudio wrote under that name in `folder`; damaged lines are skipped."""
    recorded: dict[str, set[str]] = {}
    try:
        text = (folder / OWNERSHIP_LOG).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return recorded
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            name, sha = entry["name"], entry["sha256"]
        except (ValueError, TypeError, KeyError):
            continue  # a line cut short by a crash: nothing it named counts as ours
        if isinstance(name, str) and isinstance(sha, str):
            recorded.setdefault(name, set()).add(sha)
    return recorded


def record(folder: Path, written: dict[str, bytes]) -> None:
    """Log `written` (file name -> the bytes it is about to hold) as ours, before the files take their names:
    a crash in between then leaves files that are still recognised, never unrecorded ones."""
    lines = "".join(
        json.dumps({"name": name, "sha256": digest(data), "size": len(data)}, ensure_ascii=False) + "\n"
        for name, data in written.items()
    )
    with open(folder / OWNERSHIP_LOG, "ab") as handle:
        _lock(handle, wait=True)  # one appender at a time, so lines never interleave
        handle.write(lines.encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def nearest_existing(folder: Path) -> Path:
    """`folder` or the closest of its ancestors that exists (what creating `folder` would start from)."""
    folder = folder.absolute()
    while not os.path.lexists(folder) and folder.parent != folder:
        folder = folder.parent
    return folder


def folder_problem(folder: Path) -> str | None:
    """Why outputs cannot be written into `folder` (created if missing), or None when they can.

    Tried for real, by creating one of our temporary files where the folder starts to exist: permission
    bits say nothing for root, read-only mounts or full quotas."""
    base = nearest_existing(folder)
    if not base.is_dir():
        return f"{base} is not a folder"
    try:
        path, handle = create_temp(base)
    except OSError as error:
        return f"cannot write to {base}: {error.strerror or error}"
    handle.close()
    path.unlink(missing_ok=True)
    return None


def name_too_long(path: Path) -> str | None:
    """Why `path`'s name is more than its file system takes, or None when it fits (or the limit is unknown)."""
    size = len(os.fsencode(path.name))
    try:
        limit = os.pathconf(nearest_existing(path.parent), "PC_NAME_MAX")
    except (AttributeError, ValueError, OSError):  # no pathconf (Windows counts UTF-16 units), or no answer
        return None
    if 0 < limit < size:
        return f"output name {path.name[:40]}… would be {size} bytes, over the {limit} the file system allows"
    return None


@dataclass
class Checked:
    """What a run has to do, decided before any model work: inputs to transcribe, inputs already done
    (every output there and ours), and inputs refused with the reason (one line each)."""

    todo: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)


def check_plans(
    plans: dict[Path, dict[str, Path]], output_root: Path | None, overwrite: bool, ownership: Ownership
) -> Checked:
    """Sort planned inputs into to do / done / refused, and clear away temps left by killed runs.

    `output_root` is -o's folder: one that can take no file stops the run (a file there is a usage error).
    Without it, outputs go beside their inputs and an unwritable folder refuses only the inputs in it.
    """
    if output_root is not None:
        if output_root.exists() and not output_root.is_dir():
            raise UsageError(f"-o {output_root} is a file, not a folder")
        if problem := folder_problem(output_root):
            raise TinyAudioError(problem)
    targets_in: dict[Path, set[str]] = {}
    for outputs in plans.values():
        for path in outputs.values():
            targets_in.setdefault(path.parent, set()).add(path.name)
    problems: dict[Path, str | None] = {}  # by the folder a missing output folder would be created from
    for folder, names in targets_in.items():
        base = nearest_existing(folder)
        if base not in problems:
            problems[base] = folder_problem(folder)
        if base == folder.absolute():
            remove_stale_temps(folder, names)
    checked = Checked()
    for media, outputs in plans.items():
        paths = list(outputs.values())
        reason = next(
            (r for p in paths if (r := problems[nearest_existing(p.parent)] or name_too_long(p)) is not None), None
        )
        if reason is None:
            existing = [p for p in paths if os.path.lexists(p)]
            foreign = next((p for p in existing if not ownership.is_ours(p)), None)
            if foreign is not None:
                reason = not_ours_message(foreign)
            elif len(existing) == len(paths) and not overwrite:
                checked.skipped.append(media)
                continue
        if reason is None:
            checked.todo.append(media)
        else:
            checked.refused.append((media, reason))
    return checked
