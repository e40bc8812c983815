"""Hub-shaped sources, for eval and train alike: well-known Hub sets (the registry), any Hub id, a local
folder of Parquet files or one Parquet file; and decoding the audio cells they hold.

Every row becomes a `SampleEntry` (see data/entries.py, which also reads manifests and media folders).

Hub datasets are read through `datasets` in streaming mode, in this order: a local folder (or
Parquet file) given as the dataset path; a snapshot of the repo already in the Hugging Face cache
(what `tinyaudio download` leaves there); the Hub itself. Audio is never decoded by `datasets`
(that needs torchcodec); the raw bytes are decoded here with soundfile, or ffmpeg for the rest.
"""

from __future__ import annotations

import io
import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile

from tinyaudio_cli.audio.media import SAMPLE_RATE, header_seconds
from tinyaudio_cli.errors import TinyAudioError

from .entries import SampleEntry
from .naming import CARD_NAME, DATA_FILE_SUFFIX
from .registry import DATASETS, DatasetSpec, hub_spec

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset

    AnyDataset = Dataset | IterableDataset

# TED-LIUM marks stretches without a usable transcript this way; scoring them would only add noise.
IGNORED_REFERENCES = frozenset({"ignore_time_segment_in_scoring"})

# Streaming shuffles within a buffer fed by several shards at once: enough to mix sources, small in RAM.
SHUFFLE_BUFFER = 1_000
SHUFFLE_INPUT_SHARDS = 10


def resolve_dataset(
    name: str,
    *,
    path: str | None = None,
    audio_column: str | None = None,
    text_column: str | None = None,
    id_column: str | None = None,
) -> DatasetSpec:
    """A data set's NAME as `--data` gives it: a registry name (optionally re-pointed at a local copy
    with `path`), or else a Hub id / local path with the given column names."""
    overrides = {
        key: value
        for key, value in {
            "audio_column": audio_column,
            "text_column": text_column,
            "id_column": id_column,
        }.items()
        if value is not None
    }
    if name in DATASETS:
        spec = DATASETS[name]
        return replace(spec, path=path or spec.path, **overrides)
    if "/" not in name and not Path(name).exists():
        raise TinyAudioError(
            f"Unknown dataset {name!r}",
            hint=f"use one of {', '.join(DATASETS)}, a Hub id (org/name) or a local folder",
        )
    return replace(hub_spec(path or name), name=name, **overrides)


def hub_entries(
    spec: DatasetSpec,
    split: str | None = None,
    config: str | None = None,
    streaming: bool = True,
    max_samples: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> Iterator[SampleEntry]:
    """Samples of one split of a Hub (or local, Hub-shaped) dataset, to decode to 16 kHz mono.

    Rows whose reference is a "no transcript here" marker (TED-LIUM's) are skipped, as the
    leaderboard does; every other row is yielded, undecodable ones with `error` set.

    With `shuffle`, a streamed dataset is shuffled within a buffer of SHUFFLE_BUFFER rows drawn from
    up to SHUFFLE_INPUT_SHARDS shards in random order, which is what streaming allows; `seed` makes
    the draw repeatable.
    `cache_dir` is the Hugging Face Hub cache to look for a downloaded snapshot in (default: HF_HUB_CACHE).
    """
    config = config or spec.default_config
    split = split or spec.default_split
    check_choice(spec, "config", config, spec.configs)
    check_choice(spec, "split", split, spec.splits)
    dataset = open_dataset(spec, config, split, streaming, cache_dir)
    if shuffle:
        dataset = _shuffled(dataset, seed, streaming)
    rows = (row for row in _read_rows(dataset, spec) if _scoreable(row, spec))
    for index, row in enumerate(islice(rows, max_samples)):
        yield row_entry(spec, row, lambda _, index=index: f"{index:06d}")


def decode_audio_bytes(data: bytes) -> np.ndarray:
    """Encoded audio (WAV, FLAC, OGG, MP3, ... in memory) as 16 kHz mono float32.

    soundfile handles what libsndfile reads at 16 kHz; other rates and codecs (AAC/M4A, Opus in older
    libsndfile, video containers) go through ffmpeg, which also resamples.
    """
    if not data:
        raise TinyAudioError("the audio is empty (0 bytes)")
    try:
        audio, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, ValueError):  # LibsndfileError is a RuntimeError: not a format it reads
        return _decode_with_ffmpeg(data)
    if rate != SAMPLE_RATE:
        return _decode_with_ffmpeg(data)
    if audio.shape[0] == 0:
        raise TinyAudioError("the audio has no samples")
    return np.ascontiguousarray(audio.mean(axis=1), dtype=np.float32)


