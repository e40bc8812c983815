"""`tinyaudio info` reports versions, ffmpeg and the tinyaudio models in the Hugging Face cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tinystack import build_checkpoint, fake_hub_cache

from tinyaudio_cli.model import TinyAudioConfig


@pytest.mark.slow  # whole processes or runs: out of the fast loop (-m 'not slow')
def test_info_lists_cached_checkpoints_and_their_bases(tmp_path):
    checkpoint = build_checkpoint(tmp_path / "src", "llama")
    config = TinyAudioConfig.from_pretrained(checkpoint)
    cache = tmp_path / "hub"
    fake_hub_cache(cache, "org/whisper-tiny", config.audio_model_id)
    config.audio_model_id, config.text_model_id = "org/whisper-tiny", "org/lm-missing"
    config.save_pretrained(checkpoint)
    fake_hub_cache(cache, "org/tiny-audio", checkpoint)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TINYAUDIO_MODEL": "org/tiny-audio"}
    result = subprocess.run(
        [sys.executable, "-m", "tinyaudio_cli", "info", "--json"], capture_output=True, text=True, env=env, check=True
    )
    report = json.loads(result.stdout)
    assert report["default_model"] == "org/tiny-audio"
    assert [m["id"] for m in report["hf_cache"]["models"]] == ["org/tiny-audio"]
    bases = {b["id"]: b["cached"] for b in report["hf_cache"]["bases"]}
    assert bases == {"org/whisper-tiny": True, "org/lm-missing": False}
    assert report["packages"]["torch"] and report["ffmpeg"]["path"]
    table = subprocess.run(
        [sys.executable, "-m", "tinyaudio_cli", "info"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "org/tiny-audio" in table and "not cached" in table
