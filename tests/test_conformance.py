"""Conformance with the reference implementation: its saved tiny checkpoint, its outputs on three clips."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from tinyaudio_cli import load_model

os.environ["HF_HUB_OFFLINE"] = "1"
FIXTURE = Path(os.environ.get("TINYAUDIO_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FIXTURE = FIXTURE / "fixtures" / "upstream-tiny"
CLIPS = ["hello_world", "quick_fox", "sine_440hz_1s"]

pytestmark = pytest.mark.skipif(
    not (FIXTURE / "reference.json").is_file(), reason=f"conformance fixture not found at {FIXTURE}"
)


@pytest.fixture(scope="module")
def reference():
    data = json.loads((FIXTURE / "reference.json").read_text())
    return {result["clip"]: result for result in data["results"]}


@pytest.fixture(scope="module")
def tensors():
    return load_file(FIXTURE / "reference_tensors.safetensors")


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(2)
    # config.json names the bases relative to the fixture folder: map them to absolute paths
    bases = {f"bases/{name}": FIXTURE / "bases" / name for name in ("whisper-tiny-random", "lm-tiny-random")}
    return load_model(str(FIXTURE / "checkpoint"), device="cpu", dtype="float32", bases=bases)


@pytest.fixture(scope="module")
def audios():
    return [sf.read(FIXTURE / "audio" / f"{clip}.wav", dtype="float32")[0] for clip in CLIPS]


def test_prompt_ids_match_reference(model):
    expected = json.loads((FIXTURE / "reference.json").read_text())["prompt"]["ids"]
    assert [*model.prompt.prefix, model.audio_token_id, *model.prompt.suffix] == expected


def test_features_encoder_and_projector_match(model, audios, tensors):
    features = model.features(audios)
    with torch.no_grad():
        encoded = model.encoder(features).last_hidden_state
        projected = model.projector(encoded)
        routing = model.projector.routing_weights(encoded)
    for i, clip in enumerate(CLIPS):
        head = tensors[f"{clip}.input_features_head"]
        torch.testing.assert_close(features[i, :, : head.shape[1]], head, atol=1e-4, rtol=0)
        torch.testing.assert_close(encoded[i], tensors[f"{clip}.encoder_last_hidden_state"], atol=1e-4, rtol=0)
        torch.testing.assert_close(projected[i], tensors[f"{clip}.projector_output"], atol=1e-4, rtol=0)
        torch.testing.assert_close(routing[i], tensors[f"{clip}.routing_weights"], atol=1e-4, rtol=0)


def test_merged_inputs_match(model, audios, tensors):
    projected = model.encode(model.features(audios))
    embeds, mask, positions, _ = model.build_inputs(list(projected), "reference")
    assert embeds.shape[1] == 402 and bool(mask.all())
    assert positions[0].tolist() == list(range(402))
    for i, clip in enumerate(CLIPS):
        torch.testing.assert_close(embeds[i], tensors[f"{clip}.merged_inputs_embeds"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_reference_mode_reproduces_reference_tokens_and_text(model, audios, reference, batch_size):
    results = model.transcribe(audios, mode="reference", batch_size=batch_size, max_new_tokens=20)
    for clip, result in zip(CLIPS, results, strict=True):
        assert result.token_ids == reference[clip]["generate"]["new_token_ids"]
        assert result.text == reference[clip]["pipeline"]["output"]["text"]