def decode_audio_value(value: Any) -> np.ndarray:
    """A dataset cell of audio in any shape `datasets` stores it: raw bytes, {"bytes", "path"},
    a path string, or an already decoded {"array", "sampling_rate"}."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return decode_audio_bytes(bytes(value))
    if isinstance(value, dict):
        if value.get("bytes"):
            return decode_audio_bytes(value["bytes"])
        if value.get("array") is not None:
            return _from_array(np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"]))
        if value.get("path"):
            return _decode_path(value["path"])
    if isinstance(value, str) and value:
        return _decode_path(value)
    raise TinyAudioError(f"no audio in this row (got {type(value).__name__})")


def cached_snapshot(repo_id: str, cache_dir: str | Path | None = None) -> Path | None:
    """The folder of the newest snapshot of dataset `repo_id` in the Hub cache, if one is there."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", local_files_only=True, cache_dir=cache_dir))
    except (LocalEntryNotFoundError, ValueError):  # ValueError: not a valid repo id (e.g. a path)
        return None


def check_choice(spec: DatasetSpec, kind: str, value: str | None, known: tuple[str, ...]) -> None:
    if known and value not in known:
        raise TinyAudioError(f"{spec.name} has no {kind} {value!r}", hint=f"choose one of: {', '.join(known)}")


def open_dataset(
    spec: DatasetSpec, config: str | None, split: str, streaming: bool = True, cache_dir: str | Path | None = None
) -> AnyDataset:
    """One split of a dataset, its audio column left undecoded: from the local folder or Parquet file the spec
    names, else a snapshot in the Hub cache (what `tinyaudio download` leaves), else the Hub itself."""
    return _undecoded_audio(_located_dataset(spec, config, split, streaming, cache_dir), spec.audio_column)


def _located_dataset(
    spec: DatasetSpec, config: str | None, split: str, streaming: bool, cache_dir: str | Path | None
) -> AnyDataset:
    local = Path(spec.path).expanduser()
    if local.exists():
        return _load_local(local, config, split, streaming)
    snapshot = cached_snapshot(spec.path, cache_dir)
    snapshot_problem = ""
    if snapshot is not None:
        try:
            return _load_local(snapshot, config, split, streaming)
        except TinyAudioError as error:
            # A download may have fetched other configs or splits only; the Hub may still have this one.
            snapshot_problem = f"; the cached copy lacks it ({error.message})"
    return _load_from_hub(spec, config, split, streaming, snapshot_problem)


def _load_from_hub(
    spec: DatasetSpec, config: str | None, split: str, streaming: bool, snapshot_problem: str
) -> AnyDataset:
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    where = f"{spec.path} ({config or 'default'}/{split})"
    try:
        return datasets.load_dataset(spec.path, config, split=split, streaming=streaming)
    except ConnectionError as error:
        raise TinyAudioError(
            f"Dataset {where} is not cached and the Hugging Face Hub cannot be reached{snapshot_problem}",
            hint=f"run `tinyaudio download --data {spec.name},split={split}"
            f"{f',config={config}' if config else ''}` while online, then evaluate again",
        ) from error
    except DatasetNotFoundError as error:
        raise TinyAudioError(
            f"Dataset {spec.path} was not found on the Hugging Face Hub or needs access rights",
            hint="check the id; for gated sets accept the terms on the Hub and log in with `hf auth login`",
        ) from error
    except ValueError as error:  # unknown config or split
        raise TinyAudioError(f"Cannot load {where}: {error}") from error


def _load_local(root: Path, config: str | None, split: str, streaming: bool) -> AnyDataset:
    """A local dataset through the same `datasets` streaming path as a Hub one.

    A folder whose README.md declares configs (a Hub snapshot) is read as the card lays it out: the
    config's split is the files present that match the card's data_files patterns for it, so a
    snapshot holding only that split (what `tinyaudio download --split` fetches) loads, and one
    without it says so. Otherwise the split's Parquet files are found by name, since `datasets`' own
    guessing would rename a "dev" folder to "validation": `<split>/**.parquet`, then
    `**/<split>[-_.]*.parquet`, then, for a flat folder or a single file, every Parquet file given.
    """
    import datasets

    card = root / CARD_NAME
    patterns = card_split_patterns(card.read_text(encoding="utf-8"), config, split) if card.is_file() else None
    files = _card_split_files(root, patterns, config, split) if patterns is not None else _split_files(root, split)
    builder, options = _builder_for(files, root)
    try:
        return datasets.load_dataset(builder, data_files={split: files}, split=split, streaming=streaming, **options)
    except (ValueError, FileNotFoundError) as error:
        raise TinyAudioError(f"Cannot load split {split!r} from {root}: {error}") from error


