"""Audio facts every part of tinyaudio shares; decoding through ffmpeg lives here too."""

from __future__ import annotations

import collections
import contextlib
import functools
import io
import os
import re
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from tinyaudio_cli.constants import SAMPLE_RATE, WINDOW_SAMPLES, WINDOW_SECONDS
from tinyaudio_cli.errors import TinyAudioError

if TYPE_CHECKING:
    import numpy as np
    import soundfile

# numpy, soundfile and ffmpeg-python are imported where they are used: the CLI imports this module to parse
# its command line, and a shell's Tab starts the CLI (see cli/completion.py), so its imports must stay light.

__all__ = ["SAMPLE_RATE", "WINDOW_SAMPLES", "WINDOW_SECONDS"]  # re-exported: many modules read them from here

# A length guess for audio whose header libsndfile cannot read (AAC, video): 128 kbit/s.
COMPRESSED_BYTES_PER_SECOND = 16_000
BYTES_PER_SAMPLE = 4  # float32, as ffmpeg's f32le output writes them
STDERR_TAIL_LINES = 20  # a corrupt file can make ffmpeg log one line per packet

MEDIA_EXTENSIONS = frozenset(
    {
        # audio
        ".wav", ".wave", ".flac", ".mp3", ".m4a", ".m4b", ".aac", ".ogg", ".oga", ".opus",
        ".wma", ".aiff", ".aif", ".aifc", ".amr", ".ac3", ".eac3", ".caf", ".au", ".snd",
        ".mka", ".alac", ".ape", ".wv", ".spx", ".dts", ".mp2", ".mpga", ".weba",
        # video
        ".webm", ".mp4", ".m4v", ".mkv", ".mov", ".avi", ".wmv", ".asf", ".flv", ".mpg",
        ".mpeg", ".ts", ".mts", ".m2ts", ".3gp", ".3g2", ".ogv", ".vob", ".mxf",
    }
)  # fmt: skip

# Extensions MPEG transport streams share with TypeScript source (.ts, .d.ts, .mts): in a folder walk such a
# file counts as media only when its packets are there, 0x47 sync bytes every 188 bytes (192 for AVCHD's .mts).
TRANSPORT_STREAM_EXTENSIONS = frozenset({".ts", ".mts"})
TS_SYNC_BYTE = 0x47
TS_PACKET_LAYOUTS = ((0, 188), (4, 192))  # (offset of the first sync byte, packet size)

# ffmpeg's wording for the failures users actually hit, mapped to a plain reason.
_KNOWN_FAILURES = (
    ("does not contain any stream", "it has no audio stream"),
    ("matches no streams", "it has no audio stream"),
    ("Invalid data found when processing input", "not a readable audio or video file"),
    ("No such file or directory", "no such file"),
    ("Permission denied", "permission denied"),
)
_GENERIC_LINE = re.compile(
    r"^(Error opening (input|output) files?\b.*|Conversion failed!|Exiting normally.*"
    r"|To ignore this, add a trailing '\?' to the map\.)$"
)
_LOG_PREFIX = re.compile(r"^\[([^\]@ ]+)[^\]]* @ 0x[0-9a-f]+\]\s*")
# How ffmpeg ends when its demuxer gave up on the input without words for it (EINVAL's strerror); ffmpeg 7
# says it as "[in#0 @ 0x…] Error opening input: Invalid argument".
_OPEN_FAILED = re.compile(r"^(Error opening input: )?Invalid argument$")
_STREAM_LABEL = re.compile(r"^(in|out)#\d")  # ffmpeg 7's "[in#0 @ 0x…]" names a file, not a format


