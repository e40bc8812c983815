"""Word timing against known word boundaries: tinyaudio's aligner vs Whisper's own word timestamps.

Each clip is espeak-ng speaking one word at a time, the words joined by measured silences (50-400 ms), so every
word's true start and end are known. tinyaudio aligns the known text with the Whisper base's decoder
(`tinyaudio_cli.model.alignment`); Whisper's own word timestamps come from the transformers pipeline
(`return_timestamps="word"`) on the same base, which transcribes the clip itself: its words are compared where
they equal the reference word at the same position.

With `--connected`, each clip is instead one sentence said in one breath, as connected speech is, with few
pauses for the snapping to use. The truth comes from the synthesiser itself: libespeak-ng reports where each
word begins in the audio it makes (its word events), read here through ctypes.

    python benchmarks/word_timing.py --whisper ~/.cache/tinyaudio/realstack/whisper-tiny.en --clips 20
    python benchmarks/word_timing.py --whisper ~/.cache/tinyaudio/realstack/whisper-tiny.en --clips 20 --connected
"""

from __future__ import annotations

import argparse
import ctypes
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


class _EspeakEvent(ctypes.Structure):
    """espeak_EVENT of speak_lib.h (espeak-ng 1.51)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


ESPEAK_SYNCHRONOUS, ESPEAK_RATE, ESPEAK_POS_CHARACTER = 2, 1, 1
ESPEAK_EVENT_END, ESPEAK_EVENT_WORD = 0, 1
_espeak: dict[str, object] = {}


def say_connected(text: str, voice: str, speed: int) -> tuple[np.ndarray, list[float | None]]:
    """`text` said in one go, at 16 kHz, and the second each word begins at, as espeak-ng placed it."""
    if not _espeak:
        library = ctypes.CDLL("libespeak-ng.so.1")
        rate = library.espeak_Initialize(ESPEAK_SYNCHRONOUS, 0, None, 0)
        if rate <= 0:
            raise SystemExit("libespeak-ng did not start")
        callback_type = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_EspeakEvent)
        )
        _espeak.update(library=library, rate=rate, pcm=[], starts=[])

        def heard(wav: ctypes.Array, count: int, events: ctypes.Array) -> int:
            if count > 0:
                _espeak["pcm"].append(np.ctypeslib.as_array(wav, (count,)).copy())
            index = 0
            while events[index].type != ESPEAK_EVENT_END:
                if events[index].type == ESPEAK_EVENT_WORD:
                    _espeak["starts"].append((events[index].text_position, events[index].sample))
                index += 1
            return 0

        _espeak["callback"] = callback_type(heard)  # kept alive as long as the library may call it
        library.espeak_SetSynthCallback(_espeak["callback"])
    library, rate = _espeak["library"], _espeak["rate"]
    _espeak["pcm"], _espeak["starts"] = [], []
    name = {"en-gb": "en"}.get(voice, voice)  # the library knows British English by its file name only
    if library.espeak_SetVoiceByName(name.encode()) != 0:
        raise SystemExit(f"espeak-ng has no voice {voice}")
    library.espeak_SetParameter(ESPEAK_RATE, speed, 0)
    encoded = text.encode()
    library.espeak_Synth(encoded, len(encoded) + 1, 0, ESPEAK_POS_CHARACTER, 0, 0, None, None)
    library.espeak_Synchronize()
    pcm = np.concatenate(_espeak["pcm"]).astype(np.int16).tobytes()
    resample = ["-ar", str(SAMPLE_RATE), "-f", "f32le", "-"]
    audio = subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", "-", *resample],
        input=pcm,
        capture_output=True,
        check=True,
    ).stdout
    # a word espeak-ng says as two ("timestamps") has two events: each word begins at the first event inside it
    firsts = [match.start() + 1 for match in re.finditer(r"\S+", text)]  # positions count from 1
    lasts = [*firsts[1:], len(text) + 2]
    # and a word it joins to the one before ("on the") has none: its start is unknown, and not scored
    starts: list[float | None] = []
    for first, last in zip(firsts, lasts, strict=True):
        inside = [sample for position, sample in _espeak["starts"] if first <= position < last]
        starts.append(min(inside) / rate if inside else None)
    return np.frombuffer(audio, np.float32), starts


def make_connected_clip(index: int) -> tuple[np.ndarray, list[tuple[str, float | None, float]]]:
    """A sentence in one breath between 0.3 s of silence; a word ends where the next begins (ends are not
    scored)."""
    rng = np.random.default_rng(index)
    words = SENTENCES[index % len(SENTENCES)].split()
    voice, speed = VOICES[index % len(VOICES)], int(rng.integers(140, 190))
    speech, starts = say_connected(" ".join(words), voice, speed)
    lead = np.zeros(int(0.3 * SAMPLE_RATE), np.float32)
    truth, end = [], 0.3 + len(speech) / SAMPLE_RATE
    for word, start in reversed(list(zip(words, starts, strict=True))):
        truth.insert(0, (word, None if start is None else 0.3 + start, end))
        end = end if start is None else 0.3 + start
    return np.concatenate([lead, speech, lead]), truth


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
    parser.add_argument("--connected", action="store_true", help="sentences said in one breath, not word by word")
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
        audio, truth = make_connected_clip(index) if args.connected else make_clip(index)
        text = " ".join(word for word, _, _ in truth)
        features = extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        with torch.inference_mode():
            states = encoder(features).last_hidden_state
        frames = int(np.ceil(len(audio) / SAMPLE_RATE * 50))
        attention_only = aligner.align(states, [text], [frames])[0]
        snapped = snap_to_sound(attention_only, audio)
        for name, words in (("tinyaudio_attention_only", attention_only), ("tinyaudio", snapped)):
            errors[name] += [
                abs(w.start - start) for w, (_, start, _) in zip(words, truth, strict=True) if start is not None
            ]
        chunks = whisper({"raw": audio, "sampling_rate": SAMPLE_RATE}, return_timestamps="word")["chunks"]
        for chunk, (word, start, _) in zip(chunks, truth, strict=False):
            if start is not None and re.sub(r"[^a-z]", "", chunk["text"].lower()) == word:
                errors["whisper_pipeline"].append(abs(chunk["timestamp"][0] - start))
    report = {name: summary(values) for name, values in errors.items()}
    report["clips"] = args.clips
    report["speech"] = "connected" if args.connected else "words joined by silences"
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
