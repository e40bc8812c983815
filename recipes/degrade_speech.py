"""Degraded copies of speech clips: speed, reverberation, noise, telephone band and low-bitrate codecs.

A projector trained on clean read speech learns the studio. Real recordings arrive faster or slower,
in rooms, over noise, through phones and lossy codecs. This writes COPIES degraded copies of each clip of
a manifest, each with 1-3 effects drawn at random and applied in a fixed order (speed, reverb, noise,
then the channel: telephone band or a codec round trip through ffmpeg):

    python recipes/degrade_speech.py /work/h18/split/train-main.jsonl /work/h18/degraded --copies 1 --seed 1

- speed: resampled by 0.9 or 1.1 (tempo and pitch change together, as Kaldi's speed perturbation)
- reverb: a synthetic room response (exponential decay, RT60 0.2-0.9 s) mixed with the direct sound
- noise: white, brown, or babble (three other clips of the manifest) at 0-30 dB SNR
- telephone: 300-3400 Hz band at 8 kHz through mu-law (or GSM), back to 16 kHz
- mp3 (16-32 kb/s) or opus (8-24 kb/s) round trip

Output: OUT_DIR/wav/*.wav (16 kHz mono 16-bit) and OUT_DIR.jsonl beside the folder (audio, text, seconds,
effects), the manifest format `tinyaudio train --data` and `tinyaudio eval --manifest` read. The reference
text is the input's: none of the effects adds or removes words. Needs ffmpeg with libmp3lame, libopus, libgsm.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import soundfile
from clips import read_clip, read_manifest

from tinyaudio_cli.constants import SAMPLE_RATE

EFFECTS = ("speed", "reverb", "noise", "channel")
EFFECT_COUNT = (0.45, 0.4, 0.15)  # probabilities of 1, 2, 3 effects
SPEEDS = (0.9, 1.1)
RT60_SECONDS = (0.2, 0.9)
SNR_DB = (0.0, 30.0)
BABBLE_VOICES = 3
PEAK_LIMIT = 0.99


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio**2))) if len(audio) else 0.0


def change_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster: read the waveform at `factor`-spaced points (linear interpolation)."""
    positions = np.arange(0, len(audio) - 1, factor)
    return np.interp(positions, np.arange(len(audio)), audio).astype(np.float32)


def reverberate(rng: np.random.Generator, audio: np.ndarray) -> tuple[np.ndarray, str]:
    rt60 = rng.uniform(*RT60_SECONDS)
    length = int(rt60 * SAMPLE_RATE)
    decay = np.exp(-6.9 * np.arange(length) / length)  # -60 dB over rt60
    response = rng.standard_normal(length) * decay
    response[0] = 0.0
    response *= rng.uniform(0.3, 1.0) / np.sqrt(np.sum(response**2))  # reverberant energy vs the direct path
    response[0] = 1.0
    size = len(audio) + length - 1
    wet = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(response, size), size)[: len(audio)]
    return (wet * (rms(audio) / (rms(wet) + 1e-9))).astype(np.float32), f"reverb{rt60:.1f}"


def add_noise(rng: np.random.Generator, audio: np.ndarray, pool: list[dict]) -> tuple[np.ndarray, str]:
    kind = str(rng.choice(["white", "brown", "babble"]))
    if kind == "babble":
        floor = np.zeros(len(audio), dtype=np.float32)
        for index in rng.choice(len(pool), size=min(BABBLE_VOICES, len(pool)), replace=False):
            voice = read_clip(pool[int(index)]["audio"])
            voice = np.resize(voice, len(audio)) if len(voice) else floor
            floor = floor + voice / (rms(voice) + 1e-9)
    else:
        floor = rng.standard_normal(len(audio)).astype(np.float32)
        if kind == "brown":  # a rumble-like floor; the moving average removes the drift
            floor = np.cumsum(floor)
            floor -= np.convolve(floor, np.ones(801) / 801, mode="same")
    snr = rng.uniform(*SNR_DB)
    floor = floor * np.float32(rms(audio) / (rms(floor) + 1e-9) / 10 ** (snr / 20))
    return (audio + floor).astype(np.float32), f"{kind}{snr:.0f}dB"


