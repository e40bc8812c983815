"""What a run trains on: data sources (manifests, media folders, Parquet, Hub datasets; sharded across
ranks, resumable to the example), target text, the encoder-frame cache and the batches the loop takes."""

from __future__ import annotations

import copy
import hashlib
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..constants import SAMPLE_RATE
from ..data.entries import SampleEntry, folder_listing, manifest_listing
from ..data.prefetch import Prefetched
from ..errors import TinyAudioError
from ..model.features import whisper_features
from .config import (
    DEV_FALLBACK_SPLIT,
    DEV_SPLITS,
    MAX_CONSECUTIVE_SKIPS,
    PREFETCH_GROUPS,
    PRONOUN_I,
    SKIP_REASONS,
    TRAIN_SPLIT,
    DataSource,
)

if TYPE_CHECKING:
    from ..model import TinyAudioModel

# Streaming sets are read in blocks of SHUFFLE_BLOCK rows, round-robin from up to PARALLEL_SHARDS shards,
# and each block is shuffled in memory: a position is then "this block, this row", cheap to restore exactly.
SHUFFLE_BLOCK = 1_000
PARALLEL_SHARDS = 10
CPU = torch.device("cpu")  # where the loader thread computes features

# -- target text ---------------------------------------------------------------------------------------------


def truecase(text: str) -> str:
    """Re-capitalise Whisper-normalised text: the first letter and the pronoun I.

    The normaliser lower-cases everything and expands contractions ("I'm" → "i am"), so these two rules
    restore the capitals every English sentence has without a model; names stay lower case (a statistical
    truecaser would guess them, and WER is scored case-insensitively either way).
    """
    text = PRONOUN_I.sub("I", text)
    return text[:1].upper() + text[1:]


def prepare_target(text: str, normalize: bool = True) -> str:
    """The transcript the LM learns to write; empty when nothing is left to learn (tags, fillers only)."""
    from ..data.evaldata import IGNORED_REFERENCES

    if text.strip() in IGNORED_REFERENCES:
        return ""
    if not normalize:
        return " ".join(text.split())
    from ..evaluation.normalize import normalize_text

    return truecase(normalize_text(text))


# -- data sources ------------------------------------------------------------------------------------------------


@dataclass
class Example:
    """A usable utterance: its target token ids and either its audio or its cached encoder frames."""

    key: str
    reference: str  # the transcript as the data has it (WER is scored against this)
    targets: list[int]
    num_samples: int
    audio: np.ndarray | None = None
    frames: torch.Tensor | None = None


@dataclass
class MicroBatch:
    examples: list[Example]
    features: torch.Tensor | None  # log-mel of the examples without cached frames, in order


def _permutation(size: int, *seed: int) -> list[int]:
    return np.random.default_rng(list(seed)).permutation(size).tolist()


class ListSource:
    """A manifest or media folder: listed up front, so a position is (epoch, index) and restoring it is free.

    Each epoch has its own seeded order; rank r of W reads every W-th entry of it.
    """

    def __init__(
        self,
        name: str,
        entries: list[SampleEntry],
        seed: int,
        rank: int,
        world: int,
        shuffle: bool,
        loop: bool,
    ) -> None:
        self.name, self.entries = name, entries
        self.seed, self.rank, self.world, self.shuffle, self.loop = seed, rank, world, shuffle, loop
        self.epoch, self.index = 0, 0
        self.order = self._order()
        if not self.order:
            raise TinyAudioError(f"{name} has {len(entries)} entries, fewer than the {world} ranks reading it")

    def _order(self) -> list[int]:
        indices = _permutation(len(self.entries), self.seed, self.epoch) if self.shuffle else range(len(self.entries))
        return list(indices)[self.rank :: self.world]

    def __iter__(self) -> ListSource:
        return self

    def __next__(self) -> SampleEntry:
        if self.index >= len(self.order):
            if not self.loop:
                raise StopIteration
            self.epoch, self.index = self.epoch + 1, 0
            self.order = self._order()
        entry = self.entries[self.order[self.index]]
        self.index += 1
        return replace(entry, id=f"{self.name}|{entry.id}")

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state(self, state: dict[str, Any]) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self.order = self._order()


