"""Make recordings out of single-utterance clips: silence around the speech, pauses, noise, level changes.

Synthetic speech sets (espeak-ng, `make_speech.py`) have one sentence per clip, starting at the first
sample. A projector trained on them alone learns that, and fails on what `transcribe` feeds it from real
recordings: speech regions with silence before and after (VAD padding), or several sentences in one window.
This writes a new manifest of mixtures drawn from an input manifest:

    python recipes/augment_speech.py /data/speech/train.jsonl /data/speech-aug/train --count 1200 --seed 1

Each output clip joins 1-3 input clips (probabilities ONE_TWO_THREE) with a pause between them, puts
silence before and after, scales the level, and adds white or brown noise at a random SNR to NOISY_SHARE
of them. The reference is the input references joined by spaces. Output: OUT_DIR/wav/*.wav (16 kHz mono
16-bit) and OUT_DIR.jsonl beside the folder, in the manifest format `tinyaudio train --data` and
`tinyaudio eval --manifest` read. Input clips are used at most once each unless --count needs more.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile
from clips import read_clip, read_manifest

from tinyaudio_cli.constants import SAMPLE_RATE

ONE_TWO_THREE = (0.6, 0.3, 0.1)
LEAD_SECONDS = (0.0, 1.0)
PAUSE_SECONDS = (0.2, 1.2)
TRAIL_SECONDS = (0.0, 1.5)
GAIN_DB = (-9.0, 3.0)
NOISY_SHARE = 0.5
SNR_DB = (10.0, 40.0)
PEAK_LIMIT = 0.99


def silence(rng: np.random.Generator, bounds: tuple[float, float]) -> np.ndarray:
    return np.zeros(int(rng.uniform(*bounds) * SAMPLE_RATE), dtype=np.float32)


def noise(rng: np.random.Generator, length: int) -> np.ndarray:
    white = rng.standard_normal(length).astype(np.float32)
    if rng.random() < 0.5:
        return white
    brown = np.cumsum(white)  # a rumble-like floor; remove the drift so it stays centred
    brown -= np.convolve(brown, np.ones(801) / 801, mode="same")
    return (brown / (brown.std() + 1e-9)).astype(np.float32)


def mix(rng: np.random.Generator, clips: list[np.ndarray]) -> np.ndarray:
    parts = [silence(rng, LEAD_SECONDS)]
    for index, clip in enumerate(clips):
        if index:
            parts.append(silence(rng, PAUSE_SECONDS))
        parts.append(clip)
    parts.append(silence(rng, TRAIL_SECONDS))
    audio = np.concatenate(parts) * np.float32(10 ** (rng.uniform(*GAIN_DB) / 20))
    if rng.random() < NOISY_SHARE:
        speech_rms = float(np.sqrt(np.mean(audio[audio != 0] ** 2))) if np.any(audio) else 0.0
        noise_rms = speech_rms / 10 ** (rng.uniform(*SNR_DB) / 20)
        audio = audio + noise(rng, len(audio)) * np.float32(noise_rms)
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    return audio * np.float32(PEAK_LIMIT / peak) if peak > PEAK_LIMIT else audio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path, help="input JSON-lines manifest (audio, text)")
    parser.add_argument("out_dir", type=Path, help="output folder; the manifest is OUT_DIR.jsonl")
    parser.add_argument("--count", type=int, required=True, help="output clips to make")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    entries = read_manifest(args.manifest)
    order: list[int] = []
    wav_dir = args.out_dir / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for number in range(args.count):
        size = int(rng.choice(len(ONE_TWO_THREE), p=ONE_TWO_THREE)) + 1
        picked = []
        for _ in range(size):
            if not order:
                order = list(rng.permutation(len(entries)))
            picked.append(entries[order.pop()])
        audio = mix(rng, [read_clip(entry["audio"]) for entry in picked])
        name = f"mix{number:05d}.wav"
        soundfile.write(wav_dir / name, audio, SAMPLE_RATE, subtype="PCM_16")
        text = " ".join(entry["text"].strip() for entry in picked)
        seconds = round(len(audio) / SAMPLE_RATE, 3)
        record = {"audio": f"{args.out_dir.name}/wav/{name}", "text": text, "seconds": seconds}
        lines.append(json.dumps(record, ensure_ascii=False))
    manifest = args.out_dir.with_suffix(".jsonl")
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.count} clips to {wav_dir} and {manifest}")


if __name__ == "__main__":
    main()
