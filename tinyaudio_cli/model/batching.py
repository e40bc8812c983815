"""How many 30 s windows go through a model at once: on a GPU, as many as its free memory holds.

The memory a window adds to a batch is estimated from the model's dimensions, on the high side: every
activation of the widest layer alive at once, attention scores counted as if materialised (flash and
memory-efficient kernels never hold them), the LM's KV cache at its longest. `transcribe` halves a batch
that still runs out of memory and `eval` retries a chunk at half the batch, so a wrong guess costs
speed, not a failed run. On a CPU the work is compute-bound and batches past a few windows buy nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

Result = TypeVar("Result")

# a CPU's decoding step reads every LM weight once for the whole batch: 16 rows instead of 8 took 10 % off
# tiny-en's time on held-out clips and recordings (same tokens); 32 gained little more, its prefill padding grew
CPU_BATCH_SIZE = 16
MAX_BATCH_SIZE = 256  # past this, prefill and encoder batches are long enough to keep any GPU busy
FREE_MEMORY_SHARE = 0.8  # of what is free when the batch size is chosen: the allocator fragments the rest
MEL_FRAMES_PER_POSITION = 2  # Whisper's conv2 halves the mel frames
FLOAT32_BYTES = 4


def encoder_window_bytes(config, itemsize: int) -> int:
    """A Whisper-family encoder on one 30 s window: float32 log-mel in, the widest layer's activations."""
    positions = config.max_source_positions
    features = config.num_mel_bins * MEL_FRAMES_PER_POSITION * positions * FLOAT32_BYTES
    return features + transformer_bytes(
        positions, config.d_model, config.encoder_ffn_dim, config.encoder_attention_heads, itemsize
    )


def lm_window_bytes(config, sequence: int, itemsize: int) -> int:
    """A causal LM decoding one row of `sequence` positions: its KV cache, the prefill's widest layer, and
    the float32 logits of the last position."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    cache = config.num_hidden_layers * 2 * kv_heads * head_dim * sequence * itemsize
    prefill = transformer_bytes(sequence, config.hidden_size, 2 * config.intermediate_size, heads, itemsize)
    return cache + prefill + config.vocab_size * FLOAT32_BYTES


def projector_window_bytes(frames: int, llm_dim: int, expert_hidden: int, itemsize: int) -> int:
    """The MOSA projector's frames: conv output, an expert's inner activations, the running mix."""
    return frames * (4 * llm_dim + expert_hidden) * itemsize


def transformer_bytes(positions: int, width: int, ffn_width: int, heads: int, itemsize: int) -> int:
    """One layer at its widest: residual, normed input, q, k, v and output, the feed-forward's inner
    activations, and the attention scores."""
    return (positions * (6 * width + ffn_width) + heads * positions * positions) * itemsize


def batch_size_for(window_bytes: int, free_bytes: int) -> int:
    """Windows that fit in FREE_MEMORY_SHARE of `free_bytes`, from 1 to MAX_BATCH_SIZE."""
    return max(1, min(MAX_BATCH_SIZE, int(free_bytes * FREE_MEMORY_SHARE) // max(1, window_bytes)))


def auto_batch_size(model) -> int:
    """CPU_BATCH_SIZE on a CPU; on a GPU, as many windows as its free memory holds (`model.window_bytes()`)."""
    if model.device.type != "cuda":
        return CPU_BATCH_SIZE
    free_bytes, _ = torch.cuda.mem_get_info(model.device)
    return batch_size_for(model.window_bytes(), free_bytes)


def with_backoff(decode: Callable[[list], list], batch: list, on_split: Callable[[int], None] = lambda _: None) -> list:
    """decode(batch), halving the batch and retrying whenever the accelerator runs out of memory."""
    try:
        return decode(batch)
    except torch.OutOfMemoryError:
        if len(batch) == 1:
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = len(batch) // 2
        on_split(half)
        return with_backoff(decode, batch[:half], on_split) + with_backoff(decode, batch[half:], on_split)


def fitting_batch(run: Callable[[int], Result], batch_size: int) -> tuple[Result, int]:
    """run(batch_size), again at half the batch size whenever the accelerator runs out of memory;
    the result and the batch size that fitted. Out of memory at batch size 1 is raised."""
    while True:
        try:
            return run(batch_size), batch_size
        except torch.OutOfMemoryError:
            if batch_size == 1:
                raise
            batch_size //= 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
