"""Whisper's English text normaliser, working offline, plus the clean-up evaluation adds on top.

WER is only comparable with published numbers (the Open ASR Leaderboard, Whisper's paper) when the
references and hypotheses go through the same normaliser. Whisper's `EnglishTextNormalizer` ships
with transformers, but its British->American spelling map (`english.json`, the same file Whisper
repos call `normalizer.json`) only comes from the Hub there; the `whisper-normalizer` package ships
an identical copy, so that is where the map is read from unless a file is named explicitly.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from tinyaudio_cli.errors import TinyAudioError

# Package and resource holding Whisper's english.json (byte-for-byte the same 1,739 entries).
SPELLING_MAP_PACKAGE = "whisper_normalizer"
SPELLING_MAP_RESOURCE = "normalizers/english.json"
SPELLING_MAP_PIP_NAME = "whisper-normalizer"

# Bracketed annotations (<inaudible>, [laughter], {noise}, GigaSpeech's <COMMA>) are not speech.
# Whisper drops <...> and [...] itself; doing it first also covers {...}, which it would keep as a word.
TAG_PATTERN = re.compile(r"<[^<>]*>|\[[^\[\]]*\]|\{[^{}]*\}")

# Hesitations no reference spells consistently. Whisper removes hmm/mm/mhm/mmm/uh/um; the rest is the
# list the Open ASR Leaderboard's normaliser removes today, so scores stay comparable with it.
FILLER_WORDS = (
    *("hmm", "mm", "mhm", "mmm", "uh", "um"),
    *("ah", "aha", "ahh", "ahm", "eh", "ehehe", "em", "hm", "huh", "hum", "mhum", "uhm", "umm", "uhuh"),
)
FILLER_PATTERN = re.compile(r"\b(?:" + "|".join(FILLER_WORDS) + r")\b")

# Spellings of one word that references disagree on; both the Tiny Audio reference scorer and the
# leaderboard fold these so they never count as errors.
EQUIVALENT_FORMS = ((re.compile(r"\bok\b"), "okay"), (re.compile(r"\ball right\b"), "alright"))

SPACES = re.compile(r"\s+")


class TextNormalizer:
    """Whisper's English normaliser followed by tag, filler and equivalent-spelling clean-up."""

    def __init__(self, spelling_map: dict[str, str]) -> None:
        # transformers imports lazily; keep the CLI's start-up free of it until scoring needs it.
        from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

        self._whisper = EnglishTextNormalizer(spelling_map)

    def __call__(self, text: str) -> str:
        text = self._whisper(TAG_PATTERN.sub(" ", text))
        text = FILLER_PATTERN.sub(" ", text)
        for pattern, replacement in EQUIVALENT_FORMS:
            text = pattern.sub(replacement, text)
        return SPACES.sub(" ", text).strip()


def load_spelling_map(spelling_map_path: str | Path | None = None) -> dict[str, str]:
    """The British->American map: from `spelling_map_path` if given, else from whisper-normalizer."""
    if spelling_map_path is not None:
        path = Path(spelling_map_path).expanduser()
        try:
            return _as_spelling_map(json.loads(path.read_text(encoding="utf-8")), str(path))
        except (OSError, ValueError) as error:
            raise TinyAudioError(
                f"Cannot read the spelling map {path}: {error}",
                hint="pass a Whisper normalizer.json / english.json file",
            ) from error
    try:
        resource = resources.files(SPELLING_MAP_PACKAGE).joinpath(SPELLING_MAP_RESOURCE)
        return _as_spelling_map(json.loads(resource.read_text(encoding="utf-8")), SPELLING_MAP_PACKAGE)
    except ModuleNotFoundError as error:
        raise TinyAudioError(
            "Scoring needs Whisper's English spelling map, which comes with the whisper-normalizer package",
            hint=f"pip install {SPELLING_MAP_PIP_NAME}",
        ) from error


def _as_spelling_map(data: object, source: str) -> dict[str, str]:
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise TinyAudioError(f"{source} is not a spelling map (a JSON object of word -> word)")
    return data


@lru_cache(maxsize=4)
def get_normalizer(spelling_map_path: str | None = None) -> TextNormalizer:
    """One normaliser per spelling map, built once: it reads the map and sets up the number parser."""
    return TextNormalizer(load_spelling_map(spelling_map_path))


def normalize_text(text: str, spelling_map_path: str | None = None) -> str:
    """Normalise `text` the way WER is scored: lowercase, no punctuation, digits, American spelling."""
    return get_normalizer(spelling_map_path)(text)
