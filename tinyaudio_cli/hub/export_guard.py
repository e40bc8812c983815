"""What `tinyaudio export` may write where, and which eval summaries belong to the model it exports.

An export never replaces a file it did not write: it is made in a staging folder next to the destination,
then only its own files move in. A folder that already holds files is refused unless `--overwrite`; even then,
files the export does not write stay where they are (and are named in a warning), and the only files removed
are Python files an earlier export wrote (they carry its header) and this one no longer ships.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import TinyAudioError

EXPORT_MARK = "by `tinyaudio export`"  # in the first line of every Python file an export writes
CODE_PREFIX = "tinyaudio_"  # = hub.REMOTE_PREFIX, the names of those files


def check_out_dir(out: Path, source: Path, overwrite: bool) -> None:
    """Refuse, before any model work, a destination the export must not write into."""
    if out.exists() and out.resolve() == source.resolve():
        raise TinyAudioError(f"{out} is the checkpoint itself", hint="export into a new folder")
    if out.is_file():
        raise TinyAudioError(f"{out} is a file", hint="name a folder to create")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        held = " (it holds a model: config.json)" if (out / "config.json").is_file() else ""
        raise TinyAudioError(
            f"{out} is not empty{held}",
            hint="export into a new folder, or pass --overwrite to replace the files an export writes there "
            "(other files are kept)",
        )


def staging_dir(out: Path) -> Path:
    """An empty folder beside `out` (same file system, so its files move in by rename)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".export", dir=out.parent))
    except OSError as error:
        raise TinyAudioError(f"cannot write into {out.parent}: {error.strerror}") from None


def move_in(staged: Path, out: Path) -> list[str]:
    """Move the staged files into `out` (replacing same-named ones), remove the Python files an earlier export
    wrote that this one does not, and return the names of the files left untouched."""
    out.mkdir(parents=True, exist_ok=True)
    written = {path.name for path in staged.iterdir()}
    for name in sorted(written):
        os.replace(staged / name, out / name)
    shutil.rmtree(staged, ignore_errors=True)
    kept = []
    for path in sorted(out.iterdir()):
        if path.name in written:
            continue
        if path.name.startswith(CODE_PREFIX) and path.suffix == ".py" and _written_by_export(path):
            path.unlink()  # stale code of an earlier export: config.json no longer points at it
        else:
            kept.append(path.name)
    return kept


def _written_by_export(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as handle:
            return EXPORT_MARK in handle.readline()
    except (OSError, UnicodeDecodeError):
        return False


def check_summaries(paths: Sequence[str | Path], fingerprints: Sequence[str | None], names: Sequence[str],
                    source: Path, source_fingerprint: str, checkpoint: str) -> None:  # fmt: skip
    """Each eval summary must have scored the weights being exported: the fingerprint `eval` records, or
    (for a summary without one) the same checkpoint folder or name."""
    for path, fingerprint, name in zip(paths, fingerprints, names, strict=True):
        if fingerprint is not None:
            if fingerprint != source_fingerprint:
                raise TinyAudioError(
                    f"eval summary {path} scored other weights ({name}, sha256 {fingerprint[:12]}…) than "
                    f"{checkpoint} (sha256 {source_fingerprint[:12]}…)",
                    hint="pass the summary of an eval of this checkpoint",
                )
            continue
        same = name == checkpoint or (Path(name).expanduser().is_dir() and Path(name).resolve() == source.resolve())
        if not same:
            raise TinyAudioError(
                f"eval summary {path} is of {name}, not {checkpoint}",
                hint="pass the summary of an eval of this checkpoint",
            )
