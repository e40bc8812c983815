"""On a CUDA GPU (skipped without one): the engine's paths there, in bfloat16 as `--dtype auto` picks on CUDA.
benchmarks/gpu_check.sh runs these."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from tinystack import build_checkpoint

from tinyaudio_cli.model import load_model
from tinyaudio_cli.model.context import encode_frames

os.environ["HF_HUB_OFFLINE"] = "1"
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
]
SR = 16_000


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = str(build_checkpoint(tmp_path_factory.mktemp("cuda")))
    return load_model(folder, device="cuda"), load_model(folder, device="cpu", dtype="float32")


def noise(seconds: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.1).astype(np.float32)


def test_auto_dtype_is_bfloat16_on_cuda(models):
    gpu, _ = models
    assert gpu.device.type == "cuda" and gpu.dtype == torch.bfloat16


def test_short_context_states_on_gpu_match_the_cpu(models):
    gpu, cpu = models
    clip = [noise(2.0, 1)]
    with torch.no_grad():
        on_gpu = encode_frames(gpu.encoder, gpu.features(clip)[:, :, :304]).float().cpu()
        on_cpu = encode_frames(cpu.encoder, cpu.features(clip)[:, :, :304])
    torch.testing.assert_close(on_gpu, on_cpu, atol=0.1, rtol=0.05)  # bfloat16 against float32


@pytest.mark.parametrize("mode", ["trimmed", "reference"])
def test_batched_transcription_on_gpu_equals_one_at_a_time(models, mode):
    gpu, _ = models
    clips = [noise(s, i) for i, s in enumerate([0.7, 4.2, 9.5, 29.9])]
    together = gpu.transcribe(clips, mode=mode, batch_size=4, max_new_tokens=6)
    alone = [gpu.transcribe([clip], mode=mode, max_new_tokens=6)[0] for clip in clips]
    assert all(len(r.token_ids) == 6 or r.token_ids[-1] in gpu.stop_ids for r in together)
    # bfloat16 batches may round differently from single rows: most rows must still agree exactly
    same = sum(a.token_ids == b.token_ids for a, b in zip(together, alone, strict=True))
    assert same >= len(clips) - 1


def test_prefix_cache_on_gpu_gives_the_tokens_of_the_whole_prompt(models, monkeypatch):
    """On CUDA the prefill after a cached prefix takes attention's query-shorter-than-keys path (right-padded
    rows): in bfloat16 the tokens must agree with computing every position, all rows but at most one."""
    gpu, _ = models
    clips = [noise(s, 20 + i) for i, s in enumerate([0.9, 3.3, 7.1, 12.0])]
    reused = gpu.transcribe(clips, batch_size=4, max_new_tokens=8)
    monkeypatch.setattr(gpu, "prefix_cache", lambda: None)
    whole = gpu.transcribe(clips, batch_size=4, max_new_tokens=8)
    same = sum(a.token_ids == b.token_ids for a, b in zip(reused, whole, strict=True))
    assert same >= len(clips) - 1
