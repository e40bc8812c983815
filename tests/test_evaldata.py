"""Evaluation sources on real files: a LoquaciousSet-schema Parquet set read through `datasets`,
a Hub-cache snapshot of it, manifests and folders. Undecodable audio must come back as an error."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from conftest import LOQUACIOUS_CARD, SENTENCES, espeak, run_ffmpeg

from tinyaudio_cli.data.entries import EvalSample, decoded, folder_entries, manifest_entries
from tinyaudio_cli.data.evaldata import DATASETS, decode_audio_bytes, hub_entries, hub_spec, resolve_dataset
from tinyaudio_cli.errors import TinyAudioError

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

SR = 16_000
PCM16_STEP = 1 / 32768
BROKEN_WAV = b"RIFF\x24\x00\x00\x00WAVEfmt this is not audio at all"
LOQUACIOUS_SCHEMA = pa.schema(
    [
        ("ID", pa.string()),
        ("duration", pa.float64()),
        ("wav", pa.binary()),
        ("spk_id", pa.string()),
        ("sex", pa.string()),
        ("text", pa.string()),
    ]
)


def iter_hub_dataset(*args: object, **kwargs: object) -> list[EvalSample]:
    return list(decoded(hub_entries(*args, **kwargs)))


def iter_manifest(*args: object, **kwargs: object) -> list[EvalSample]:
    return list(decoded(manifest_entries(*args, **kwargs)))


def iter_folder(*args: object, **kwargs: object) -> list[EvalSample]:
    return list(decoded(folder_entries(*args, **kwargs)))


def encode(audio: np.ndarray, rate: int = SR, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def row(uid: str, text: str, wav: bytes, duration: float) -> dict:
    return {"ID": uid, "duration": duration, "wav": wav, "spk_id": "spk-" + uid, "sex": "F", "text": text}


@pytest.fixture(scope="module")
def speech(media_dir: Path) -> list[np.ndarray]:
    return [espeak(media_dir, sentence) for sentence in SENTENCES[:4]]


@pytest.fixture(scope="module")
def loquacious(tmp_path_factory: pytest.TempPathFactory, speech: list[np.ndarray], source_wav: Path) -> dict:
    """A LoquaciousSet-shaped folder: test/ in two shards, dev/ in one, each a Parquet file of that schema.

    Rows cover the ways audio arrives: 16 kHz WAV, 16 kHz stereo FLAC (downmixed), 22.05 kHz WAV
    (resampled by ffmpeg) and a blob that is no audio at all.
    """
    root = tmp_path_factory.mktemp("loquacious")
    stereo = np.stack([speech[1], 0.5 * speech[1]], axis=1)
    native = source_wav.read_bytes()  # espeak-ng's own 22.05 kHz 16-bit mono
    shards = {
        "test/test-00000-of-00002.parquet": [
            row("utt-1", SENTENCES[0], encode(speech[0]), len(speech[0]) / SR),
            row("utt-2", SENTENCES[1], encode(stereo, fmt="FLAC"), len(speech[1]) / SR),
        ],
        "test/test-00001-of-00002.parquet": [
            row("utt-3", SENTENCES[0], native, sf.info(io.BytesIO(native)).duration),
            row("utt-broken", SENTENCES[2], BROKEN_WAV, 4.25),
        ],
        "dev/dev-00000-of-00001.parquet": [row("dev-1", SENTENCES[3], encode(speech[3]), len(speech[3]) / SR)],
    }
    for name, rows in shards.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=LOQUACIOUS_SCHEMA), root / name)
    native_audio, native_rate = sf.read(io.BytesIO(native), dtype="float32")
    expected = {
        "utt-1": speech[0],
        "utt-2": 0.75 * speech[1],
        "dev-1": speech[3],
        "utt-3": (native_audio, native_rate),
    }
    return {"root": root, "expected": expected}


def by_id(samples: list[EvalSample]) -> dict[str, EvalSample]:
    return {sample.id: sample for sample in samples}


def test_local_loquacious_set_through_datasets(loquacious: dict) -> None:
    spec = resolve_dataset("loquacious", path=str(loquacious["root"]))
    samples = list(iter_hub_dataset(spec, split="test"))
    assert [sample.id for sample in samples] == ["utt-1", "utt-2", "utt-3", "utt-broken"]
    found, expected = by_id(samples), loquacious["expected"]

    for uid in ("utt-1", "utt-2"):
        sample = found[uid]
        assert sample.error is None
        assert sample.audio.dtype == np.float32 and sample.audio.ndim == 1
        np.testing.assert_allclose(sample.audio, expected[uid], atol=2 * PCM16_STEP)
        assert sample.duration == pytest.approx(len(expected[uid]) / SR)
    assert found["utt-1"].text == SENTENCES[0]

    # 22.05 kHz went through ffmpeg: the same length in seconds at 16 kHz.
    native_audio, native_rate = expected["utt-3"]
    assert found["utt-3"].duration == pytest.approx(len(native_audio) / native_rate, abs=0.01)
    assert found["utt-3"].error is None


def test_broken_audio_is_yielded_with_an_error(loquacious: dict) -> None:
    spec = resolve_dataset("loquacious", path=str(loquacious["root"]))
    broken = by_id(list(iter_hub_dataset(spec, split="test")))["utt-broken"]
    assert broken.audio is None
    assert broken.error
    assert broken.text == SENTENCES[2]
    assert broken.duration == 4.25  # from the duration column, the audio being unreadable


def test_dev_split_keeps_its_name(loquacious: dict) -> None:
    spec = resolve_dataset("loquacious", path=str(loquacious["root"]))
    [sample] = iter_hub_dataset(spec, split="dev")
    assert sample.id == "dev-1"
    np.testing.assert_allclose(sample.audio, loquacious["expected"]["dev-1"], atol=2 * PCM16_STEP)


def test_max_samples(loquacious: dict) -> None:
    spec = resolve_dataset("loquacious", path=str(loquacious["root"]))
    assert [s.id for s in iter_hub_dataset(spec, max_samples=2)] == ["utt-1", "utt-2"]
    assert [s.id for s in iter_hub_dataset(spec, max_samples=0)] == []


def test_streaming_shuffle_is_seeded(tmp_path: Path) -> None:
    # One Parquet file of short tones: shuffling happens in datasets' buffer, decoding stays cheap.
    tone = np.sin(np.arange(SR // 10) * 0.3).astype(np.float32) * 0.1
    rows = [row(f"u{i}", f"text {i}", encode(tone), 0.1) for i in range(12)]
    path = tmp_path / "test.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=LOQUACIOUS_SCHEMA), path)
    spec = resolve_dataset("loquacious", path=str(path))
    natural = [s.id for s in iter_hub_dataset(spec)]
    shuffled = [s.id for s in iter_hub_dataset(spec, shuffle=True, seed=3)]
    assert sorted(shuffled) == sorted(natural) and shuffled != natural
    assert [s.id for s in iter_hub_dataset(spec, shuffle=True, seed=3, max_samples=5)] == shuffled[:5]


def test_cached_hub_snapshot_is_read_offline(loquacious: dict, tmp_path: Path) -> None:
    """The Hub id resolves to a snapshot in the Hub cache, loaded with the configs its README declares."""
    repo = tmp_path / "datasets--speechbrain--LoquaciousSet"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snapshot = repo / "snapshots" / "0123abcd"
    shutil.copytree(loquacious["root"], snapshot)
    (snapshot / "README.md").write_text(LOQUACIOUS_CARD)

    samples = list(iter_hub_dataset(DATASETS["loquacious"], cache_dir=tmp_path))
    assert [sample.id for sample in samples] == ["utt-1", "utt-2", "utt-3", "utt-broken"]
    with pytest.raises(TinyAudioError, match="lacks it"):
        list(iter_hub_dataset(DATASETS["loquacious"], config="large", cache_dir=tmp_path))


PARTIAL_CARD = """---
configs:
- config_name: medium
  data_files:
  - split: train
    path: data/medium/train/*.parquet
  - split: dev
    path: data/dev/*.parquet
  - split: test
    path: data/test/*.parquet
---
# A snapshot holding one split, as `tinyaudio download --split test` leaves it
"""


def test_snapshot_with_only_the_downloaded_split(loquacious: dict, tmp_path: Path) -> None:
    """The card declares train, dev and test but only test's files are there: test reads offline, and dev
    (absent here, and the Hub unreachable) names the download command instead of failing inside datasets."""
    repo = tmp_path / "datasets--speechbrain--LoquaciousSet"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("4567cdef")
    snapshot = repo / "snapshots" / "4567cdef"
    shutil.copytree(loquacious["root"] / "test", snapshot / "data" / "test")
    (snapshot / "README.md").write_text(PARTIAL_CARD)

    spec = DATASETS["loquacious"]
    samples = list(iter_hub_dataset(spec, config="medium", split="test", cache_dir=tmp_path))
    assert [sample.id for sample in samples] == ["utt-1", "utt-2", "utt-3", "utt-broken"]
    assert by_id(samples)["utt-1"].error is None
    with pytest.raises(TinyAudioError) as caught:
        list(iter_hub_dataset(spec, config="medium", split="dev", cache_dir=tmp_path))
    assert "not cached" in caught.value.message and "lacks it" in caught.value.message
    assert "'dev'" in caught.value.message
    assert "tinyaudio download --data loquacious,split=dev,config=medium" in caught.value.hint


def test_uncached_hub_dataset_names_the_download_command(tmp_path: Path) -> None:
    with pytest.raises(TinyAudioError) as caught:
        list(iter_hub_dataset(DATASETS["loquacious"], cache_dir=tmp_path))
    assert "not cached" in caught.value.message
    assert "tinyaudio download --data loquacious" in caught.value.hint


def test_unknown_config_split_and_dataset() -> None:
    with pytest.raises(TinyAudioError, match="no config"):
        list(iter_hub_dataset(DATASETS["loquacious"], config="huge"))
    with pytest.raises(TinyAudioError, match="no split"):
        list(iter_hub_dataset(DATASETS["loquacious"], split="train"))
    with pytest.raises(TinyAudioError, match="Unknown dataset"):
        resolve_dataset("librispeech")


def test_audio_feature_column_is_not_decoded_by_datasets(tmp_path: Path, speech: list[np.ndarray]) -> None:
    """A Parquet file whose metadata says Audio: datasets would decode it (through torchcodec) unless
    the column is cast to raw bytes first."""
    import datasets

    path = tmp_path / "audio_feature.parquet"
    table = datasets.Dataset.from_dict(
        {"audio": [{"bytes": encode(speech[0]), "path": "one.wav"}], "sentence": ["first"], "key": ["k1"]}
    ).cast_column("audio", datasets.Audio(sampling_rate=SR))
    table.to_parquet(path)
    spec = resolve_dataset(str(path), text_column="sentence", id_column="key")
    [sample] = iter_hub_dataset(spec)
    assert (sample.id, sample.text, sample.error) == ("k1", "first", None)
    np.testing.assert_allclose(sample.audio, speech[0], atol=2 * PCM16_STEP)


def test_missing_column_is_named(loquacious: dict) -> None:
    spec = hub_spec(str(loquacious["root"]), audio_column="audio")
    with pytest.raises(TinyAudioError, match="no column 'audio'"):
        list(iter_hub_dataset(spec))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, speech: list[np.ndarray]) -> Path:
    """A folder of clips in several formats, plus one that only pretends to be audio."""
    folder = tmp_path_factory.mktemp("clips")
    (folder / "audio").mkdir()
    sf.write(folder / "audio" / "one.wav", speech[0], SR, subtype="PCM_16")
    sf.write(folder / "audio" / "two.flac", speech[1], SR)
    run_ffmpeg("-i", folder / "audio" / "one.wav", "-c:a", "libmp3lame", folder / "audio" / "three.mp3")
    (folder / "audio" / "bad.wav").write_bytes(BROKEN_WAV)
    return folder


MANIFEST_ROWS = [
    {"audio": "audio/one.wav", "text": SENTENCES[0], "id": "one"},
    {"audio": "audio/two.flac", "text": SENTENCES[1]},
    {"audio": "audio/three.mp3", "text": SENTENCES[0], "id": "three"},
    {"audio": "audio/bad.wav", "text": "broken", "id": "bad"},
    {"audio": "audio/missing.wav", "text": "gone", "id": "missing"},
]


def check_manifest_samples(samples: list[EvalSample], speech: list[np.ndarray]) -> None:
    assert [s.id for s in samples] == ["one", "audio/two.flac", "three", "bad", "missing"]
    found = by_id(samples)
    np.testing.assert_allclose(found["one"].audio, speech[0], atol=2 * PCM16_STEP)
    assert found["audio/two.flac"].text == SENTENCES[1]
    assert found["three"].duration == pytest.approx(len(speech[0]) / SR, abs=0.08)  # MP3 pads its frames
    for uid in ("bad", "missing"):
        assert found[uid].audio is None and found[uid].error
    assert "no such file" in found["missing"].error


def test_jsonl_manifest(clips: Path, speech: list[np.ndarray]) -> None:
    manifest = clips / "eval.jsonl"
    manifest.write_text("\n".join(json.dumps(entry) for entry in MANIFEST_ROWS) + "\n\n")
    check_manifest_samples(list(iter_manifest(manifest)), speech)


def test_csv_manifest(clips: Path, speech: list[np.ndarray]) -> None:
    manifest = clips / "eval.csv"
    lines = ["audio,text,id"] + [f'{e["audio"]},"{e["text"]}",{e.get("id", "")}' for e in MANIFEST_ROWS]
    manifest.write_text("\n".join(lines) + "\n")
    check_manifest_samples(list(iter_manifest(manifest)), speech)


def test_manifest_sampling_is_seeded(tmp_path: Path) -> None:
    # Files that don't exist fail before any decoding, so this only exercises the sampling.
    manifest = tmp_path / "sampled.jsonl"
    manifest.write_text("\n".join(json.dumps({"audio": f"{i}.wav", "text": "x", "id": str(i)}) for i in range(8)))
    first = [s.id for s in iter_manifest(manifest, max_samples=3, shuffle=True, seed=7)]
    again = [s.id for s in iter_manifest(manifest, max_samples=3, shuffle=True, seed=7)]
    everything = [s.id for s in iter_manifest(manifest, shuffle=True, seed=7)]
    assert first == again == everything[:3]
    assert sorted(everything) == sorted(s.id for s in iter_manifest(manifest))
    assert everything != [s.id for s in iter_manifest(manifest)]


@pytest.mark.parametrize(
    ("name", "content"),
    [("no_text.jsonl", '{"audio": "a.wav"}\n'), ("bad.jsonl", "{not json\n"), ("list.txt", "a.wav hello\n")],
)
def test_malformed_manifest(tmp_path: Path, name: str, content: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(TinyAudioError):
        list(iter_manifest(tmp_path / name))


def test_folder_with_txt_references(tmp_path: Path, speech: list[np.ndarray]) -> None:
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "a.wav", speech[0], SR, subtype="PCM_16")
    (tmp_path / "a.txt").write_text(SENTENCES[0] + "\n")
    sf.write(tmp_path / "sub" / "b.flac", speech[1], SR)
    (tmp_path / "sub" / "b.txt").write_text(SENTENCES[1])
    sf.write(tmp_path / "c.wav", speech[2], SR)  # no c.txt
    (tmp_path / "notes.txt").write_text("not a reference of anything")

    samples = list(iter_folder(tmp_path))
    assert [s.id for s in samples] == ["a", "c", "sub/b"]
    found = by_id(samples)
    assert found["a"].text == SENTENCES[0]
    np.testing.assert_allclose(found["sub/b"].audio, speech[1], atol=1e-4)
    assert found["c"].audio is None and "c.txt" in found["c"].error
    assert [s.id for s in iter_folder(tmp_path, max_samples=1)] == ["a"]


def test_entries_decode_only_when_loaded(tmp_path: Path, speech: list[np.ndarray], loquacious: dict) -> None:
    manifest = tmp_path / "later.jsonl"
    manifest.write_text(json.dumps({"audio": "later.wav", "text": SENTENCES[0], "id": "later"}) + "\n")
    [entry] = manifest_entries(manifest)
    assert entry.seconds == 0.0  # nothing there yet
    sf.write(tmp_path / "later.wav", speech[0], SR, subtype="PCM_16")  # written after listing, before loading
    sample = entry.load()
    assert sample.error is None and sample.duration == pytest.approx(len(speech[0]) / SR)

    spec = resolve_dataset("loquacious", path=str(loquacious["root"]))
    entries = {entry.id: entry for entry in hub_entries(spec, split="test")}
    assert entries["utt-broken"].seconds == 4.25  # the duration column, though the audio is unreadable
    assert entries["utt-1"].seconds == pytest.approx(len(speech[0]) / SR)
    assert entries["utt-1"].text == SENTENCES[0]


def test_bytes_in_codecs_soundfile_cannot_read(encoded: dict[str, Path], source_wav: Path) -> None:
    reference = sf.info(source_wav).duration
    for name in ("m4a aac", "wav 48k s24 stereo", "mp3"):
        audio = decode_audio_bytes(encoded[name].read_bytes())
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert len(audio) / SR == pytest.approx(reference, abs=0.08), name
    with pytest.raises(TinyAudioError):
        decode_audio_bytes(b"")