def card_split_patterns(card: str, config: str | None, split: str) -> list[str] | None:
    """The data_files patterns a dataset card declares for a config's split; None when it declares no configs.

    With no config asked for, the config the card marks `default` is used, else its first one.
    """
    from huggingface_hub.repocard import RepoCard

    configs = RepoCard(card, ignore_metadata_errors=True).data.to_dict().get("configs")
    if not configs:
        return None
    names = [entry.get("config_name", "default") for entry in configs]
    if config is None:
        chosen = next((entry for entry in configs if entry.get("default")), configs[0])
    elif config in names:
        chosen = configs[names.index(config)]
    else:
        raise TinyAudioError(
            f"the dataset card declares no config {config!r}", hint=f"choose one of: {', '.join(names)}"
        )
    by_split = _data_files_by_split(chosen.get("data_files", []))
    if split not in by_split:
        raise TinyAudioError(
            f"config {chosen.get('config_name', 'default')!r} has no split {split!r}",
            hint=f"choose one of: {', '.join(by_split)}",
        )
    return by_split[split]


def _data_files_by_split(data_files: Any) -> dict[str, list[str]]:
    """The shapes `data_files` takes in a card: a pattern, a list of them (all "train"), or per split."""

    def as_list(value: Any) -> list[str]:
        return [value] if isinstance(value, str) else list(value)

    if isinstance(data_files, dict):
        return {split: as_list(value) for split, value in data_files.items()}
    if isinstance(data_files, str) or all(isinstance(entry, str) for entry in data_files):
        return {"train": as_list(data_files)}
    return {entry["split"]: as_list(entry["path"]) for entry in data_files}


def _card_split_files(root: Path, patterns: list[str], config: str | None, split: str) -> list[str]:
    """The files under `root` that the card's patterns for a split match, as `datasets` globs them."""
    from datasets.data_files import resolve_pattern

    files: list[str] = []
    for pattern in patterns:
        try:
            files += resolve_pattern(pattern, base_path=str(root))
        except FileNotFoundError:  # this pattern matches nothing here; another may
            continue
    if not files:
        where = f"split {split!r}" + (f" of config {config!r}" if config else "")
        raise TinyAudioError(
            f"{root} holds no files of {where} (its card looks for {', '.join(patterns)})",
            hint="download that split (tinyaudio download --data NAME,split=SPLIT) or choose another",
        )
    return list(dict.fromkeys(files))


def _builder_for(files: list[str], root: Path) -> tuple[str, dict[str, Any]]:
    """The `datasets` builder (and its options) for data files, by their extension; Parquet by default."""
    if all(file.endswith(DATA_FILE_SUFFIX) for file in files):
        return "parquet", {}
    from datasets.load import infer_module_for_data_files_list

    builder, options = infer_module_for_data_files_list(files)
    if builder is None:
        raise TinyAudioError(f"{root} holds data files of a format datasets does not read: {files[0]}")
    return builder, options


def _split_files(root: Path, split: str) -> list[str]:
    if root.is_file():
        return [str(root)]
    patterns = (
        f"{split}/**/*{DATA_FILE_SUFFIX}",
        f"**/{split}[-_.]*{DATA_FILE_SUFFIX}",
        f"*{DATA_FILE_SUFFIX}",
    )
    for pattern in patterns:
        files = sorted(str(path) for path in root.glob(pattern) if path.is_file())
        if files:
            return files
    raise TinyAudioError(
        f"No Parquet files for split {split!r} in {root}",
        hint=f"put them in {root / split}/, name them {split}-*.parquet, or point at a single file",
    )


def _undecoded_audio(dataset: AnyDataset, column: str) -> AnyDataset:
    # An Audio feature would be decoded by datasets (via torchcodec); ask for the raw bytes instead.
    # Unknown features (None) mean datasets decodes nothing, so the raw cell arrives as it is.
    import datasets

    features = dataset.features
    if features is not None and isinstance(features.get(column), datasets.Audio):
        return dataset.cast_column(column, datasets.Audio(decode=False))
    return dataset


