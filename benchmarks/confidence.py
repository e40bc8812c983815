"""How well segment confidence tells real speech from text a model invents over noise and music.

Non-speech clips are made with ffmpeg: white, pink and brown noise (anoisesrc) at several levels, synthetic
music (aevalsrc chords and plucked sine melodies, some over noise) and near-silence with mains hum. Speech is
human read speech of speakers the models never trained on (the h18 check and dev splits) plus espeak-ng
sentences. Every clip is transcribed as `tinyaudio transcribe` does (VAD on), and the non-speech clips once
more with the VAD off (--no-vad), where only the model itself can tell. Every segment over non-speech is
invented; every segment of a speech clip is real speech. For each rule the script reports the share of
invented segments removed and the share of real speech segments wrongly removed, at tinyaudio's default
and over a grid of thresholds.

    python benchmarks/confidence.py -m tiny-en [--speech /work/h18/split/check.jsonl ...] [--work DIR]

Each clip's segments are saved in DIR/<model>.json; a rerun decodes only clips not there yet (--fresh: all).
Run it with the real small stack (TINYAUDIO_BASES, HF_HUB_OFFLINE=1) and OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from collections import Counter
from pathlib import Path

SAMPLE_RATE = 16_000
CLIP_SECONDS = 12
SENTENCES = [
    "the quick brown fox jumps over the lazy dog near the river bank",
    "we will meet at two on saturday to talk about the report",
    "please remember to check the timestamps of every region",
    "my grandmother likes books more than questions about the garden",
    "where did you put the dark table and the green chair",
    "speech recognition turns spoken words into written text",
    "the last train leaves the station at half past nine tonight",
    "she sold the old house and moved to a small town by the sea",
    "every window of audio is at most thirty seconds long",
    "call me when you arrive and bring the blue umbrella",
    "seven hundred people waited outside the theatre in the rain",
    "the doctor said it would take about three weeks to heal",
]
VOICES = ["en-us", "en-gb", "en-029", "en-us+f3", "en-gb-x-rp", "en-us+m3"]

# a plucked note every half second: time within the note, and a pitch from the note's index
_NOTE_T = "mod(t,0.5)"
_PLUCK = "exp(-5*mod(t,0.5))"


def _melody(base: float, steps: str) -> str:
    pitch = f"{base}*pow(2,{steps}/12)"
    return "+".join(f"{amp}*{_PLUCK}*sin(2*PI*{k}*{pitch}*{_NOTE_T})" for k, amp in ((1, 0.35), (2, 0.12), (3, 0.06)))


def _chords(root: float, tremolo: float) -> str:
    # major triads moving every 2 s (I-IV-V-I), with a slow tremolo
    shift = "pow(2,(5*eq(mod(trunc(t/2),4),1)+7*eq(mod(trunc(t/2),4),2))/12)"
    tones = "+".join(f"sin(2*PI*{root}*{ratio}*{shift}*t)" for ratio in (1, 1.26, 1.498))
    return f"0.12*(1+{tremolo}*sin(2*PI*5*t))*({tones})"


def nonspeech_sources() -> dict[str, list[str]]:
    """name -> ffmpeg input arguments for CLIP_SECONDS of mono 16 kHz non-speech."""
    d = f"d={CLIP_SECONDS}"
    sources: dict[str, list[str]] = {}
    for color in ("white", "pink", "brown"):
        for amplitude in (0.01, 0.05, 0.2, 0.6):
            sources[f"noise-{color}-{amplitude}"] = [
                "-f", "lavfi", "-i", f"anoisesrc=color={color}:amplitude={amplitude}:seed=11:r={SAMPLE_RATE}:{d}",
            ]  # fmt: skip
    melodies = {
        "arpeggio": "(4*mod(trunc(t/0.5),3))",
        "scale": "(trunc(mod(trunc(t/0.5),7)*12/7+0.5))",
        "leaps": "(mod(trunc(t/0.5)*7,12))",
    }
    for name, steps in melodies.items():
        for base in (220, 440):
            melody = f"aevalsrc=exprs='{_melody(base, steps)}':s={SAMPLE_RATE}:{d}"
            sources[f"melody-{name}-{base}"] = ["-f", "lavfi", "-i", melody]
    for root, tremolo in ((130.8, 0.0), (196.0, 0.3), (261.6, 0.6)):
        sources[f"chords-{root:g}-{tremolo:g}"] = [
            "-f", "lavfi", "-i", f"aevalsrc=exprs='{_chords(root, tremolo)}':s={SAMPLE_RATE}:{d}",
        ]  # fmt: skip
    for noisy in ("pink", "white"):  # music over a noise floor
        sources[f"melody-over-{noisy}"] = [
            "-f", "lavfi", "-i", "aevalsrc=exprs='" + _melody(330, melodies['leaps']) + f"':s={SAMPLE_RATE}:{d}",
            "-f", "lavfi", "-i", f"anoisesrc=color={noisy}:amplitude=0.05:seed=5:r={SAMPLE_RATE}:{d}",
            "-filter_complex", "amix=inputs=2:normalize=0",
        ]  # fmt: skip
    for root in (110, 165, 220, 294, 392):  # chords pulsing at syllable rates: what silero most often takes for speech
        for rate, depth in ((3, 0.9), (4, 0.9), (6, 0.7), (8, 0.5)):
            pulse = f"0.12*(1+{depth}*sin(2*PI*{rate}*t))"
            tones = "+".join(f"sin(2*PI*{root}*{ratio}*t)" for ratio in (1, 1.26, 1.498))
            sources[f"pulse-{root}-{rate}hz-{depth}"] = [
                "-f", "lavfi", "-i", f"aevalsrc=exprs='{pulse}*({tones})':s={SAMPLE_RATE}:{d}",
            ]  # fmt: skip
    for i in range(32):  # more of that: triads (major, minor) on other roots, pulsing at 3-4.5 Hz
        root, third = 110 * 2 ** ((i * 5 % 24) / 12), (1.26, 1.189)[i % 2]
        pulse = f"0.12*(1+{0.8 + 0.05 * (i % 5):.2f}*sin(2*PI*{3 + 0.5 * (i % 4)}*t))"
        tones = "+".join(f"sin(2*PI*{root:.1f}*{ratio}*t)" for ratio in (1, third, 1.498))
        sources[f"sweep-{i:02d}"] = ["-f", "lavfi", "-i", f"aevalsrc=exprs='{pulse}*({tones})':s={SAMPLE_RATE}:{d}"]
    for base in (150, 220, 300):  # a "sung" melody: rich harmonics with vibrato
        pitch = f"({base}*pow(2,trunc(mod(trunc(t/0.5)*7,12))/12))"
        voice = "+".join(f"(1/{k})*sin(2*PI*{k}*{pitch}*mod(t,0.5)+{k}*0.8*sin(2*PI*5.5*t))" for k in range(1, 9))
        sources[f"sung-{base}"] = [
            "-f", "lavfi", "-i", f"aevalsrc=exprs='0.15*(1-exp(-20*mod(t,0.5)))*({voice})':s={SAMPLE_RATE}:{d}",
        ]  # fmt: skip
    for rate in (3, 4):  # noise pulsing like syllables
        pulsed = f"0.3*pow(0.5+0.5*sin(2*PI*{rate}*t),2)*(random(0)*2-1)"
        sources[f"pulsed-noise-{rate}hz"] = ["-f", "lavfi", "-i", f"aevalsrc=exprs='{pulsed}':s={SAMPLE_RATE}:{d}"]
    for mains, level in ((50, 0.02), (60, 0.05), (50, 0.2)):  # silence with hum (and its odd harmonics)
        hum = f"{level}*(sin(2*PI*{mains}*t)+0.5*sin(2*PI*{3 * mains}*t)+0.25*sin(2*PI*{5 * mains}*t))"
        sources[f"hum-{mains}-{level}"] = ["-f", "lavfi", "-i", f"aevalsrc=exprs='{hum}':s={SAMPLE_RATE}:{d}"]
    return sources


def make_nonspeech(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, args in nonspeech_sources().items():
        path = folder / f"{name}.wav"
        if not path.exists():
            command = ["ffmpeg", "-loglevel", "error", "-y", *args, "-ac", "1", "-ar", str(SAMPLE_RATE), str(path)]
            subprocess.run(command, check=True)
        paths.append(path)
    return paths


def make_espeak(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"espeak-{index:02d}.wav"
        if not path.exists():
            voice = VOICES[(index + index // len(SENTENCES)) % len(VOICES)]  # no sentence twice in one voice
            speed = 130 + 10 * (index % 7)
            raw = subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", SENTENCES[index % len(SENTENCES)]],
                capture_output=True,
                check=True,
            ).stdout
            subprocess.run(
                ["ffmpeg", "-loglevel", "error", "-y", "-i", "-", "-ac", "1", "-ar", str(SAMPLE_RATE), str(path)],
                input=raw,
                check=True,
            )
        paths.append(path)
    return paths


def human_clips(manifests: list[Path], limit: int | None) -> list[Path]:
    paths = []
    for manifest in manifests:
        lines = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        paths += [Path(row["audio"]) for row in lines[:limit]]
    return paths


def decode(model_name: str, groups: dict[str, list[Path]], batch_size: int, saved: Path) -> list[dict]:
    """One record per segment: group, clip, whether the VAD was on, text and confidence. Each clip's segments
    are kept in `saved` (after each group), and a clip found there is not decoded again: a rerun with more
    clips decodes only those."""
    cache: dict[str, list[dict]] = json.loads(saved.read_text()) if saved.exists() else {}
    runs = [(group, paths, True) for group, paths in groups.items()]
    runs.append(("nonspeech", groups["nonspeech"], False))  # the --no-vad path: only the model can tell
    todo = [run for run in runs if any(_key(run[0], path, run[2]) not in cache for path in run[1])]
    if todo:
        _decode_into(cache, model_name, todo, batch_size, saved)
    return [record for group, paths, vad in runs for path in paths for record in cache[_key(group, path, vad)]]


def _key(group: str, path: Path, vad: bool) -> str:
    return f"{group}|{'vad' if vad else 'no-vad'}|{path}"


def _decode_into(cache: dict, model_name: str, runs: list, batch_size: int, saved: Path) -> None:
    import torch

    from tinyaudio_cli.audio.vad import VadOptions
    from tinyaudio_cli.inference.transcribe import TranscribeOptions, transcribe_files
    from tinyaudio_cli.model import load_model

    torch.set_num_threads(1)
    model = load_model(model_name, device="cpu")
    for group, paths, vad in runs:
        options = TranscribeOptions(batch_size=batch_size, vad=VadOptions() if vad else None)
        for result in transcribe_files(model, [p for p in paths if _key(group, p, vad) not in cache], options):
            if result.transcript is None:
                raise SystemExit(f"{result.path}: {result.error}")
            records = cache[_key(group, result.path, vad)] = []
            for segment in result.transcript.segments:
                records.append(
                    {
                        "group": group,
                        "clip": result.path.name,
                        "vad": vad,
                        "start": segment.start,
                        "end": segment.end,
                        "text": segment.text,
                        "tokens": len(segment.tokens),
                        "repetition_cut": segment.repetition_cut,
                        "avg_logprob": segment.avg_logprob,
                        "speech_probability": segment.speech_probability,
                    }
                )
            print(f"{group:9} vad={vad!s:5} {result.path.name}: {len(result.transcript.segments)} segments", flush=True)
        saved.write_text(json.dumps(cache, indent=1))


def removed(record: dict, min_speech: float | None, min_logprob: float | None) -> bool:
    """A rule: a segment goes when a measured value is under its threshold (None: not used; no value: kept)."""
    speech, logprob = record["speech_probability"], record["avg_logprob"]
    return (min_speech is not None and speech is not None and speech < min_speech) or (
        min_logprob is not None and logprob is not None and logprob < min_logprob
    )


def shares(records: list[dict], min_speech: float | None, min_logprob: float | None) -> dict[str, str]:
    """'removed/total (percent)' for invented segments with the VAD on, with it off, and for real speech."""
    cells = {}
    for name, chosen in (
        ("invented removed (VAD)", [r for r in records if r["group"] == "nonspeech" and r["vad"]]),
        ("invented removed (--no-vad)", [r for r in records if r["group"] == "nonspeech" and not r["vad"]]),
        ("speech wrongly removed", [r for r in records if r["group"] != "nonspeech"]),
    ):
        hit = sum(removed(r, min_speech, min_logprob) for r in chosen)
        cells[name] = f"{hit}/{len(chosen)} ({100 * hit / len(chosen):.0f}%)" if chosen else "0/0"
    return cells


def quantiles(values: list[float]) -> str:
    import numpy as np

    if not values:
        return "-"
    q = np.quantile(values, [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1])
    return " ".join(f"{v:.3f}" for v in q)


def report(records: list[dict], default: tuple[float | None, float | None], clips: int) -> None:
    print("\nsegments per group (VAD on unless said):", dict(Counter((r["group"], r["vad"]) for r in records)))
    passed = {r["clip"] for r in records if r["group"] == "nonspeech" and r["vad"]}
    print(f"non-speech clips: {clips}, of which the VAD let {len(passed)} through (in part) to the model")
    print("\ndistributions (min p5 p25 median p75 p95 max):")
    for label, chosen in (
        ("nonspeech, VAD", [r for r in records if r["group"] == "nonspeech" and r["vad"]]),
        ("nonspeech, --no-vad", [r for r in records if r["group"] == "nonspeech" and not r["vad"]]),
        *((g, [r for r in records if r["group"] == g]) for g in ("human", "espeak")),
    ):
        for key in ("speech_probability", "avg_logprob"):
            values = [r[key] for r in chosen if r[key] is not None]
            print(f"  {label:20} {key:18} n={len(values):4} {quantiles(values)}")
    print("\nnon-speech clips that got a segment with the VAD on:")
    for r in records:
        if r["group"] == "nonspeech" and r["vad"]:
            print(f"  {r['clip']:28} p={r['speech_probability']} lp={r['avg_logprob']} {r['text'][:60]!r}")
    print("\nrules (a segment goes when speech probability < S or avg_logprob < L):")
    grid = [(s, None) for s in (0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8)] + [(None, lp) for lp in (-0.5, -1.0, -1.5)]
    grid += [(s, lp) for s in (0.5, 0.6) for lp in (-1.0, -1.5)]
    for min_speech, min_logprob in [default, *(rule for rule in grid if rule != default)]:
        tag = " <- default" if (min_speech, min_logprob) == default else ""
        cells = " | ".join(f"{k} {v}" for k, v in shares(records, min_speech, min_logprob).items())
        print(f"  S={min_speech!s:5} L={min_logprob!s:5}: {cells}{tag}")
    print("\nreal speech segments the default removes:")
    for r in records:
        if r["group"] != "nonspeech" and removed(r, *default):
            print(f"  {r['clip']:44} {r['end'] - r['start']:5.2f} s p={r['speech_probability']} {r['text'][:50]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", default="tiny-en", help="checkpoint, as tinyaudio's -m takes it")
    parser.add_argument(
        "--speech",
        type=Path,
        nargs="*",
        default=[Path("/work/h18/split/check.jsonl"), Path("/work/h18/split/dev.jsonl")],
        help="manifests (jsonl with 'audio') of human speech",
    )
    parser.add_argument("--human-limit", type=int, default=None, help="first N clips of each manifest")
    parser.add_argument("--espeak", type=int, default=24, help="espeak-ng sentences")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tinyaudio-confidence"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fresh", action="store_true", help="decode every clip again, not only those not saved")
    args = parser.parse_args()

    saved = args.work / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', args.model)}.json"
    groups = {
        "nonspeech": make_nonspeech(args.work / "nonspeech"),
        "espeak": make_espeak(args.work / "espeak", args.espeak),
        "human": human_clips(args.speech, args.human_limit),
    }
    if args.fresh:
        saved.unlink(missing_ok=True)
    records = decode(args.model, groups, args.batch_size, saved)
    from tinyaudio_cli.inference.confidence import DEFAULT_MIN_AVG_LOGPROB, DEFAULT_MIN_SPEECH_PROBABILITY

    print(f"model {args.model}: {saved}")
    report(records, (DEFAULT_MIN_SPEECH_PROBABILITY, DEFAULT_MIN_AVG_LOGPROB), len(groups["nonspeech"]))


if __name__ == "__main__":
    main()