class DatasetSource:
    """A Hub-shaped dataset (Hub id, registry name, local Parquet), streamed with an exactly restorable position.

    Per epoch the shards get a seeded order and rank r of W takes every W-th shard (with fewer shards than
    ranks, every rank reads all and keeps every W-th row). Rows are read round-robin from up to PARALLEL_SHARDS
    open shards, in blocks of SHUFFLE_BLOCK rows shuffled in memory. A position is where the current block
    began (each open shard's `datasets` stream state) plus the rows of it already used: restoring re-reads at
    most one block of raw rows, nothing decoded. (`datasets`' own shuffle buffer cannot be restored.)
    """

    def __init__(
        self, source: DataSource, split: str, seed: int, rank: int, world: int, shuffle: bool, loop: bool
    ) -> None:
        from ..data.evaldata import open_dataset, resolve_dataset

        self.spec = resolve_dataset(
            source.path,
            path=source.data_dir,
            audio_column=source.audio_column,
            text_column=source.text_column,
            id_column=source.id_column,
        )
        config = source.config or self.spec.default_config
        self.name = f"{self.spec.path}:{config or 'default'}:{split}"
        self.dataset = open_dataset(self.spec, config, split)
        self.num_shards = self.dataset.num_shards
        self.seed, self.rank, self.world, self.shuffle, self.loop = seed, rank, world, shuffle, loop
        self.split_rows = self.num_shards < world
        self.epoch = 0
        self._start_epoch()

    def _start_epoch(self) -> None:
        order = _permutation(self.num_shards, self.seed, self.epoch) if self.shuffle else list(range(self.num_shards))
        self.shards = order if self.split_rows else order[self.rank :: self.world]
        self.next_shard, self.turn, self.blocks_read = 0, 0, 0
        self.open: list[tuple[int, Any, Iterator[dict[str, Any]]]] = []
        self.block: list[dict[str, Any]] = []
        self.block_index = 0
        self.block_start: dict[str, Any] | None = None
        self.epoch_rows = 0

    def _open_shard(self, shard: int, state: dict[str, Any] | None = None) -> tuple[int, Any, Iterator]:
        dataset = self.dataset.shard(num_shards=self.num_shards, index=shard)
        if state is not None:
            dataset.load_state_dict(state)
        return shard, dataset, iter(dataset)

    def _position(self) -> dict[str, Any]:
        return {
            "next_shard": self.next_shard,
            "turn": self.turn,
            "blocks_read": self.blocks_read,
            "open": [[shard, copy.deepcopy(dataset.state_dict())] for shard, dataset, _ in self.open],
        }

    def _read_block(self) -> int:
        """The next block of rows (this rank's share of it); returns the rows read, 0 at the end of the epoch."""
        self.block_start = self._position()
        rows: list[dict[str, Any]] = []
        while len(rows) < SHUFFLE_BLOCK:
            while len(self.open) < PARALLEL_SHARDS and self.next_shard < len(self.shards):
                self.open.append(self._open_shard(self.shards[self.next_shard]))
                self.next_shard += 1
            if not self.open:
                break
            self.turn %= len(self.open)
            try:
                rows.append(next(self.open[self.turn][2]))
                self.turn += 1
            except StopIteration:
                del self.open[self.turn]
            except (OSError, ValueError) as error:  # a corrupt shard or a dropped connection
                raise TinyAudioError(f"reading {self.name} failed: {error}") from error
        if self.shuffle:
            rows = [rows[i] for i in _permutation(len(rows), self.seed, self.epoch, self.blocks_read)]
        self.blocks_read += 1
        self.block = rows[self.rank :: self.world] if self.split_rows else rows
        self.block_index = 0
        self.epoch_rows += len(rows)
        return len(rows)

    def __iter__(self) -> DatasetSource:
        return self

    def __next__(self) -> SampleEntry:
        while self.block_index >= len(self.block):
            if self._read_block() == 0:
                if not self.loop:
                    raise StopIteration
                if self.epoch_rows == 0:
                    raise TinyAudioError(f"{self.name} has no rows")
                self.epoch += 1
                self._start_epoch()
        row = self.block[self.block_index]
        self.block_index += 1
        return self._example(row)

    def _example(self, row: dict[str, Any]) -> SampleEntry:
        from ..data.evaldata import row_entry

        entry = row_entry(self.spec, row, _row_key)
        return replace(entry, id=f"{self.name}|{entry.id}")

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "block_index": self.block_index, "block_start": self.block_start}

    def load_state(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self._start_epoch()
        start = state["block_start"]
        if start is None:  # nothing read yet
            return
        self.next_shard, self.turn, self.blocks_read = start["next_shard"], start["turn"], start["blocks_read"]
        self.open = [self._open_shard(shard, shard_state) for shard, shard_state in start["open"]]
        self._read_block()
        self.block_index = int(state["block_index"])


def _row_key(cell: Any) -> str:
    """A row without an id column is named by its audio: the file it came from, else a hash of the audio."""
    key = cell.get("path") if isinstance(cell, dict) else None
    if key:
        return str(key)
    raw = cell.get("bytes") if isinstance(cell, dict) else cell
    return hashlib.sha1(raw if isinstance(raw, bytes) else repr(raw).encode()).hexdigest()


def open_source(
    source: DataSource, dev: bool, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True, loop: bool = True
) -> ListSource | DatasetSource:
    kind = source.kind
    path = Path(source.path).expanduser()
    if kind == "manifest":
        return ListSource(str(path), manifest_listing(path), seed, rank, world, shuffle, loop)
    if kind == "folder":
        return ListSource(str(path), folder_listing(path), seed, rank, world, shuffle, loop)
    return DatasetSource(source, source.split or default_split(source, dev), seed, rank, world, shuffle, loop)


def default_split(source: DataSource, dev: bool) -> str:
    if not dev:
        return TRAIN_SPLIT
    from ..data.evaldata import resolve_dataset

    splits = resolve_dataset(source.path).splits
    return next((split for split in DEV_SPLITS if split in splits), DEV_FALLBACK_SPLIT)


# -- examples: decode, filter, count, tokenise ---------------------------------------------------------------


class EncoderCache:
    """Frozen-encoder outputs per utterance, on disk: one safetensors file per key.

    The encoder's output depends only on the audio, so later epochs skip decoding, log-mel and the encoder (on
    a CPU most of a step). Only the frames the projector reads for the real audio are kept (4 per projector
    frame). SpecAugment masks the features before the encoder, so a cache and SpecAugment exclude each other.
    Keys include the encoder id: delete the folder when the audio behind an id changes.
    """

    def __init__(self, folder: Path, namespace: str) -> None:
        self.folder = folder
        self.namespace = namespace

    def path(self, key: str) -> Path:
        digest = hashlib.sha1(f"{self.namespace}|{key}".encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.safetensors"

    def get(self, key: str) -> tuple[torch.Tensor, int] | None:
        from safetensors import safe_open

        path = self.path(key)
        if not path.is_file():
            return None
        with safe_open(path, "pt") as handle:
            return handle.get_tensor("frames"), int(handle.metadata()["num_samples"])

    def put(self, key: str, frames: torch.Tensor, num_samples: int) -> None:
        from safetensors.torch import save_file

        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial_path = path.with_suffix(f".{os.getpid()}.tmp")
        save_file(
            {"frames": frames.detach().cpu().contiguous()}, partial_path, metadata={"num_samples": str(num_samples)}
        )
        os.replace(partial_path, path)  # atomic: ranks writing the same key never leave half a file


class Preparer:
    """SampleEntry → Example, or the reason it is skipped (one of SKIP_REASONS)."""

    def __init__(self, model: TinyAudioModel, max_samples: int, normalize: bool, cache: EncoderCache | None) -> None:
        self.model, self.max_samples, self.normalize, self.cache = model, max_samples, normalize, cache

    def __call__(self, raw: SampleEntry) -> Example | str:
        text = prepare_target(raw.text, self.normalize)
        if not text:
            return "empty_text"
        cached = self.cache.get(raw.id) if self.cache else None
        if cached is not None:
            frames, num_samples = cached
            if num_samples > self.max_samples:
                return "too_long"
            return Example(raw.id, raw.text, self.model.target_ids(text), num_samples, frames=frames)
        if raw.stated_seconds is not None and raw.stated_seconds * SAMPLE_RATE > self.max_samples:
            return "too_long"  # known from the metadata: not even decoded
        try:
            audio = raw.read()
        except (TinyAudioError, OSError, ValueError, RuntimeError):
            return "undecodable"
        if len(audio) == 0:
            return "undecodable"
        if len(audio) > self.max_samples:
            return "too_long"
        return Example(raw.id, raw.text, self.model.target_ids(text), len(audio), audio=audio)


class ExampleStream:
    """Sources mixed by weight (a seeded draw per example), bad examples skipped and counted; endless."""

    def __init__(self, sources: Sequence[ListSource | DatasetSource], weights: Sequence[float], seed: int,
                 prepare: Preparer) -> None:  # fmt: skip
        self.sources, self.weights, self.prepare = list(sources), list(weights), prepare
        self.rng = random.Random(seed)
        self.skipped = dict.fromkeys(SKIP_REASONS, 0)

    def __iter__(self) -> ExampleStream:
        return self

    def __next__(self) -> Example:
        for _ in range(MAX_CONSECUTIVE_SKIPS):
            source = self.rng.choices(self.sources, self.weights)[0] if len(self.sources) > 1 else self.sources[0]
            result = self.prepare(next(source))
            if isinstance(result, Example):
                return result
            self.skipped[result] += 1
        raise TinyAudioError(f"{MAX_CONSECUTIVE_SKIPS} examples in a row were unusable: {self.skipped}")

    def state(self) -> dict[str, Any]:
        return {
            "mix": self.rng.getstate(),
            "sources": [source.state() for source in self.sources],
            "skipped": dict(self.skipped),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        version, internal, gauss = state["mix"]
        self.rng.setstate((version, tuple(internal), gauss))
        for source, source_state in zip(self.sources, state["sources"], strict=True):
            source.load_state(source_state)
        self.skipped = {reason: int(state["skipped"].get(reason, 0)) for reason in SKIP_REASONS}


def collate(examples: list[Example], feature_extractor: Any) -> MicroBatch:
    audios = [example.audio for example in examples if example.frames is None]
    # the model's own log-mel (TinyAudioModel.features), on the CPU so the loader thread makes it while the
    # model works; the device move comes later
    return MicroBatch(examples, whisper_features(audios, feature_extractor, CPU) if audios else None)


class Loader:
    """Prepares each optimizer step's micro-batches on a background thread (decoding and log-mel overlap the
    model). Every group comes with the stream's position right after it: what a checkpoint must save."""

    def __init__(self, stream: ExampleStream, batch_size: int, accumulation: int, feature_extractor: Any) -> None:
        self.stream, self.batch_size, self.accumulation = stream, batch_size, accumulation
        self.feature_extractor = feature_extractor
        self.groups = Prefetched(self._groups(), PREFETCH_GROUPS, "tinyaudio-loader")

    def _groups(self) -> Iterator[tuple[list[MicroBatch], dict[str, Any]]]:
        while True:
            group = [
                collate([next(self.stream) for _ in range(self.batch_size)], self.feature_extractor)
                for _ in range(self.accumulation)
            ]
            yield group, self.stream.state()

    def next(self) -> tuple[list[MicroBatch], dict[str, Any]]:
        return next(self.groups)

    def close(self) -> None:
        self.groups.close(timeout=30)
