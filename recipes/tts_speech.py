"""Speak the sentences of a manifest with other voices: espeak-ng (accents, variants, speed, pitch) and festival.

Human training sets are small and have few speakers; the Whisper encoder hears synthetic voices much as it
hears people, so the same sentences in many machine voices add breadth of voice without template sentences
(the old `tiny-en` learnt `make_speech.py`'s templates and wrote them back on real speech). Flite and its
voices (awb, kal, rms, slt) are kept for testing and are never used here.

    python recipes/tts_speech.py /work/h18/split/train-main.jsonl /work/h18/tts --count 800 --seed 1

Each output clip speaks one distinct text of the input (drawn without replacement, then again) with
festival's `ked` voice (FESTIVAL_SHARE of the clips, when `text2wave` and the voice are installed:
Debian festival + festvox-kdlpc16k) or a random espeak-ng voice. Output: OUT_DIR/wav/*.wav (16 kHz mono
16-bit) and OUT_DIR.jsonl (audio, text, seconds, voice). Needs espeak-ng and ffmpeg.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile

from tinyaudio_cli.constants import SAMPLE_RATE

ESPEAK_VOICES = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
ESPEAK_VARIANTS = (
    "",
    "+m1",
    "+m2",
    "+m3",
    "+m4",
    "+m5",
    "+m6",
    "+m7",
    "+f1",
    "+f2",
    "+f3",
    "+f4",
    "+f5",
    "+klatt",
    "+Andy",
    "+Annie",
    "+david",
    "+linda",
    "+max",
    "+steph",
)
ESPEAK_SPEED = (120, 200)
ESPEAK_PITCH = (20, 80)
FESTIVAL_VOICES = ("ked_diphone",)
FESTIVAL_STRETCH = (0.85, 1.2)
FESTIVAL_SHARE = 0.25


def festival_ready() -> bool:
    if shutil.which("text2wave") is None:
        return False
    probe = subprocess.run(
        ["text2wave", "-eval", f"(voice_{FESTIVAL_VOICES[0]})", "-o", "/dev/null"], input=b"test", capture_output=True
    )
    return probe.returncode == 0


def to_16k(wav: bytes, path: Path) -> None:
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "wav",
            "-i",
            "pipe:0",
            "-ar",
            str(SAMPLE_RATE),
            "-ac",
            "1",
            "-c:a",
            "pcm_s16le",
            str(path),
        ],
        input=wav,
        check=True,
    )


def speak(rng: np.random.Generator, text: str, path: Path, festival: bool) -> str:
    if festival and rng.random() < FESTIVAL_SHARE:
        voice = str(rng.choice(FESTIVAL_VOICES))
        stretch = rng.uniform(*FESTIVAL_STRETCH)
        wav = subprocess.run(
            [
                "text2wave",
                "-eval",
                f"(voice_{voice})",
                "-eval",
                f"(Parameter.set 'Duration_Stretch {stretch:.2f})",
                "-o",
                "/dev/stdout",
            ],
            input=text.encode(),
            capture_output=True,
            check=True,
        ).stdout
        to_16k(wav, path)
        return f"festival:{voice}:{stretch:.2f}"
    voice = str(rng.choice(ESPEAK_VOICES)) + str(rng.choice(ESPEAK_VARIANTS))
    speed, pitch = int(rng.integers(*ESPEAK_SPEED)), int(rng.integers(*ESPEAK_PITCH))
    # "--" ends the options: a sentence starting with "-" is text, not a flag
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", "--", text],
        capture_output=True,
        check=True,
    ).stdout
    to_16k(wav, path)
    return f"espeak-ng:{voice}:{speed}:{pitch}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path, help="input JSON-lines manifest; only its `text` is used")
    parser.add_argument("out_dir", type=Path, help="output folder; the manifest is OUT_DIR.jsonl")
    parser.add_argument("--count", type=int, required=True, help="output clips to make")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-festival", action="store_true", help="espeak-ng voices only")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    lines = [json.loads(line) for line in args.manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = sorted({entry["text"].strip() for entry in lines if entry["text"].strip()})
    festival = not args.no_festival and festival_ready()
    wav_dir = args.out_dir / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    order: list[int] = []
    records = []
    for number in range(args.count):
        if not order:
            order = list(rng.permutation(len(texts)))
        text = texts[order.pop()]
        name = f"tts{number:05d}.wav"
        voice = speak(rng, text, wav_dir / name, festival)
        seconds = round(soundfile.info(str(wav_dir / name)).frames / SAMPLE_RATE, 3)
        record = {"audio": f"{args.out_dir.name}/wav/{name}", "text": text, "seconds": seconds, "voice": voice}
        records.append(json.dumps(record, ensure_ascii=False))
    manifest = args.out_dir.with_suffix(".jsonl")
    manifest.write_text("\n".join(records) + "\n", encoding="utf-8")
    print(f"wrote {args.count} clips to {wav_dir} and {manifest} (festival: {'yes' if festival else 'no'})")


if __name__ == "__main__":
    main()
