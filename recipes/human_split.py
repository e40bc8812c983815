"""Split a human speech manifest into a check set of whole held-out speakers, training sets and a dev split.

The check set must measure speakers the projector never heard, so whole speakers go to it. The main
reader (Kathleen, CMU ARCTIC prompts) has several takes per prompt: her dev split is drawn by prompt id,
and a training take whose text equals a dev sentence is dropped too (a few takes are filed under the id of
a neighbouring prompt). Single-word digit clips are two thirds of the clips: each digit speaker keeps only a
few per digit in training, so they cannot dominate the mix.

    python recipes/human_split.py ../shared/human-train/manifest.jsonl /work/h18/split \
        --check-speakers hifitts-6097 fleurs-en_us-unidentified ljspeech-LJ --check-digits fsdd-theo=50

Writes into OUT_DIR (audio paths absolute, so the manifests can live anywhere):
  check.jsonl          every clip of the --check-speakers, plus N clips of each --check-digits speaker
  dev.jsonl            all takes of --dev-prompts Kathleen prompts (chosen by seed)
  train-main.jsonl     the main reader's other takes
  train-digits.jsonl   --digits-per-label clips per digit and per remaining digit speaker
  train-other.jsonl    any other speaker not held out (may be empty)
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import defaultdict
from pathlib import Path

DIGIT_PREFIX = "fsdd-"
PROMPT_ID = re.compile(r"arctic_[ab]\d{4}")


def read(path: Path) -> list[dict]:
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for entry in entries:
        entry["audio"] = str((path.parent / entry["audio"]).resolve())
    return entries


def text_key(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


def spread_digits(entries: list[dict], per_label: int, rng: random.Random) -> list[dict]:
    """`per_label` clips of each digit label, so a speaker's share does not lean on one digit."""
    by_label: dict[str, list[dict]] = defaultdict(list)
    for entry in entries:
        by_label[entry["text"]].append(entry)
    kept = []
    for label in sorted(by_label):
        clips = sorted(by_label[label], key=lambda entry: entry["audio"])
        kept += rng.sample(clips, min(per_label, len(clips)))
    return kept


def write(path: Path, entries: list[dict]) -> None:
    lines = [
        json.dumps({key: entry[key] for key in ("audio", "text", "speaker", "seconds") if key in entry})
        for entry in entries
    ]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    minutes = sum(entry.get("seconds", 0.0) for entry in entries) / 60
    print(f"{path}: {len(entries)} clips, {minutes:.1f} min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path, help="human-train manifest.jsonl (audio, text, speaker)")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument(
        "--check-speakers", nargs="*", default=["hifitts-6097", "fleurs-en_us-unidentified", "ljspeech-LJ"]
    )
    parser.add_argument(
        "--check-digits",
        nargs="*",
        default=["fsdd-theo=50"],
        metavar="SPEAKER=N",
        help="digit speakers held out whole; N of their clips go to the check set",
    )
    parser.add_argument("--main-speaker", default="kathleen")
    parser.add_argument("--dev-prompts", type=int, default=40)
    parser.add_argument("--digits-per-label", type=int, default=6, help="per digit and per training speaker")
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    entries = read(args.manifest)
    by_speaker: dict[str, list[dict]] = defaultdict(list)
    for entry in entries:
        by_speaker[entry["speaker"]].append(entry)
    unknown = [s for s in args.check_speakers if s not in by_speaker]
    digit_checks = dict(item.split("=", 1) for item in args.check_digits)
    unknown += [s for s in digit_checks if s not in by_speaker]
    if unknown or args.main_speaker not in by_speaker:
        raise SystemExit(f"speakers not in {args.manifest}: {', '.join(unknown or [args.main_speaker])}")

    check = [entry for speaker in args.check_speakers for entry in by_speaker[speaker]]
    for speaker, count in digit_checks.items():
        labels = len({entry["text"] for entry in by_speaker[speaker]})
        check += spread_digits(by_speaker[speaker], -(-int(count) // labels), rng)[: int(count)]

    main_takes = by_speaker[args.main_speaker]
    prompts = sorted({PROMPT_ID.search(entry["audio"]).group(0) for entry in main_takes})
    dev_prompts = set(rng.sample(prompts, args.dev_prompts))
    dev = [entry for entry in main_takes if PROMPT_ID.search(entry["audio"]).group(0) in dev_prompts]
    dev_texts = {text_key(entry["text"]) for entry in dev}
    train_main = [
        entry
        for entry in main_takes
        if PROMPT_ID.search(entry["audio"]).group(0) not in dev_prompts and text_key(entry["text"]) not in dev_texts
    ]

    held = set(args.check_speakers) | set(digit_checks) | {args.main_speaker}
    digits, other = [], []
    for speaker in sorted(by_speaker):
        if speaker in held:
            continue
        if speaker.startswith(DIGIT_PREFIX):
            digits += spread_digits(by_speaker[speaker], args.digits_per_label, rng)
        else:
            other += by_speaker[speaker]

    args.out_dir.mkdir(parents=True, exist_ok=True)
    write(args.out_dir / "check.jsonl", check)
    write(args.out_dir / "dev.jsonl", dev)
    write(args.out_dir / "train-main.jsonl", train_main)
    write(args.out_dir / "train-digits.jsonl", digits)
    write(args.out_dir / "train-other.jsonl", other)


if __name__ == "__main__":
    main()
