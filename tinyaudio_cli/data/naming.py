"""One way to name a data set, the same in `eval`, `train` and `download`.

    NAME[,key=value...]

NAME is a registered set (`loquacious`), a Hub id (`org/name`), a local folder (of Parquet files laid out
like a Hub dataset, or of media files with same-named .txt transcripts), a Parquet file, or a JSONL/CSV/TSV
manifest. The options say which part and which columns to read:

    config=medium  split=test  audio_column=wav  text_column=text  id_column=ID
    data_dir=~/data/LoquaciousSet   (a local copy of a registered set, read with its registered columns)
    weight=2                        (train only: how often this set is drawn against the others)

e.g. `loquacious,config=medium,split=test`, `clips/dev.jsonl`, `org/my-set,audio_column=speech`.

This module imports nothing heavy: the CLI parses data options while `--help` is being built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from ..errors import TinyAudioError

MANIFEST_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": ",", ".tsv": "\t"}
DATA_FILE_SUFFIX = ".parquet"
CARD_NAME = "README.md"

Kind = Literal["manifest", "folder", "dataset"]


@dataclass
class DataSource:
    """A named data set and its options, as `NAME[,key=value...]` spells it (see the module's docstring).

    `path` is the NAME (a config file writes it as `path:`)."""

    path: str
    weight: float = 1.0
    config: str | None = None
    split: str | None = None  # default: the set's test split in eval, train/dev splits in train
    audio_column: str | None = None
    text_column: str | None = None
    id_column: str | None = None
    data_dir: str | None = None

    @classmethod
    def parse(cls, value: str | dict[str, Any] | DataSource) -> DataSource:
        if isinstance(value, DataSource):
            return value
        if isinstance(value, str):
            path, *pairs = [part.strip() for part in value.split(",")]
            options: dict[str, Any] = {"path": path}
            for pair in pairs:
                key, sep, item = pair.partition("=")
                if not sep:
                    raise TinyAudioError(f"bad data option {pair!r} in {value!r}", hint="write options as key=value")
                options[key.strip().replace("-", "_")] = item.strip()
            value = options
        if not isinstance(value, dict) or not value.get("path"):
            raise TinyAudioError(f"a data source needs a path, got {value!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise TinyAudioError(f"unknown data option {unknown[0]!r}", hint=f"known: {', '.join(sorted(known))}")
        source = cls(**{key: None if item is None else str(item) for key, item in value.items()})
        try:
            source.weight = float(source.weight)
        except ValueError as error:
            raise TinyAudioError(f"data weight must be a number, got {source.weight!r}") from error
        if not source.weight > 0:
            raise TinyAudioError(f"data weight must be positive, got {source.weight}")
        return source

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}

    @property
    def kind(self) -> Kind:
        """What NAME is: a manifest file, a folder of media files, or a dataset (registered, Hub, Parquet)."""
        local = Path(self.path).expanduser()
        if local.is_file() and local.suffix.lower() in MANIFEST_SUFFIXES:
            return "manifest"
        if local.is_dir() and not (local / CARD_NAME).is_file() and not any(local.rglob(f"*{DATA_FILE_SUFFIX}")):
            return "folder"
        return "dataset"

    def dataset_options(self) -> dict[str, str]:
        """The options that only a dataset (not a manifest or a media folder) has, those given."""
        names = ("config", "split", "audio_column", "text_column", "id_column", "data_dir")
        return {name: value for name in names if (value := getattr(self, name)) is not None}

    def merged(self, spelled: dict[str, str], **values: str | None) -> DataSource:
        """This source with options that separate flags give (`--split test` as split=test); a flag and an
        option that disagree are refused. `spelled` names each option as the user wrote it, for the error."""
        merged = dataclasses.replace(self)
        for name, value in values.items():
            if value is None:
                continue
            own = getattr(self, name)
            if own is not None and own != value:
                raise TinyAudioError(
                    f"{spelled.get(name, name)} {value} and {name}={own} disagree", hint="give the option once"
                )
            setattr(merged, name, value)
        return merged

    def refuse_dataset_options(self, kind: str, spelled: dict[str, str]) -> None:
        """A manifest or a media folder has no configs, splits or columns: naming one is a mistake."""
        given = [spelled.get(name, f"{name}=") for name in self.dataset_options()]
        if given:
            raise TinyAudioError(
                f"{', '.join(given)} only apply to a dataset, not a {kind}", hint="drop them for a manifest or folder"
            )
