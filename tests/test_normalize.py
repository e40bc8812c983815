"""The WER normaliser: Whisper's English rules, read offline, plus tag/filler/equivalent-spelling clean-up."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

from tinyaudio_cli.errors import TinyAudioError
from tinyaudio_cli.evaluation.normalize import get_normalizer, load_spelling_map, normalize_text

os.environ["HF_HUB_OFFLINE"] = "1"

# Outputs checked against Whisper's EnglishTextNormalizer; note it keeps currency symbols ("$20").
WHISPER_PAIRS = [
    ("twenty five", "25"),
    ("twenty-five", "25"),
    ("one hundred and twenty three", "123"),
    ("two point five", "2.5"),
    ("first second third", "1st 2nd 3rd"),
    ("1,000,000", "1000000"),
    ("It costs $20.", "it costs $20"),
    ("I paid twenty dollars", "i paid $20"),
    ("ten thousand dollars", "$10000"),
    ("it is 3.5 percent", "it is 3.5%"),
    ("Mr. Smith went to Washington.", "mister smith went to washington"),
    ("Dr. Who", "doctor who"),
    ("The colour of the centre", "the color of the center"),
    ("Hello, World!", "hello world"),
    ("He won't go; they can't stop.", "he will not go they can not stop"),
    ("café naïve", "cafe naive"),
    ("  MULTIPLE   spaces ", "multiple spaces"),
]

# What the clean-up adds on top of Whisper.
CLEANUP_PAIRS = [
    ("uh I um think <inaudible> so", "i think so"),
    ("[laughter] yes", "yes"),
    ("{noise} hello {breath}", "hello"),
    ("Huh, ah, umm... hm, mhm, uhm. Yes!", "yes"),
    ("OK, all right", "okay alright"),
    ("It's ok.", "it is okay"),
    ("okayed and hummus", "okayed and hummus"),  # whole words only
    ("<COMMA> well <PERIOD>", "well"),  # GigaSpeech punctuation tags
]


@pytest.mark.parametrize(("text", "expected"), WHISPER_PAIRS)
def test_whisper_rules(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@pytest.mark.parametrize(("text", "expected"), CLEANUP_PAIRS)
def test_tags_fillers_and_equivalent_spellings(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_cleanup_goes_beyond_plain_whisper() -> None:
    plain = EnglishTextNormalizer(load_spelling_map())
    text = "huh {noise} ok"
    assert plain(text) == "huh noise ok"
    assert normalize_text(text) == "okay"


def test_spelling_map_is_whispers_full_map() -> None:
    mapping = load_spelling_map()
    assert len(mapping) == 1739  # Whisper's english.json
    assert mapping["colour"] == "color"
    assert mapping["aeroplane"] == "airplane"


def test_spelling_map_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "normalizer.json"
    path.write_text(json.dumps({"colour": "kolor"}))
    assert normalize_text("Colour centre", spelling_map_path=str(path)) == "kolor centre"
    assert normalize_text("Colour centre") == "color center"


@pytest.mark.parametrize("content", [None, "not json", "[1, 2]"])
def test_bad_spelling_map_file(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "normalizer.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TinyAudioError):
        load_spelling_map(path)


def test_normaliser_is_built_once() -> None:
    assert get_normalizer() is get_normalizer()


def test_empty_text() -> None:
    assert normalize_text("") == ""
    assert normalize_text("uh <inaudible>") == ""
