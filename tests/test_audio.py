"""Decoding through ffmpeg: formats, channel mixing, resampling, streaming, errors, and finding media files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import probe_duration, run_ffmpeg

from tinyaudio_cli.audio import media as audio
from tinyaudio_cli.audio.media import (
    MEDIA_EXTENSIONS,
    SAMPLE_RATE,
    AudioDecodeError,
    find_ffmpeg,
    find_media,
    header_seconds,
    load_audio,
    stream_audio,
)
from tinyaudio_cli.errors import TinyAudioError

# How far a decoded length may stray from the source's: lossless and well-tagged formats are trimmed
# exactly; ffmpeg keeps AAC's last frame whole (up to 1024 samples at 44.1 kHz = 23 ms).
DURATION_TOLERANCE = {"m4a aac": 0.025, "mp4 video": 0.025}
DEFAULT_TOLERANCE = 0.003


def source_duration(path: Path) -> float:
    return sf.info(path).duration


def dominant_frequency(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)[np.argmax(spectrum)])


@pytest.mark.parametrize(
    "name",
    ["wav 22.05k s16", "wav 48k s24 stereo", "wav 8k u8", "flac 44.1k", "mp3", "opus", "m4a aac", "mp4 video"],
)
def test_every_format_decodes_to_16k_mono_float32_of_the_right_length(encoded, source_wav, name):
    samples = load_audio(encoded[name])
    assert samples.dtype == np.float32 and samples.ndim == 1
    expected = source_duration(source_wav)
    assert len(samples) / SAMPLE_RATE == pytest.approx(expected, abs=DURATION_TOLERANCE.get(name, DEFAULT_TOLERANCE))
    assert 0.05 < np.abs(samples).max() <= 1.0  # the speech is there, at its level


def test_lossless_decode_matches_ffprobe_duration_and_the_source_samples(encoded, source_wav):
    for name in ("wav 22.05k s16", "wav 48k s24 stereo", "flac 44.1k"):
        samples = load_audio(encoded[name])
        assert len(samples) / SAMPLE_RATE == pytest.approx(probe_duration(encoded[name]), abs=0.002)
    # The same speech through different lossless routes lands on the same 16 kHz samples.
    reference = load_audio(source_wav)
    flac = load_audio(encoded["flac 44.1k"])
    length = min(len(reference), len(flac))
    assert np.corrcoef(reference[:length], flac[:length])[0, 1] > 0.99


def test_stereo_is_mixed_down_from_both_channels(media_dir):
    path = media_dir / "two_tones.wav"
    # Left and right carry different tones: a mono mix must hold both, at half the level of each.
    run_ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2",
        "-f", "lavfi", "-i", "sine=frequency=1500:sample_rate=44100:duration=2",
        "-filter_complex", "[0:a][1:a]join=inputs=2:channel_layout=stereo", path,
    )  # fmt: skip
    channels, _ = sf.read(path, dtype="float32")
    assert channels.shape[1] == 2
    assert dominant_frequency(channels[:16384, 0]) != dominant_frequency(channels[:16384, 1])
    samples = load_audio(path)
    spectrum = np.abs(np.fft.rfft(samples))
    frequencies = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    peaks = sorted(frequencies[np.argsort(spectrum)[-2:]])
    assert peaks == pytest.approx([440, 1500], abs=1)
    assert spectrum[np.argsort(spectrum)[-1]] / spectrum[np.argsort(spectrum)[-2]] == pytest.approx(1, abs=0.1)


def test_mono_mix_is_the_mean_of_the_channels(media_dir, source_wav):
    """As `datasets` and librosa mix channels (what models are trained on), on both decoding routes:
    ffmpeg for files, soundfile for 16 kHz bytes in a dataset."""
    from tinyaudio_cli.data.evaldata import decode_audio_bytes

    speech = load_audio(source_wav)
    path = media_dir / "stereo16k.wav"
    sf.write(path, np.stack([speech, 0.5 * speech], axis=1), SAMPLE_RATE, subtype="PCM_16")
    channels, _ = sf.read(path, dtype="float32")
    np.testing.assert_allclose(load_audio(path), channels.mean(axis=1), atol=1e-7)
    np.testing.assert_allclose(decode_audio_bytes(path.read_bytes()), load_audio(path), atol=1e-7)
    assert np.abs(load_audio(path)).max() <= 1.0


@pytest.mark.parametrize(("suffix", "subtype"), [("wav", "PCM_16"), ("wav", "FLOAT"), ("flac", "PCM_24")])
def test_16k_mono_files_give_ffmpegs_samples(media_dir, source_wav, suffix, subtype):
    """Such files are read without starting ffmpeg; the samples must be the ones ffmpeg gives."""
    path = media_dir / f"mono16k_{subtype}.{suffix}"
    sf.write(path, load_audio(source_wav), SAMPLE_RATE, subtype=subtype)
    by_ffmpeg = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", path, "-f", "f32le", "-ac", "1", "pipe:"],
        check=True,
        capture_output=True,
    ).stdout
    np.testing.assert_array_equal(load_audio(path), np.frombuffer(by_ffmpeg, dtype=np.float32))
    np.testing.assert_array_equal(load_audio(path), np.concatenate(list(stream_audio(path))))


def test_entry_lengths_come_from_headers(encoded: dict[str, Path]) -> None:
    """What ranks share files and samples out by: read from the header (bytes or file alike), estimated from the
    size where libsndfile reads no header (AAC)."""
    for name, path in encoded.items():
        seconds = header_seconds(path)
        assert seconds == header_seconds(path.read_bytes()), name
        if "aac" in name or "video" in name:
            assert 0.25 * probe_duration(path) < seconds < 4 * probe_duration(path), name
        else:
            assert seconds == pytest.approx(probe_duration(path), abs=0.05), name
    assert header_seconds(Path("/no/such/file.wav")) == 0.0


def test_resampling_keeps_pitch_and_length(media_dir):
    path = media_dir / "tone_44k.wav"
    run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100:duration=3", path)
    samples = load_audio(path)
    assert len(samples) == 3 * SAMPLE_RATE
    assert dominant_frequency(samples) == pytest.approx(1000, abs=1)


def test_stream_blocks_concatenate_to_the_whole_file(encoded):
    path = encoded["wav 48k s24 stereo"]
    blocks = list(stream_audio(path, block_seconds=0.37))
    assert all(len(block) == round(0.37 * SAMPLE_RATE) for block in blocks[:-1])
    assert 0 < len(blocks[-1]) <= round(0.37 * SAMPLE_RATE)
    np.testing.assert_array_equal(np.concatenate(blocks), load_audio(path))


def test_long_input_streams_in_bounded_blocks(ten_minutes):
    block_samples = 10 * SAMPLE_RATE
    total = 0
    tracemalloc.start()
    try:
        for block in stream_audio(ten_minutes, block_seconds=10):
            assert len(block) <= block_samples
            total += len(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 600 * SAMPLE_RATE
    whole = total * 4
    assert peak < whole / 10, f"peak {peak / 1e6:.1f} MB for a {whole / 1e6:.0f} MB decode"


def ffmpeg_children() -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            name = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and "ffmpeg" in name:
            children.append(int(stat.parent.name))
    return children


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_stopping_early_ends_ffmpeg(ten_minutes):
    blocks = stream_audio(ten_minutes, block_seconds=1)
    next(blocks)
    assert ffmpeg_children(), "ffmpeg should be running while the stream is open"
    blocks.close()
    assert ffmpeg_children() == []


def test_a_file_name_that_looks_like_a_protocol_decodes(tmp_path, source_wav):
    path = tmp_path / "interview: part 1.wav"
    shutil.copy(source_wav, path)
    assert len(load_audio(path)) == len(load_audio(source_wav))


def test_a_truncated_wav_decodes_what_is_there(tmp_path, encoded):
    whole = encoded["wav 48k s24 stereo"].read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(whole[: len(whole) // 2])
    full, half = len(load_audio(encoded["wav 48k s24 stereo"])), len(load_audio(path))
    assert half == pytest.approx(full / 2, abs=SAMPLE_RATE * 0.01)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("video without audio", "no audio stream"),
        ("empty", "empty"),
        ("truncated mp4", "not a readable audio or video file"),
        ("text named .mp4", "not a readable audio or video file"),
    ],
)
def test_undecodable_files_raise_one_clear_line(broken, kind, reason):
    path = broken[kind]
    with pytest.raises(AudioDecodeError) as caught:
        load_audio(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in caught.value.message and reason in caught.value.message
    assert isinstance(caught.value, TinyAudioError) and caught.value.hint


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_named_as_one_and_never_read(tmp_path):
    fifo = tmp_path / "live.wav"
    os.mkfifo(fifo)  # nobody writes to it: reading it would wait for ever
    for decode in (load_audio, lambda path: next(stream_audio(path))):
        with pytest.raises(AudioDecodeError) as caught:
            decode(fifo)
        assert caught.value.reason == "not a regular file (FIFO)"


def test_a_corrupt_mp3_says_so_with_ffmpegs_reason(tmp_path, encoded):
    """ffmpeg's last word on these is "Invalid argument" (EINVAL), which tells a user nothing."""
    mp3 = encoded["mp3"].read_bytes()
    noise = np.random.default_rng(0).bytes(5000)
    cases = {
        "noise.mp3": noise,  # not an mp3 at all, but named one
        "header_only.mp3": mp3[:10],
        "id3_then_noise.mp3": b"ID3\x03\x00\x00\x00\x00\x00\x0a" + bytes(10) + noise,
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(AudioDecodeError) as caught:
            load_audio(path)
        assert caught.value.reason.startswith("corrupt or unsupported mp3 file"), caught.value.reason
        assert "Invalid argument" not in caught.value.message


def test_missing_file_and_directory_raise(tmp_path):
    with pytest.raises(AudioDecodeError, match="no such file") as caught:
        next(stream_audio(tmp_path / "nowhere.wav"))
    assert str(tmp_path / "nowhere.wav") in caught.value.message
    with pytest.raises(AudioDecodeError, match="directory"):
        load_audio(tmp_path)


def test_silence_is_audio_but_a_zero_length_stream_is_not(tmp_path, silence_wav):
    assert len(load_audio(silence_wav)) == 6 * SAMPLE_RATE
    path = tmp_path / "nothing.wav"
    sf.write(path, np.zeros(0, np.float32), SAMPLE_RATE)  # a valid header with no samples
    with pytest.raises(AudioDecodeError, match="contains no audio"):
        load_audio(path)


def test_ffmpeg_failure_reason_picks_the_telling_line():
    path = Path("/media/x.mp4")
    stderr = [
        "[in#0 @ 0x55bf710d80c0] moov atom not found\n",
        "[in#0 @ 0x55bf710d7d40] Error opening input: Invalid data found when processing input\n",
        "Error opening input file file:/media/x.mp4.\n",
        "Error opening input files: Invalid data found when processing input\n",
    ]
    assert audio._failure_reason(stderr, path) == "not a readable audio or video file (moov atom not found)"
    newer = [
        "[out#0/f32le @ 0x55ba14629480] Output file does not contain any stream\n",
        "Error opening output file -.\n",
    ]
    assert audio._failure_reason(newer, path) == "it has no audio stream"
    assert audio._failure_reason(["file:/media/x.mp4: Something odd happened\n"], path) == "Something odd happened"


def test_find_ffmpeg_prefers_path_then_imageio(monkeypatch, tmp_path):
    find_ffmpeg.cache_clear()
    if shutil.which("ffmpeg"):
        assert find_ffmpeg() == shutil.which("ffmpeg")
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    monkeypatch.setenv("PATH", str(tmp_path))
    find_ffmpeg.cache_clear()
    try:
        shipped = find_ffmpeg()
        assert shipped == imageio_ffmpeg.get_ffmpeg_exe()
        assert subprocess.run([shipped, "-version"], capture_output=True, check=True).stdout.startswith(b"ffmpeg")
    finally:
        find_ffmpeg.cache_clear()


def test_find_ffmpeg_without_any_ffmpeg_explains_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if it were not installed
    find_ffmpeg.cache_clear()
    try:
        with pytest.raises(TinyAudioError) as caught:
            find_ffmpeg()
        assert "imageio-ffmpeg" in caught.value.hint and "install ffmpeg" in caught.value.hint
    finally:
        find_ffmpeg.cache_clear()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in [
        "b.mp3", "a.WAV", "notes.txt", "clip.MP4", "sub/z.flac", "sub/deeper/y.opus", "sub/readme.md",
        "sub/custom.xyz", ".hidden.wav", ".cache/x.wav", "sub/.git/objects.m4a", "aa/c.mkv",
    ]:  # fmt: skip
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path


def test_find_media_walks_folders_sorted_and_skips_hidden(tree):
    found = [path.relative_to(tree).as_posix() for path in find_media([tree])]
    assert found == ["a.WAV", "b.mp3", "clip.MP4", "aa/c.mkv", "sub/z.flac", "sub/deeper/y.opus"]


def test_find_media_extra_extensions_and_explicit_files(tree):
    found = {path.relative_to(tree).as_posix() for path in find_media([tree / "sub"], extra_extensions=[".XYZ"])}
    assert found == {"sub/z.flac", "sub/deeper/y.opus", "sub/custom.xyz"}
    # A file named on the command line is wanted whatever its extension; naming it twice finds it once.
    assert find_media([tree / "notes.txt", tree / "b.mp3", tree / "notes.txt"]) == [tree / "notes.txt", tree / "b.mp3"]


def test_folders_skip_typescript_but_keep_transport_streams(tmp_path):
    run_ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", "-f", "mpegts", tmp_path / "broadcast.ts")
    run_ffmpeg(
        "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "ac3", "-f", "mpegts", "-mpegts_m2ts_mode", "1",
        tmp_path / "camcorder.mts",
    )  # fmt: skip
    (tmp_path / "app.ts").write_text("export const greeting: string = 'hello';\n" * 20)
    (tmp_path / "types.d.ts").write_text("declare module 'x';\n")
    (tmp_path / "module.mts").write_text("Greeting();\n" * 40)  # starts with G (0x47), as a packet would
    (tmp_path / "empty.ts").write_bytes(b"")
    found = [path.name for path in find_media([tmp_path])]
    assert found == ["broadcast.ts", "camcorder.mts"]
    assert load_audio(tmp_path / "camcorder.mts").size == pytest.approx(SAMPLE_RATE, rel=0.1)
    assert find_media([tmp_path / "app.ts"]) == [tmp_path / "app.ts"]  # named explicitly: taken as given


def test_find_media_missing_input_raises(tree):
    with pytest.raises(TinyAudioError, match="no such file or directory") as caught:
        find_media([tree / "b.mp3", tree / "gone.wav"])
    assert str(tree / "gone.wav") in str(caught.value)


COMMON_EXTENSIONS = "wav flac mp3 m4a aac ogg oga opus wma aiff aif webm mp4 m4v mkv mov avi wmv flv mpg mpeg ts 3gp"


def test_media_extensions_cover_common_audio_and_video():
    assert {f".{extension}" for extension in [*COMMON_EXTENSIONS.split(), "amr"]} <= MEDIA_EXTENSIONS
    assert all(extension == extension.lower() and extension.startswith(".") for extension in MEDIA_EXTENSIONS)
