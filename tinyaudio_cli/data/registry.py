"""The registered data sets and where each lives: a name → a Hub id (or a local copy) and its columns.

Light on purpose (no numpy, no `datasets`): the shell's Tab lists these names through the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass

# The sorted, Parquet copy of the ESB test sets that the Open ASR Leaderboard evaluated on.
ESB_TEST_SETS = "hf-audio/esb-datasets-test-only-sorted"
ESB_COLUMNS = {
    "audio_column": "audio",
    "text_column": "text",
    "id_column": "id",
    "duration_column": "audio_length_s",
}


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives and which columns hold the audio, the reference and the id."""

    name: str
    path: str  # a Hub id ("org/name"), a local folder, or a local Parquet file
    audio_column: str = "audio"
    text_column: str = "text"
    id_column: str | None = None
    duration_column: str | None = None  # a sample's length before (or without) decoding it
    configs: tuple[str, ...] = ()
    default_config: str | None = None
    splits: tuple[str, ...] = ()
    default_split: str = "test"
    description: str = ""


def _esb(name: str, config: str, description: str) -> DatasetSpec:
    return DatasetSpec(
        name, ESB_TEST_SETS, configs=(config,), default_config=config, splits=("test",),
        description=description, **ESB_COLUMNS,
    )  # fmt: skip


DATASETS: dict[str, DatasetSpec] = {
    "loquacious": DatasetSpec(
        "loquacious",
        "speechbrain/LoquaciousSet",
        audio_column="wav",
        text_column="text",
        id_column="ID",
        duration_column="duration",
        configs=("small", "medium", "large", "clean"),
        default_config="medium",
        splits=("dev", "test"),
        default_split="test",
        description="LoquaciousSet: read, spontaneous, accented and noisy English",
    ),
    "librispeech-clean": DatasetSpec(
        "librispeech-clean",
        "openslr/librispeech_asr",
        id_column="id",
        configs=("clean",),
        default_config="clean",
        splits=("test", "validation"),
        description="LibriSpeech test-clean: read audiobooks",
    ),
    "librispeech-other": DatasetSpec(
        "librispeech-other",
        "openslr/librispeech_asr",
        id_column="id",
        configs=("other",),
        default_config="other",
        splits=("test", "validation"),
        description="LibriSpeech test-other: harder read audiobooks",
    ),
    "tedlium": _esb("tedlium", "tedlium", "TED-LIUM 3 test: TED talks (ESB copy, as on the Open ASR Leaderboard)"),
    "gigaspeech": _esb("gigaspeech", "gigaspeech", "GigaSpeech test: podcasts and YouTube (ESB copy)"),
    "spgispeech": _esb("spgispeech", "spgispeech", "SPGISpeech test: earnings calls (ESB copy)"),
    "earnings22": _esb("earnings22", "earnings22", "Earnings-22 test: accented earnings calls (ESB copy)"),
    "ami": _esb("ami", "ami", "AMI IHM test: meetings, headset microphones (ESB copy)"),
    "voxpopuli": _esb("voxpopuli", "voxpopuli", "VoxPopuli English test: European Parliament (ESB copy)"),
    "common-voice": _esb("common-voice", "common_voice", "Common Voice 9 English test: crowd-read (ESB copy)"),
    "peoples-speech": DatasetSpec(
        "peoples-speech",
        "MLCommons/peoples_speech",
        id_column="id",
        configs=("clean", "clean_sa", "dirty", "dirty_sa"),
        default_config="clean",
        splits=("test", "validation"),
        description="People's Speech test: diverse public-domain speech",
    ),
}


def hub_spec(
    path: str,
    audio_column: str = "audio",
    text_column: str = "text",
    id_column: str | None = None,
    config: str | None = None,
    split: str = "test",
) -> DatasetSpec:
    """A spec for any other dataset: a Hub id, a local folder of Parquet files, or one Parquet file."""
    return DatasetSpec(
        name=path, path=path, audio_column=audio_column, text_column=text_column, id_column=id_column,
        default_config=config, default_split=split,
    )  # fmt: skip
