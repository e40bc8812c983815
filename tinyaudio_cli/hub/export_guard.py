"""What `tinyaudio export` may write where, and which eval summaries belong to the model it exports.

An export never replaces a file it did not write: it is made in a staging folder next to the destination,
then only its own files move in. A folder that already holds files is refused unless `--overwrite`; even then,
files the export does not write stay where they are (and are named in a warning), and the only files removed
are Python files an earlier export wrote and this one no longer ships.

An export knows its own code files by a record it writes beside them (RECORD_NAME: the tinyaudio version and
each code file's sha256), not by editing them: they are model/'s files, byte for byte. A listed file whose
content no longer matches was edited by the user: it is theirs, kept and named in a warning when this export no
longer ships it, and the export is refused when it would replace it (check_code_files). Exports by
versions before the record named their files `tinyaudio_*.py` and marked their first line; those are still
recognised and removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import TinyAudioError

RECORD_NAME = "tinyaudio_export.json"  # what an export wrote: {"tinyaudio": version, "code": {name: sha256}}
# how exports before the record marked their code: named tinyaudio_*.py, this in the first line
LEGACY_MARK = "by `tinyaudio export`"
LEGACY_PREFIX = "tinyaudio_"


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


def check_code_files(out: Path, code: dict[str, bytes]) -> None:
    """Refuse, before any model work, to replace a same-named file the export did not write: code names are
    model/'s own (config.py, modeling.py, ...), which another project's folder may hold too. A file may be
    replaced when an earlier export recorded it unchanged, or when it already holds exactly these bytes."""
    earlier = _recorded_code(out / RECORD_NAME)
    foreign = []
    for name, content in sorted(code.items()):
        path = out / name
        if not os.path.lexists(path):
            continue
        try:
            current = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        except OSError:
            current = None
        if current is None or (current != content and earlier.get(name) != _sha256(current)):
            foreign.append(name)
    if foreign:
        raise TinyAudioError(
            f"{out} holds {', '.join(foreign)}, which the export writes and which no earlier export wrote as it "
            "is now (edited, or another project's)",
            hint="move those files away, or export into a new folder",
        )


def staging_dir(out: Path) -> Path:
    """An empty folder beside `out` (same file system, so its files move in by rename)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".export", dir=out.parent))
    except OSError as error:
        raise TinyAudioError(f"cannot write into {out.parent}: {error.strerror}") from None


def write_record(folder: Path, version: str, code: dict[str, bytes]) -> None:
    """The record by which a later export recognises these code files (and sees whether they were edited)."""
    record = {"tinyaudio": version, "code": {name: _sha256(content) for name, content in sorted(code.items())}}
    (folder / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def move_in(staged: Path, out: Path) -> tuple[list[str], list[str]]:
    """Move the staged files into `out` (replacing same-named ones) and remove the code files an earlier export
    wrote that this one does not. Returns the names of the files left untouched: those an export never wrote,
    and code files an earlier export wrote that were edited since."""
    out.mkdir(parents=True, exist_ok=True)
    earlier = _recorded_code(out / RECORD_NAME)  # read before this export's record replaces it
    written = {path.name for path in staged.iterdir()}
    for name in sorted(written):
        os.replace(staged / name, out / name)
    shutil.rmtree(staged, ignore_errors=True)
    kept, edited = [], []
    for path in sorted(out.iterdir()):
        if path.name in written:
            continue
        if path.name in earlier:
            if path.is_file() and _sha256(path.read_bytes()) == earlier[path.name]:
                path.unlink()  # stale code of an earlier export, unchanged: config.json no longer points at it
            else:
                edited.append(path.name)
        elif path.name.startswith(LEGACY_PREFIX) and path.suffix == ".py" and _legacy_export_code(path):
            path.unlink()
        else:
            kept.append(path.name)
    return kept, edited


def _recorded_code(path: Path) -> dict[str, str]:
    """{file name: sha256} of the code an earlier export wrote; empty when there is no readable record."""
    try:
        code = json.loads(path.read_text(encoding="utf-8")).get("code")
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(code, dict):
        return {}
    # plain names only: a record is no licence to remove files anywhere else
    return {
        name: digest
        for name, digest in code.items()
        if isinstance(name, str) and isinstance(digest, str) and name == Path(name).name and name.endswith(".py")
    }


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _legacy_export_code(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as handle:
            return LEGACY_MARK in handle.readline()
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
