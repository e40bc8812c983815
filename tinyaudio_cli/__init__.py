"""tinyaudio: LLM-based speech recognition (Whisper encoder -> MOSA projector -> causal LM)."""

from __future__ import annotations

__version__ = "0.1.0.dev0"
