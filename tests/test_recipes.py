"""recipes/: recordings made from clips keep every word; splits hold out whole speakers; degraded and
synthesised copies are what they say they are."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
RATE = 16_000


def test_augmented_recordings_hold_their_clips_with_silence_around(tmp_path: Path) -> None:
    clips = {}
    for index, text in enumerate(["One two.", "Three four five.", "Six."]):
        tone = 0.3 * np.sin(2 * np.pi * (200 + 100 * index) * np.arange(RATE // 2 + index * 800) / RATE)
        sf.write(tmp_path / f"c{index}.wav", tone.astype(np.float32), RATE, subtype="PCM_16")
        clips[text] = len(tone)
    manifest = tmp_path / "in.jsonl"
    manifest.write_text("".join(json.dumps({"audio": f"c{i}.wav", "text": t}) + "\n" for i, t in enumerate(clips)))

    out = tmp_path / "out" / "mix"
    command = [sys.executable, ROOT / "recipes" / "augment_speech.py", manifest, out, "--count", "12", "--seed", "5"]
    subprocess.run(command, check=True, capture_output=True)
    records = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    assert len(records) == 12
    used = []
    for record in records:
        audio, rate = sf.read(out.parent / record["audio"], dtype="float32")
        assert rate == RATE and record["seconds"] == round(len(audio) / RATE, 3)
        utterances = record["text"].replace(". ", ".|").split("|")
        assert 1 <= len(utterances) <= 3 and set(utterances) <= set(clips)
        assert len(audio) >= sum(clips[text] for text in utterances)  # every clip whole, plus silence and pauses
        assert np.abs(audio).max() <= 1.0
        used.extend(utterances)
    assert set(used) == set(clips)  # every input clip is drawn
    assert any(len(r["text"].split(". ")) > 1 for r in records)  # some recordings join several utterances


def _write_manifest(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def test_human_split_holds_out_whole_speakers_and_main_reader_prompts(tmp_path: Path) -> None:
    (tmp_path / "flac").mkdir()
    records = []

    def clip(name: str, text: str, speaker: str) -> None:
        sf.write(tmp_path / "flac" / f"{name}.flac", np.zeros(800, dtype=np.float32), RATE)
        records.append({"audio": f"flac/{name}.flac", "text": text, "speaker": speaker, "seconds": 0.05})

    for prompt in range(30):
        for take in range(1 + prompt % 3):  # several takes of a prompt must stay on one side
            clip(f"kathleen_arctic_a{prompt:04d}_{take}", f"Sentence number {prompt}.", "kathleen")
    clip("kathleen_arctic_b0537_9", "Sentence number 7.", "kathleen")  # misfiled take: b0537 reading a0007's text
    for speaker in ("fsdd-theo", "fsdd-george", "fsdd-lucas"):
        for digit in ("zero", "one", "two"):
            for index in range(10):
                clip(f"fsdd_{digit}_{speaker}_{index}", digit, speaker)
    for index in range(4):
        clip(f"hifi_{index}", f"Book line {index}.", "hifitts-6097")
    manifest = tmp_path / "manifest.jsonl"
    _write_manifest(manifest, records)

    out = tmp_path / "split"
    command = [
        sys.executable,
        ROOT / "recipes" / "human_split.py",
        manifest,
        out,
        "--check-speakers",
        "hifitts-6097",
        "--check-digits",
        "fsdd-theo=6",
        "--dev-prompts",
        "8",
        "--digits-per-label",
        "2",
    ]
    subprocess.run(command, check=True, capture_output=True)
    sets = {
        name: [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()]
        for name in ("check", "dev", "train-main", "train-digits")
    }
    for entries in sets.values():
        assert all(Path(entry["audio"]).is_absolute() and Path(entry["audio"]).is_file() for entry in entries)
    check_speakers = {entry["speaker"] for entry in sets["check"]}
    assert check_speakers == {"hifitts-6097", "fsdd-theo"}
    assert sum(entry["speaker"] == "fsdd-theo" for entry in sets["check"]) == 6
    assert sum(entry["speaker"] == "hifitts-6097" for entry in sets["check"]) == 4
    trained = sets["train-main"] + sets["train-digits"]
    assert not check_speakers & {entry["speaker"] for entry in trained}  # whole speakers never trained on

    def prompt(entry: dict) -> str:
        return Path(entry["audio"]).name.split("_")[2]

    dev_prompts = {prompt(entry) for entry in sets["dev"]}
    assert len(dev_prompts) == 8
    assert not dev_prompts & {prompt(entry) for entry in sets["train-main"]}
    assert not {e["text"] for e in sets["dev"]} & {e["text"] for e in sets["train-main"]}  # misfiled take too
    assert len(sets["dev"]) + len(sets["train-main"]) >= 59  # only the misfiled take may be dropped
    digits = sets["train-digits"]
    assert len(digits) == 2 * 3 * 2  # two per digit label and training speaker
    assert {entry["speaker"] for entry in digits} == {"fsdd-george", "fsdd-lucas"}


def _band_energy(audio: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


@pytest.mark.slow  # whole processes or runs: out of the fast loop (-m 'not slow')
def test_degraded_copies_keep_text_and_apply_what_they_name(tmp_path: Path) -> None:
    times = np.arange(2 * RATE) / RATE
    # a low and a high tone: the telephone band keeps the first and removes the second
    source = (0.3 * np.sin(2 * np.pi * 500 * times) + 0.3 * np.sin(2 * np.pi * 6000 * times)).astype(np.float32)
    sf.write(tmp_path / "a.wav", source, RATE, subtype="PCM_16")
    sf.write(tmp_path / "b.wav", source[:RATE], RATE, subtype="PCM_16")
    manifest = tmp_path / "in.jsonl"
    _write_manifest(manifest, [{"audio": "a.wav", "text": "Two seconds."}, {"audio": "b.wav", "text": "One."}])

    out = tmp_path / "out" / "deg"
    command = [sys.executable, ROOT / "recipes" / "degrade_speech.py", manifest, out, "--copies", "40", "--seed", "1"]
    subprocess.run(command, check=True, capture_output=True)
    records = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    assert len(records) == 80
    seen = set()
    for record in records:
        audio, rate = sf.read(out.parent / record["audio"], dtype="float32")
        assert rate == RATE and record["seconds"] == round(len(audio) / RATE, 3)
        original = 2 * RATE if record["text"] == "Two seconds." else RATE
        effects = record["effects"]
        assert 1 <= len(effects) <= 3 and np.abs(audio).max() <= 1.0
        assert not np.allclose(audio[: min(len(audio), original)], source[: min(len(audio), original)], atol=1e-3)
        speed = [float(e[5:]) for e in effects if e.startswith("speed")]
        expected = original / speed[0] if speed else original
        assert abs(len(audio) - expected) < 0.12 * RATE  # codecs pad a little; nothing else changes the length
        if {"telephone", "gsm"} & set(effects) and not any(e.startswith(("white", "brown", "babble")) for e in effects):
            # speed moves the tones by 10 %; the 3.4 kHz band edge still separates them
            assert _band_energy(audio, 4000, 8000) < 0.01 * _band_energy(audio, 200, 3400)
        seen.update(re.match(r"mp3|[a-z]+", effect).group(0) for effect in effects)
    assert {"speed", "reverb", "white", "brown", "babble", "telephone", "gsm", "mp3", "opus"} <= seen


def test_tts_speech_speaks_every_text_with_non_flite_voices(tmp_path: Path) -> None:
    texts = ["The ship sailed at dawn.", "Nobody answered the second letter.", "-Dashes start this one."]
    manifest = tmp_path / "in.jsonl"
    _write_manifest(manifest, [{"audio": "x.wav", "text": text} for text in texts])
    out = tmp_path / "out" / "tts"
    command = [sys.executable, ROOT / "recipes" / "tts_speech.py", manifest, out, "--count", "9", "--seed", "2"]
    subprocess.run(command, check=True, capture_output=True)
    records = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    assert len(records) == 9
    assert [sorted(r["text"] for r in records[i : i + 3]) for i in (0, 3, 6)] == [sorted(texts)] * 3
    for record in records:
        audio, rate = sf.read(out.parent / record["audio"], dtype="float32")
        assert rate == RATE and record["seconds"] == round(len(audio) / RATE, 3)
        assert len(audio) > 0.8 * RATE and np.sqrt(np.mean(audio**2)) > 0.01  # speech, not an empty file
        assert record["voice"].split(":")[0] in {"espeak-ng", "festival"} and "flite" not in record["voice"]


def test_unrelated_counts_hypotheses_sharing_no_content_word(tmp_path: Path) -> None:
    rows = [
        ("the suit was washed in the water", "the suit was washed in water"),  # errors, same sentence
        ("the suit was washed in the water", "she painted the table blue"),  # invented: unrelated
        ("eight", "eight"),
        ("eight", "and then it was"),  # function words only: nothing shared
        ("the suit was washed", ""),  # empty: not invented
        ("it is", "it is"),  # a reference of function words only cannot be judged
    ]
    records = [
        {"id": str(i), "reference": r, "hypothesis": h, "reference_norm": r, "hypothesis_norm": h}
        for i, (r, h) in enumerate(rows)
    ]
    records.append(
        {"id": "failed", "reference": "x", "hypothesis": None, "reference_norm": None, "hypothesis_norm": None}
    )
    predictions = tmp_path / "predictions.jsonl"
    _write_manifest(predictions, records)
    command = [sys.executable, ROOT / "benchmarks" / "unrelated.py", predictions, "--list"]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    assert "7 clips, 2 unrelated (40.0% of 5 scored), 1 empty, 2 skipped" in output
    assert "HYP she painted the table blue" in output and "HYP and then it was" in output
