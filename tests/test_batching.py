"""Choosing the batch size: the memory a window costs at the published model's dimensions (built on the
meta device: no weights, no GPU), the bounds, and backing off when memory runs out anyway."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from tinystack import build_tokenizer
from transformers import SmolLM3Config, SmolLM3ForCausalLM, WhisperConfig, WhisperFeatureExtractor, WhisperModel

from tinyaudio_cli.model import MOSAProjector, TinyAudioConfig, TinyAudioModel
from tinyaudio_cli.model.batching import (
    CPU_BATCH_SIZE,
    MAX_BATCH_SIZE,
    auto_batch_size,
    batch_size_for,
    fitting_batch,
)
from tinyaudio_cli.model.loading import load_tokenizer

os.environ["HF_HUB_OFFLINE"] = "1"
MB = 2**20
GB = 10**9


@pytest.fixture(scope="module")
def published_size(tmp_path_factory: pytest.TempPathFactory) -> TinyAudioModel:
    """whisper-large-v3-turbo's encoder → MOSA → SmolLM3-3B, in bfloat16, every tensor on the meta device."""
    folder: Path = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(folder)
    tokenizer = load_tokenizer(None, folder)
    whisper = WhisperConfig(
        d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120, decoder_layers=1,
        decoder_attention_heads=20, decoder_ffn_dim=5120, num_mel_bins=128, vocab_size=51866,
    )  # fmt: skip
    lm = SmolLM3Config(
        vocab_size=128256, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
        num_key_value_heads=4, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    with torch.device("meta"):
        encoder = WhisperModel(whisper).encoder.to(torch.bfloat16)
        language_model = SmolLM3ForCausalLM(lm).to(torch.bfloat16)
        projector = MOSAProjector(1280, 2048, 4096).to(torch.bfloat16)
    config = TinyAudioConfig(encoder_dim=1280, llm_dim=2048, projector_hidden_dim=4096)
    extractor = WhisperFeatureExtractor(feature_size=128)
    return TinyAudioModel(config, encoder, projector, language_model, tokenizer, extractor)


def test_a_window_of_the_published_model_costs_a_few_hundred_megabytes(published_size: TinyAudioModel) -> None:
    window = published_size.window_bytes()
    # KV cache alone: 36 layers x 2 x 4 heads x 128 x (prompt + 375 frames + 256 tokens) x 2 bytes
    sequence = len(published_size.prompt.prefix) + 375 + len(published_size.prompt.suffix) + 256
    assert window > 36 * 2 * 4 * 128 * sequence * 2
    assert 150 * MB < window < 400 * MB
    # an 80 GB H100 holding the weights (~8 GB) batches a couple of hundred windows; a 24 GB card a few dozen
    assert 128 <= batch_size_for(window, 72 * GB) <= MAX_BATCH_SIZE
    assert 30 <= batch_size_for(window, 16 * GB) <= 80


def test_batch_size_bounds() -> None:
    assert batch_size_for(300 * MB, 100 * MB) == 1  # not even one fits: try one, back off from there
    assert batch_size_for(1 * MB, 1000 * GB) == MAX_BATCH_SIZE
    assert batch_size_for(100 * MB, 10 * GB) == 2 * batch_size_for(100 * MB, 5 * GB)


def test_a_cpu_gets_the_cpu_batch_size(published_size: TinyAudioModel) -> None:
    assert published_size.device.type == "meta"
    assert auto_batch_size(published_size) == CPU_BATCH_SIZE


def test_running_out_of_memory_halves_the_batch_until_it_fits() -> None:
    tried = []

    def run(batch_size: int) -> str:  # an accelerator that holds at most 5 windows
        tried.append(batch_size)
        if batch_size > 5:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return f"ran {batch_size}"

    assert fitting_batch(run, 40) == ("ran 5", 5)
    assert tried == [40, 20, 10, 5]
    assert fitting_batch(run, 3) == ("ran 3", 3)
    with pytest.raises(torch.OutOfMemoryError):
        fitting_batch(lambda _: run(6), 4)
