"""`tinyaudio transcribe` and the files it writes: bad options, odd names, full disks, kills, and files it must
never replace. A tiny random checkpoint stands in for a model: what is checked is everything around it.

Some tests run the CLI as its own process, as a user or a script would: a pipe for stderr, /dev/full for
stdout, a signal that ends the process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import srt
import webvtt
from conftest import probe_duration
from tinystack import build_checkpoint
from typer.testing import CliRunner

from tinyaudio_cli.cli import app

LOG = ".tinyaudio-outputs.jsonl"
NO_SUCH_MODEL = "/nonexistent/tinyaudio-model"  # loading it would fail loudly: proof that nothing tried


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("stack"), "smollm3")


@pytest.fixture
def wav(encoded, tmp_path) -> Path:
    """A short spoken sentence in a folder of its own."""
    folder = tmp_path / "media"
    folder.mkdir()
    return Path(shutil.copy(encoded["wav 22.05k s16"], folder / "talk.wav"))


def run(model: Path | str, *args: str | Path):
    args = ("transcribe", *map(str, args), "-m", str(model), "--device", "cpu", "--max-new-tokens", "6")
    return CliRunner().invoke(app, args)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def cli(*args: str | Path, stdout=subprocess.PIPE, prelude: str = "") -> subprocess.CompletedProcess:
    """The CLI in a process of its own, stderr to a pipe (rich then assumes 80 columns), `prelude` run first."""
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    env["HF_HUB_OFFLINE"] = "1"
    code = f"import sys\n{prelude}\nfrom tinyaudio_cli.cli import main\nsys.argv[0] = 'tinyaudio'\nmain()\n"
    return subprocess.run(
        [sys.executable, "-c", code, "transcribe", *map(str, args), "--device", "cpu", "--max-new-tokens", "6"],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=600,
    )


def temps(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*.tmp"))


# -- options ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [",", ""])
def test_a_format_list_naming_no_format_is_a_usage_error(checkpoint, wav, value):
    result = run(checkpoint, wav, "-f", value)
    assert result.exit_code == 2, result.output
    assert len(lines(result.output)) == 1 and "-f" in result.output
    assert sorted(p.name for p in wav.parent.iterdir()) == ["talk.wav"]


def test_output_folder_problems_stop_the_run_before_the_model_loads(wav, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    result = run(NO_SUCH_MODEL, wav, "-o", a_file)
    assert result.exit_code == 2, result.output
    assert lines(result.output) == [f"error: -o {a_file} is a file, not a folder"]
    assert a_file.read_text() == "not a folder"
    for inside in (a_file / "out", a_file / "out" / "deeper"):  # a folder that could never be made
        result = run(NO_SUCH_MODEL, wav, "-o", inside)
        assert result.exit_code == 1 and lines(result.output) == [f"error: {a_file} is not a folder"]
    locked = unwritable_folder(tmp_path)
    result = run(NO_SUCH_MODEL, wav, "-o", locked / "transcripts")
    assert result.exit_code == 1, result.output
    assert len(lines(result.output)) == 1 and f"cannot write to {locked}" in result.output


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder no file can be created in, even by root (who ignores permission bits)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    for candidate in (locked, Path("/sys"), Path("/proc")):
        try:
            (candidate / "probe").touch()
        except OSError:
            return candidate
        (candidate / "probe").unlink()
    pytest.skip("no folder here refuses new files")


# -- names ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name_bytes", [242, 255])
def test_a_media_name_up_to_the_file_system_limit_is_transcribed(checkpoint, wav, name_bytes):
    media = wav.with_name("é" * ((name_bytes - 4) // 2) + "x" * ((name_bytes - 4) % 2) + ".wav")
    assert len(os.fsencode(media.name)) == name_bytes
    wav.rename(media)
    result = run(checkpoint, media, "-q")
    assert result.exit_code == 0, result.output
    assert media.with_suffix(".txt").read_text().strip()
    assert temps(media.parent) == []


def test_an_output_name_over_the_limit_is_refused_before_the_model_loads(wav):
    media = wav.rename(wav.with_name("x" * 251 + ".wav"))  # 255 bytes; its .json would be 256
    result = run(NO_SUCH_MODEL, media, "--json", "-q")
    assert result.exit_code == 1
    [line] = lines(result.output)
    assert line.startswith(f"failed {media}: ") and "256 bytes" in line
    assert sorted(p.name for p in media.parent.iterdir()) == [media.name]


# -- stdout -----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_stdout_is_one_line_and_a_failure(checkpoint, wav):
    with open("/dev/full", "w") as full:
        result = cli(wav, "-m", checkpoint, "-o", "-", "-q", stdout=full)
    assert result.returncode == 1
    assert lines(result.stderr) == ["error: cannot write to standard output: No space left on device"]


@pytest.mark.parametrize("fmt", ["srt", "vtt", "tsv"])
def test_stdout_takes_one_recording_in_formats_made_for_one(checkpoint, wav, fmt):
    other = Path(shutil.copy(wav, wav.with_name("other.wav")))
    result = run(checkpoint, wav, other, "-o", "-", "-f", fmt)
    assert result.exit_code == 2
    assert result.stdout == "" and len(lines(result.output)) == 1 and "one input" in result.output
    one = run(checkpoint, wav, "-o", "-", "-f", fmt, "-q")
    assert one.exit_code == 0
    if fmt == "srt":
        indices = [cue.index for cue in srt.parse(one.stdout, ignore_errors=False)]
        assert indices == list(range(1, len(indices) + 1)) and indices
    elif fmt == "vtt":
        assert webvtt.from_string(one.stdout).captions


def test_stdout_takes_many_recordings_as_txt_and_json(checkpoint, wav):
    other = Path(shutil.copy(wav, wav.with_name("other.wav")))
    texts = run(checkpoint, wav, other, "-o", "-", "-q")
    assert texts.exit_code == 0 and len(lines(texts.stdout)) == 2
    documents = run(checkpoint, wav, other, "-o", "-", "--json", "-q")
    assert documents.exit_code == 0
    assert [set(json.loads(line)) >= {"text", "segments"} for line in lines(documents.stdout)] == [True, True]


# -- files tinyaudio did not write ------------------------------------------------------------------------


def test_a_reference_transcript_beside_its_audio_is_never_replaced(checkpoint, wav):
    """The layout `eval --folder` reads: clip.wav beside clip.txt, the reference. Transcribing it to txt
    must neither replace the reference (even with --overwrite) nor pass for "already done"."""
    reference = wav.with_suffix(".txt")
    reference.write_text("the quick brown fox jumps over the lazy dog\n")
    for extra in ([], ["--overwrite"]):
        result = run(NO_SUCH_MODEL, wav, *extra)
        assert result.exit_code == 1, result.output
        assert f"failed {wav}: {reference} was not written by tinyaudio" in result.output
        assert reference.read_text() == "the quick brown fox jumps over the lazy dog\n"
    # other formats are not in the way
    assert run(checkpoint, wav, "--srt", "-q").exit_code == 0 and wav.with_suffix(".srt").is_file()


def test_an_interrupted_batch_resumes_and_an_edited_output_is_kept(checkpoint, wav, tmp_path):
    out = tmp_path / "out"
    assert run(checkpoint, wav, "--srt", "--json", "-o", out, "-q").exit_code == 0
    subtitles = out / "talk.srt"
    stamp = subtitles.stat().st_mtime_ns
    again = run(NO_SUCH_MODEL, wav, "--srt", "--json", "-o", out)  # done: the model is not even loaded
    assert again.exit_code == 0 and "skipped" in again.output and subtitles.stat().st_mtime_ns == stamp
    (out / "talk.json").unlink()  # half done: redone, its own srt replaced
    assert run(checkpoint, wav, "--srt", "--json", "-o", out, "-q").exit_code == 0
    assert (out / "talk.json").is_file()
    assert run(checkpoint, wav, "--srt", "-o", out, "--overwrite", "-q").exit_code == 0
    assert subtitles.stat().st_mtime_ns != stamp
    subtitles.write_text(subtitles.read_text().replace("00:00:00", "00:00:01"))  # the user fixes a timing
    edited = subtitles.read_text()
    result = run(checkpoint, wav, "--srt", "-o", out, "--overwrite")
    assert result.exit_code == 1 and "was not written by tinyaudio (or was edited since)" in result.output
    assert subtitles.read_text() == edited


# -- kills ------------------------------------------------------------------------------------------------

# Fault injection at the operating system's edge: the signal arrives while the output's bytes are being
# flushed to disk, that is while the temporary file exists.
SIGNAL_DURING_FSYNC = """
import os, signal
_fsync = os.fsync
def fsync(fd):
    os.kill(os.getpid(), signal.{name})
    _fsync(fd)
