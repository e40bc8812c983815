"""Count hypotheses that share no content word with their reference, from `tinyaudio eval` predictions.

A recogniser that mishears makes errors inside the sentence it heard; a projector the LM cannot read makes
the LM write a fluent sentence of its own. The second shows as a hypothesis with no content word (a word
outside a short list of English function words) in common with the reference. Words are compared after
eval's normaliser (the `*_norm` fields), so "Eight" and "8" agree when eval's normaliser makes them agree.

    python benchmarks/unrelated.py results/tiny-en/predictions.jsonl [more predictions.jsonl ...] [--list]

Prints, per file: clips, how many have a non-empty hypothesis that shares no content word with the
reference ("unrelated"), how many are empty, and with --list each unrelated pair.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

_FUNCTION_WORDS_TEXT = """
a an the and or but if so as of at by for from in into on onto to with without about over under up down
out off than then there here this that these those it its it's he him his she her hers they them their
theirs we us our ours you your yours i me my mine is are was were be been being am do does did done have
has had having will would shall should can could may might must not no nor yes oh uh um ah well just very
too also only all any some what which who whom whose when where why how s t d ll re ve m
"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS_TEXT.split())


def content_words(text: str | None) -> set[str]:
    return {word for word in (text or "").split() if word not in FUNCTION_WORDS}


def classify(record: dict) -> str:
    """'empty', 'unrelated', 'related', or 'skip' (failed sample, or a reference of function words only)."""
    if record.get("hypothesis") is None:
        return "skip"
    reference = content_words(record.get("reference_norm"))
    if not reference:
        return "skip"
    if not (record.get("hypothesis_norm") or "").strip():
        return "empty"
    return "related" if reference & content_words(record.get("hypothesis_norm")) else "unrelated"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("predictions", type=Path, nargs="+", help="predictions.jsonl written by tinyaudio eval -o")
    parser.add_argument("--list", action="store_true", help="print each unrelated reference/hypothesis pair")
    args = parser.parse_args()
    for path in args.predictions:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        counts = {"related": 0, "unrelated": 0, "empty": 0, "skip": 0}
        unrelated = []
        for record in records:
            kind = classify(record)
            counts[kind] += 1
            if kind == "unrelated":
                unrelated.append(record)
        scored = len(records) - counts["skip"]
        share = counts["unrelated"] / scored if scored else 0.0
        print(
            f"{path}: {len(records)} clips, {counts['unrelated']} unrelated ({share:.1%} of {scored} scored), "
            f"{counts['empty']} empty, {counts['skip']} skipped"
        )
        if args.list:
            for record in unrelated:
                print(f"  {record['id']}\n    REF {record['reference_norm']}\n    HYP {record['hypothesis_norm']}")


if __name__ == "__main__":
    main()