def _shuffled(dataset: AnyDataset, seed: int, streaming: bool) -> AnyDataset:
    if not streaming:
        return dataset.shuffle(seed=seed)
    # Reading shards side by side mixes their sources, but datasets then waits 5 s for Arrow's reader
    # threads when iteration ends; a single shard has nothing to mix, so it skips that.
    input_shards = max(1, min(dataset.num_shards, SHUFFLE_INPUT_SHARDS))
    return dataset.shuffle(seed=seed, buffer_size=SHUFFLE_BUFFER, max_buffer_input_shards=input_shards)


def _read_rows(dataset: AnyDataset, spec: DatasetSpec) -> Iterator[dict[str, Any]]:
    # Streaming reads lazily, so a corrupt Parquet shard or a dropped connection surfaces here.
    rows = iter(dataset)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except (OSError, ValueError) as error:
            raise TinyAudioError(f"Reading {spec.path} failed: {error}") from error
        yield row


def _scoreable(row: dict[str, Any], spec: DatasetSpec) -> bool:
    return str(row.get(spec.text_column) or "").strip() not in IGNORED_REFERENCES


def row_entry(spec: DatasetSpec, row: dict[str, Any], fallback_id: Callable[[Any], str]) -> SampleEntry:
    """A dataset row as a sample: its id from the id column, else `fallback_id(audio cell)`; its length from
    the duration column, else the audio's header."""
    for column in (spec.audio_column, spec.text_column):
        if column not in row:
            raise TinyAudioError(
                f"{spec.name} has no column {column!r} (columns: {', '.join(row)})",
                hint="name the right ones with audio_column= and text_column= after the data set's name",
            )
    value = row[spec.audio_column]
    identifier = row.get(spec.id_column) if spec.id_column else None
    sample_id = str(identifier) if identifier is not None else fallback_id(value)
    stated = _number(row.get(spec.duration_column)) if spec.duration_column else None

    def length() -> float:
        return stated if stated is not None else _value_seconds(value)

    return SampleEntry(sample_id, str(row[spec.text_column] or ""), partial(decode_audio_value, value), length, stated)


def _value_seconds(value: Any) -> float:
    """header_seconds for a dataset cell in any of the shapes decode_audio_value takes."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return header_seconds(bytes(value))
    if isinstance(value, dict):
        if value.get("bytes"):
            return header_seconds(bytes(value["bytes"]))
        if value.get("array") is not None and value.get("sampling_rate"):
            return len(value["array"]) / float(value["sampling_rate"])
        value = value.get("path")
    if isinstance(value, str) and value and Path(value).exists():
        return header_seconds(value)
    return 0.0


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _decode_path(path: str) -> np.ndarray:
    from tinyaudio_cli.audio.media import load_audio

    if Path(path).exists():
        return load_audio(path)
    # A remote file (hf:// or https://) that streaming left undownloaded: fetch its bytes.
    from datasets.utils.file_utils import xopen

    try:
        with xopen(path, "rb") as handle:
            return decode_audio_bytes(handle.read())
    except (OSError, ValueError) as error:
        raise TinyAudioError(f"cannot open audio {path}: {error}") from error


def _decode_with_ffmpeg(data: bytes) -> np.ndarray:
    from tinyaudio_cli.audio.media import load_audio

    # ffmpeg reads a seekable file far more reliably than a pipe (MP4/M4A keep their index at the end).
    with tempfile.TemporaryDirectory(prefix="tinyaudio-") as folder:
        path = Path(folder) / "audio"
        path.write_bytes(data)
        try:
            return load_audio(path)
        except TinyAudioError as error:
            reason = getattr(error, "reason", error.message)
            raise TinyAudioError(f"undecodable audio: {reason}") from error


def _from_array(audio: np.ndarray, rate: int) -> np.ndarray:
    # Decoded multichannel arrays come as (channels, samples) or (samples, channels): channels are fewer.
    mono = audio.mean(axis=int(np.argmin(audio.shape))) if audio.ndim > 1 else audio
    if rate == SAMPLE_RATE:
        return np.ascontiguousarray(mono, dtype=np.float32)
    buffer = io.BytesIO()  # resampling is ffmpeg's job, so hand it a WAV
    soundfile.write(buffer, mono, rate, format="WAV", subtype="FLOAT")
    return _decode_with_ffmpeg(buffer.getvalue())