os.fsync = fsync
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_while_writing_removes_the_temporary_file(checkpoint, wav):
    result = cli(wav, "-m", checkpoint, "-q", prelude=SIGNAL_DURING_FSYNC.format(name="SIGTERM"))
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert lines(result.stderr) == ["stopped by SIGTERM"]
    assert sorted(p.name for p in wav.parent.iterdir() if p.name != LOG) == ["talk.wav"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and locks")
def test_a_temp_left_by_a_killed_run_is_removed_by_the_next(checkpoint, wav):
    import fcntl

    killed = cli(wav, "-m", checkpoint, "-q", prelude=SIGNAL_DURING_FSYNC.format(name="SIGKILL"))
    assert killed.returncode == -signal.SIGKILL
    [left] = temps(wav.parent)
    folder = wav.parent
    strangers = [folder / ".tinyaudio-notes.tmp", folder / ".talk.txt.tmp", folder / "draft.tmp"]
    for stranger in strangers:  # not our exact pattern: never touched
        stranger.write_text("someone else's")
    live = folder / ".tinyaudio-0123456789abcdef.tmp"  # ours, but a live writer holds it
    with open(live, "w") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        result = run(checkpoint, wav, "-q")
        assert result.exit_code == 0, result.output
        assert wav.with_suffix(".txt").read_text().strip()
        assert not (folder / left).exists() and live.exists()
    assert all(stranger.read_text() == "someone else's" for stranger in strangers)
    assert run(checkpoint, wav, "--overwrite", "-q").exit_code == 0  # nobody holds it now
    assert not live.exists()


# -- long files without VAD ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [[], ["--reference-mode"]])
def test_no_vad_reads_the_whole_file_in_30_second_windows(checkpoint, long_speech, tmp_path, mode):
    result = run(checkpoint, long_speech.path, "--no-vad", *mode, "--json", "-o", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / f"{long_speech.path.stem}.json").read_text())
    duration = probe_duration(long_speech.path)
    assert data["duration"] == pytest.approx(duration, abs=0.01) and duration > 35
    windows = [(segment["start"], segment["end"]) for segment in data["segments"]]
    assert windows == [(0.0, 30.0), (30.0, pytest.approx(duration, abs=0.01))]


# -- what the user sees -----------------------------------------------------------------------------------


@pytest.mark.slow  # whole processes or runs: out of the fast loop (-m 'not slow')
def test_failed_lines_are_one_line_each_in_a_pipe(checkpoint, encoded, tmp_path):
    deep = tmp_path / ("a_rather_long_folder_name_for_recordings_" * 3) / "2026-11-30 interviews and meetings"
    deep.mkdir(parents=True)
    broken = deep / "the meeting with the whole team about the quarterly plan.wav"
    broken.write_text("meeting notes, not audio\n" * 20)
    good = Path(shutil.copy(encoded["flac 44.1k"], deep / "fine.flac"))
    assert len(f"failed {broken}: ") > 200
    result = cli(broken, good, "-m", checkpoint, "-o", tmp_path / "out")
    assert result.returncode == 1
    failed = [line for line in result.stderr.splitlines() if str(broken) in line]
    assert len(failed) == 2, result.stderr  # as it happens, and in the summary
    assert failed[0].startswith(f"failed {broken}: cannot decode {broken}: not a readable audio or video file")
    assert failed[1].strip().startswith(f"✗ {broken}: cannot decode")
