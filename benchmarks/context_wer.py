"""WER and speed of a real checkpoint by encoder context: the whole 30 s window vs the audio plus some padding.

Every setting transcribes the same clips, interleaved chunk by chunk in one process (a busy machine slows
them alike), as `tinyaudio eval` does (whole clips, a token budget from each clip's length, loops stopped),
and is scored with eval's normaliser:

- `reference`: `--reference-mode` (whole windows, every frame to the LM);
- `full`: trimmed attention over whole 30 s windows (the default before encoder context);
- `pad=S`: the encoder over the audio plus S seconds of the window's padding (model.context).

Held-out speech: espeak-ng template sentences (make_speech.py's templates, from ../shared/realstack, with
a seed of their own) as clean clips, and as recordings (silence before and after, 1-3 sentences with
pauses, as recipes/augment_speech.py makes them); and human clips from a manifest (`--human`).

    python benchmarks/context_wer.py -m tiny-en --human /work/h18/split/check.jsonl --json ctx.json
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]

from tinyaudio_cli.audio.media import SAMPLE_RATE, load_audio  # noqa: E402
from tinyaudio_cli.evaluation.scoring import Pair, score_corpus  # noqa: E402
from tinyaudio_cli.model import load_model  # noqa: E402
from tinyaudio_cli.model.decoding import guarded_text, token_budget  # noqa: E402

PADDINGS = (0.0, 0.5, 1.0, 2.0, 4.0)
HELDOUT_SEED = 90210  # not a seed make_speech.py's sets were made with (1234 and small ones)
CHUNK = 16


def template_sentences(count: int, seed: int) -> tuple[list[str], list[str]]:
    """Unique sentences from make_speech.py's templates, and a voice for each."""
    sys.path.insert(0, str(ROOT.parent / "shared" / "realstack"))
    import make_speech  # the shared build's generator: the sentences the shipped model was trained on

    rng, texts = random.Random(seed), []
    while len(texts) < count:
        sentence = make_speech.sentence(rng)
        if sentence not in texts:
            texts.append(sentence)
    voices = [rng.choice(make_speech.VOICES) + rng.choice(make_speech.VARIANTS) for _ in texts]
    return texts, voices


def speak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "raw.wav"
        command = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", raw, text]
        subprocess.run(command, check=True, capture_output=True)
        return load_audio(raw)


def espeak_sets(count: int, seed: int) -> dict[str, list[tuple[np.ndarray, str]]]:
    texts, voices = template_sentences(count, seed)
    rng = np.random.default_rng(seed)
    spoken = [
        speak(t, v, int(rng.integers(130, 195)), int(rng.integers(25, 75))) for t, v in zip(texts, voices, strict=True)
    ]
    clean = list(zip(spoken, texts, strict=True))
    recordings, index = [], 0
    while index < len(spoken):
        take = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
        parts = [np.zeros(int(rng.uniform(0, 1.0) * SAMPLE_RATE), np.float32)]
        for clip in spoken[index : index + take]:
            parts += [clip, np.zeros(int(rng.uniform(0.2, 1.2) * SAMPLE_RATE), np.float32)]
        parts[-1] = np.zeros(int(rng.uniform(0, 1.5) * SAMPLE_RATE), np.float32)
        audio = np.concatenate(parts)[: 30 * SAMPLE_RATE]
        recordings.append((audio, " ".join(texts[index : index + take])))
        index += take
    return {"espeak_clean": clean, "espeak_recordings": recordings}


def human_set(manifest: Path, limit: int | None) -> list[tuple[np.ndarray, str]]:
    entries = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()][:limit]
    clips = []
    for entry in entries:
        path = Path(entry["audio"])
        path = path if path.is_absolute() else manifest.parent / path
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        if rate != SAMPLE_RATE:
            audio = load_audio(path)[:, None]
        clips.append((audio.mean(axis=1)[: 30 * SAMPLE_RATE], entry["text"]))
    return clips


def settings(paddings: tuple[float, ...], reference: bool) -> dict[str, tuple[str, float | None]]:
    named: dict[str, tuple[str, float | None]] = {"reference": ("reference", None)} if reference else {}
    named["full"] = ("trimmed", None)
    named.update({f"pad={p:g}": ("trimmed", p) for p in paddings})
    return named


@torch.inference_mode()
def run_set(model, clips: list[tuple[np.ndarray, str]], named: dict, batch_size: int) -> dict[str, dict]:
    hypotheses: dict[str, list[str]] = {name: [] for name in named}
    seconds = dict.fromkeys(named, 0.0)
    for start in range(0, len(clips), CHUNK):
        audios = [audio for audio, _ in clips[start : start + CHUNK]]
        budgets = [token_budget(model, len(a) / SAMPLE_RATE, None) for a in audios]
        for name, (mode, padding) in named.items():  # interleaved: each chunk through every setting
            model.context_padding = padding
            started = time.perf_counter()
            results = model.transcribe(audios, mode, batch_size, budgets, stop_loops=True)
            seconds[name] += time.perf_counter() - started
            hypotheses[name] += [guarded_text(model, r.token_ids)[0] for r in results]
    audio_seconds = sum(len(a) for a, _ in clips) / SAMPLE_RATE
    report = {}
    for name in named:
        pairs = [
            Pair(str(i), text, hyp, len(a) / SAMPLE_RATE)
            for i, ((a, text), hyp) in enumerate(zip(clips, hypotheses[name], strict=True))
        ]
        score = score_corpus(pairs)
        report[name] = {
            "wer": round(100 * score.wer, 2),
            "cer": round(100 * score.cer, 2),
            "rtfx": round(audio_seconds / seconds[name], 1),
            "same_text_as_full": sum(h == f for h, f in zip(hypotheses[name], hypotheses["full"], strict=True)),
        }
    return {"clips": len(clips), "audio_seconds": round(audio_seconds, 1), "settings": report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", default="tiny-en")
    parser.add_argument("--clips", type=int, default=100, help="espeak-ng held-out sentences")
    parser.add_argument("--human", type=Path, help="a JSONL manifest of human clips (audio, text)")
    parser.add_argument("--human-clips", type=int, default=None)
    parser.add_argument("--paddings", type=float, nargs="+", default=list(PADDINGS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--no-reference", action="store_true", help="leave out --reference-mode (the slowest)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    sets = espeak_sets(args.clips, HELDOUT_SEED)
    if args.human:
        sets["human"] = human_set(args.human, args.human_clips)
    named = settings(tuple(args.paddings), not args.no_reference)
    report = {"model": args.model, "torch_threads": torch.get_num_threads(), "sets": {}}
    for set_name, clips in sets.items():
        report["sets"][set_name] = run_set(model, clips, named, args.batch_size)
        result = report["sets"][set_name]
        print(f"\n== {set_name}: {result['clips']} clips, {result['audio_seconds']} s", flush=True)
        for name, row in result["settings"].items():
            print(
                f"   {name:10s} WER {row['wer']:6.2f}  CER {row['cer']:6.2f}  RTFx {row['rtfx']:6.1f}  "
                f"same text as full: {row['same_text_as_full']}/{result['clips']}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
