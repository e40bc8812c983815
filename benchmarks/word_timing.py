"""Word timing against known word boundaries: tinyaudio's aligner vs Whisper's own word timestamps.

Each clip is espeak-ng speaking one word at a time, the words joined by measured silences (50-400 ms), so every
word's true start and end are known. tinyaudio aligns the known text with the Whisper base's decoder
(`tinyaudio_cli.model.alignment`); Whisper's own word timestamps come from the transformers pipeline
(`return_timestamps="word"`) on the same base, which transcribes the clip itself: its words are compared where
they equal the reference word at the same position.

    python benchmarks/word_timing.py --whisper ~/.cache/tinyaudio/realstack/whisper-tiny.en --clips 20
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import torch

SAMPLE_RATE = 16_000
SENTENCES = [
    "the quick brown fox jumps over the lazy dog near the river bank",
    "we will meet at two on saturday to talk about the report",
    "please remember to check the timestamps of every region",
    "my grandmother likes books more than questions about the garden",
    "where did you put the dark table and the green chair",
    "speech recognition turns spoken words into written text",
    "a small language model can listen when an audio encoder feeds it",
    "the last train leaves the station at half past nine tonight",
    "she sold the old house and moved to a small town by the sea",
    "every window of audio is at most thirty seconds long",
]
VOICES = ["en-us", "en-gb", "en-029", "en-us+f3", "en-gb-x-rp", "en-us+m3"]


def say(word: str, voice: str, speed: int) -> np.ndarray:
    raw = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", word], capture_output=True, check=True
    )
    pcm = subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", "-", "-ar", str(SAMPLE_RATE), "-ac", "1", "-f", "f32le", "-"],
        input=raw.stdout,
        capture_output=True,
        check=True,
    ).stdout
    audio = np.frombuffer(pcm, np.float32)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0] : loud[-1] + 1]


def make_clip(index: int) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    rng = np.random.default_rng(index)
    words = SENTENCES[index % len(SENTENCES)].split()
    voice, speed = VOICES[index % len(VOICES)], int(rng.integers(140, 190))
    parts, truth, cursor = [np.zeros(int(0.3 * SAMPLE_RATE), np.float32)], [], 0.3
    for word in words:
        audio = say(word, voice, speed)
        truth.append((word, cursor, cursor + len(audio) / SAMPLE_RATE))
        gap = int(rng.uniform(0.05, 0.4) * SAMPLE_RATE)
        parts += [audio, np.zeros(gap, np.float32)]
        cursor += (len(audio) + gap) / SAMPLE_RATE
    return np.concatenate(parts), truth


def summary(errors: list[float]) -> dict[str, float]:
    values = np.array(errors)
    return {
        "words": len(values),
        "median_start_error_s": round(float(np.median(values)), 3) if len(values) else float("nan"),
        "within_200ms": round(float(np.mean(values < 0.2)), 3) if len(values) else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--whisper", type=Path, required=True, help="a Whisper folder (transformers layout)")
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from transformers import WhisperFeatureExtractor, pipeline

    from tinyaudio_cli.model.alignment import WhisperAligner, snap_to_sound
    from tinyaudio_cli.model.loading import load_whisper_encoder

    extractor = WhisperFeatureExtractor.from_pretrained(args.whisper)
    encoder = load_whisper_encoder(args.whisper, torch.float32, torch.device("cpu"), "sdpa")
    aligner = WhisperAligner.load(args.whisper)
    whisper = pipeline("automatic-speech-recognition", model=str(args.whisper), device="cpu")
    errors: dict[str, list[float]] = {"tinyaudio": [], "tinyaudio_attention_only": [], "whisper_pipeline": []}
    for index in range(args.clips):
        audio, truth = make_clip(index)
        text = " ".join(word for word, _, _ in truth)
        features = extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        with torch.inference_mode():
            states = encoder(features).last_hidden_state
        frames = int(np.ceil(len(audio) / SAMPLE_RATE * 50))
        attention_only = aligner.align(states, [text], [frames])[0]
        snapped = snap_to_sound(attention_only, audio)
        for name, words in (("tinyaudio_attention_only", attention_only), ("tinyaudio", snapped)):
            errors[name] += [abs(w.start - start) for w, (_, start, _) in zip(words, truth, strict=True)]
        chunks = whisper({"raw": audio, "sampling_rate": SAMPLE_RATE}, return_timestamps="word")["chunks"]
        for chunk, (word, start, _) in zip(chunks, truth, strict=False):
            if re.sub(r"[^a-z]", "", chunk["text"].lower()) == word:
                errors["whisper_pipeline"].append(abs(chunk["timestamp"][0] - start))
    report = {name: summary(values) for name, values in errors.items()}
    report["clips"] = args.clips
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