class AudioDecodeError(TinyAudioError):
    """A media file that ffmpeg cannot turn into audio samples."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        reason: str,
        hint: str = "check that the file plays in a media player and has an audio track",
    ) -> None:
        reason = " ".join(reason.split())  # the CLI prints one line
        super().__init__(f"cannot decode {path}: {reason}", hint=hint)
        self.path = str(path)
        self.reason = reason


@functools.cache
def find_ffmpeg() -> str:
    """The ffmpeg executable: the one on PATH, else the one imageio-ffmpeg ships."""
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as error:
        raise TinyAudioError(
            "ffmpeg was not found",
            hint="install ffmpeg (apt install ffmpeg, brew install ffmpeg) or pip install imageio-ffmpeg",
        ) from error


def _ffmpeg_command(path: Path) -> list[str]:
    import ffmpeg

    # "file:" stops ffmpeg from reading a name such as "talk:1.wav" as a protocol.
    # rematrix_maxval=1 makes the mono mix the mean of the channels (for stereo exactly), as `datasets`
    # and librosa mix them for training; ffmpeg's default gives (L+R)/√2, 3 dB louder and past ±1.
    stream = ffmpeg.input(f"file:{path}").output(
        "pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=SAMPLE_RATE, rematrix_maxval=1.0,
        vn=None, sn=None, dn=None,
    )  # fmt: skip
    # Global options go in front: ffmpeg-python would append them after the output.
    return stream.compile(cmd=[find_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error"])


def _failure_reason(stderr_lines: Iterable[str], path: Path) -> str:
    """The one line of ffmpeg's log that tells the user what is wrong with the file."""
    lines = []
    formats = []  # the demuxers and decoders that spoke ("[mp3 @ 0x…]"), latest last
    for raw in stderr_lines:
        if (prefix := _LOG_PREFIX.match(raw.strip())) and not _STREAM_LABEL.match(prefix.group(1)):
            formats.append(prefix.group(1))
        line = _LOG_PREFIX.sub("", raw.strip())
        for name in (f"file:{path}", str(path)):
            line = line.removeprefix(f"{name}: ")
        if _OPEN_FAILED.match(line):
            # ffmpeg's whole verdict on a file its demuxer gave up on: say that, with the demuxer's reason
            kind = formats[-1] if formats else path.suffix.lstrip(".").lower() or "media"
            return f"corrupt or unsupported {kind} file" + (f" ({lines[-1]})" if lines else "")
        if line and not _GENERIC_LINE.match(line):
            lines.append(line)
    for needle, reason in _KNOWN_FAILURES:
        if any(needle in line for line in lines):
            # The line before ffmpeg's verdict often says more (e.g. "moov atom not found").
            details = [line for line in lines if needle not in line]
            return f"{reason} ({details[-1]})" if details else reason
    return lines[-1] if lines else "ffmpeg failed without saying why"


# What a path names when it is not a regular file, in the words `ls -l` users know.
_FILE_KINDS = (
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)


def _check_readable(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise AudioDecodeError(path, "no such file", hint="check the path") from None
    except OSError as error:
        raise AudioDecodeError(path, error.strerror or str(error)) from None
    if stat.S_ISDIR(mode):
        raise AudioDecodeError(path, "is a directory, not a media file")
    if not stat.S_ISREG(mode):
        # A pipe would be read by ffmpeg and by the size guess at once, and could not be read twice.
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "special file")
        raise AudioDecodeError(path, f"not a regular file ({kind})", hint="save the media to a file first")
    if path.stat().st_size == 0:
        raise AudioDecodeError(path, "the file is empty")


def _drain(pipe: IO[bytes], tail: collections.deque[str]) -> None:
    # Runs on its own thread so a chatty ffmpeg never blocks on a full stderr pipe.
    for line in pipe:
        tail.append(line.decode("utf-8", errors="replace"))