def ffmpeg_round_trip(audio: np.ndarray, encode: list[str], fmt: str) -> np.ndarray:
    """Encode with ffmpeg's `encode` options into `fmt`, decode back to 16 kHz mono float32."""
    wav = io.BytesIO()
    soundfile.write(wav, audio, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    base = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error"]
    coded = subprocess.run(
        [*base, "-f", "wav", "-i", "pipe:0", *encode, "-f", fmt, "pipe:1"],
        input=wav.getvalue(),
        capture_output=True,
        check=True,
    ).stdout
    decoded = subprocess.run(
        [*base, "-f", fmt, "-i", "pipe:0", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "pipe:1"],
        input=coded,
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(decoded, dtype=np.float32).copy()


def channel(rng: np.random.Generator, audio: np.ndarray) -> tuple[np.ndarray, str]:
    kind = str(rng.choice(["telephone", "gsm", "mp3", "opus"]))
    if kind in ("telephone", "gsm"):
        band = ["-af", "highpass=f=300,lowpass=f=3400", "-ar", "8000", "-ac", "1"]
        codec = ["-c:a", "pcm_mulaw"] if kind == "telephone" else ["-c:a", "libgsm"]
        out = ffmpeg_round_trip(audio, band + codec, "wav" if kind == "telephone" else "gsm")
        return out, kind
    if kind == "mp3":
        rate = int(rng.choice([16, 24, 32]))
        return ffmpeg_round_trip(audio, ["-c:a", "libmp3lame", "-b:a", f"{rate}k"], "mp3"), f"mp3-{rate}k"
    rate = int(rng.choice([8, 12, 16, 24]))
    return ffmpeg_round_trip(audio, ["-c:a", "libopus", "-b:a", f"{rate}k"], "ogg"), f"opus-{rate}k"


def degrade(rng: np.random.Generator, audio: np.ndarray, pool: list[dict]) -> tuple[np.ndarray, list[str]]:
    count = int(rng.choice(len(EFFECT_COUNT), p=EFFECT_COUNT)) + 1
    chosen = set(rng.choice(EFFECTS, size=count, replace=False).tolist())
    applied = []
    if "speed" in chosen:
        factor = float(rng.choice(SPEEDS))
        audio = change_speed(audio, factor)
        applied.append(f"speed{factor}")
    if "reverb" in chosen:
        audio, name = reverberate(rng, audio)
        applied.append(name)
    if "noise" in chosen:
        audio, name = add_noise(rng, audio, pool)
        applied.append(name)
    if "channel" in chosen:
        audio, name = channel(rng, audio)
        applied.append(name)
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    return (audio * np.float32(PEAK_LIMIT / peak) if peak > PEAK_LIMIT else audio), applied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path, help="input JSON-lines manifest (audio, text)")
    parser.add_argument("out_dir", type=Path, help="output folder; the manifest is OUT_DIR.jsonl")
    parser.add_argument("--copies", type=int, default=1, help="degraded copies per input clip")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    entries = read_manifest(args.manifest)
    wav_dir = args.out_dir / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for number, entry in enumerate(entry for entry in entries for _ in range(args.copies)):
        audio, applied = degrade(rng, read_clip(entry["audio"]), entries)
        name = f"deg{number:05d}.wav"
        soundfile.write(wav_dir / name, audio, SAMPLE_RATE, subtype="PCM_16")
        seconds = round(len(audio) / SAMPLE_RATE, 3)
        record = {
            "audio": f"{args.out_dir.name}/wav/{name}",
            "text": entry["text"],
            "seconds": seconds,
            "effects": applied,
        }
        lines.append(json.dumps(record, ensure_ascii=False))
    manifest = args.out_dir.with_suffix(".jsonl")
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} clips to {wav_dir} and {manifest}")


if __name__ == "__main__":
    main()