def stream_audio(path: str | os.PathLike[str], block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Decode any file ffmpeg reads to 16 kHz mono float32, block_seconds at a time.

    Only one block is held at once, so hour-long recordings cost no more memory than a short clip.
    """
    import numpy as np

    path = Path(path)
    _check_readable(path)
    block_bytes = max(1, round(block_seconds * SAMPLE_RATE)) * BYTES_PER_SAMPLE
    process = subprocess.Popen(
        _ffmpeg_command(path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    drainer = threading.Thread(target=_drain, args=(process.stderr, stderr_tail), daemon=True)
    drainer.start()
    decoded = 0
    try:
        assert process.stdout is not None
        while data := process.stdout.read(block_bytes):
            usable = len(data) - len(data) % BYTES_PER_SAMPLE
            if usable:
                decoded += usable // BYTES_PER_SAMPLE
                yield np.frombuffer(data[:usable], dtype=np.float32).copy()
        returncode = process.wait()
        drainer.join()
        if returncode != 0:
            raise AudioDecodeError(path, _failure_reason(stderr_tail, path))
        if decoded == 0:
            raise AudioDecodeError(path, "contains no audio")
    finally:
        # The consumer may stop early (e.g. --no-vad reads only the first 30 s): don't leave ffmpeg behind.
        if process.poll() is None:
            process.kill()
            process.wait()
        drainer.join()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def load_audio(path: str | os.PathLike[str]) -> np.ndarray:
    """The whole file as one 16 kHz mono float32 array."""
    import numpy as np
    import soundfile

    path = Path(path)
    _check_readable(path)
    if _native(path):
        with contextlib.suppress(RuntimeError, ValueError):  # a damaged body: ffmpeg says what is wrong
            audio, _ = soundfile.read(str(path), dtype="float32")
            if len(audio):
                return audio
    return np.concatenate(list(stream_audio(path)))


def _native(path: Path) -> bool:
    """Whether libsndfile reads the file as 16 kHz mono: then it gives ffmpeg's samples exactly, without
    starting a process per file (what a folder of short clips would mostly spend its time on)."""
    info = _sound_info(str(path))
    return info is not None and info.samplerate == SAMPLE_RATE and info.channels == 1


def _sound_info(media: bytes | str) -> soundfile._SoundFileInfo | None:
    """libsndfile's reading of a header; None for a format it does not read."""
    import soundfile

    try:
        return soundfile.info(io.BytesIO(media) if isinstance(media, bytes) else media)
    except (RuntimeError, ValueError, OSError):  # LibsndfileError is a RuntimeError
        return None


def header_seconds(media: bytes | str | Path) -> float:
    """A recording's length read from its header, without decoding it; estimated from its size when
    libsndfile cannot read the header (AAC, video), and 0.0 for a file that is not there."""
    if not isinstance(media, bytes) and not os.path.isfile(media):
        return 0.0  # missing, or a pipe: reading its header would take (or wait for) what ffmpeg is to decode
    info = _sound_info(media if isinstance(media, bytes) else str(media))
    if info is not None and info.frames > 0 and info.samplerate > 0:
        return info.frames / info.samplerate
    try:
        size = len(media) if isinstance(media, bytes) else os.path.getsize(media)
    except OSError:
        return 0.0
    return size / COMPRESSED_BYTES_PER_SECOND


def media_seconds(path: str | Path) -> float:
    """A media file's length for progress and ETA: the header when libsndfile reads it, else the duration
    ffmpeg reads from the container (one short process, no decoding), else header_seconds's size estimate."""
    info = _sound_info(str(path))
    if info is not None and info.frames > 0 and info.samplerate > 0:
        return info.frames / info.samplerate
    try:
        probe = subprocess.run(
            [find_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(path)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired, TinyAudioError):
        return header_seconds(path)
    found = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", probe.stderr)
    if found is None:
        return header_seconds(path)
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def find_media(inputs: Sequence[str | os.PathLike[str]], extra_extensions: Iterable[str] = ()) -> list[Path]:
    """The media files named by inputs: files as given, directories searched recursively by extension."""
    extensions = MEDIA_EXTENSIONS | frozenset(
        f".{extension.lower().lstrip('.')}" for extension in extra_extensions if extension.strip(".")
    )
    found: dict[Path, Path] = {}  # keyed by real path: a file named twice is transcribed once
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            candidates: Iterable[Path] = _walk_media(path, extensions)
        elif path.exists():
            candidates = [path]  # named explicitly, so the user wants it whatever its extension
        else:
            raise TinyAudioError(f"no such file or directory: {path}", hint="check the path and try again")
        for candidate in candidates:
            found.setdefault(candidate.resolve(), candidate)
    return list(found.values())


def _walk_media(directory: Path, extensions: frozenset[str]) -> Iterator[Path]:
    for root, dirs, files in os.walk(directory):
        # Sorting in place makes os.walk visit folders in a stable order on every filesystem.
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        for name in sorted(files):
            suffix = Path(name).suffix.lower()
            if name.startswith(".") or suffix not in extensions:
                continue
            if suffix in TRANSPORT_STREAM_EXTENSIONS and not _is_transport_stream(Path(root) / name):
                continue  # TypeScript, most likely
            yield Path(root) / name


def _is_transport_stream(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(2 * 192 + 4)
    except OSError:
        return True  # unreadable: let decoding report it
    return any(
        len(head) > first + size and head[first] == head[first + size] == TS_SYNC_BYTE
        for first, size in TS_PACKET_LAYOUTS
    )
