"""Greedy decoding with a KV cache and explicit positions.

HF `generate` rebuilds positions from the attention mask, which would compact the positions of the
trimmed mode. This loop feeds the positions we give it, batch rows of different lengths included
(rows are right-padded; the padding stays masked for every later token).
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Iterator, Sequence

import torch
from torch import nn


class Timings(dict[str, float]):
    """Seconds spent per stage. On CUDA each stage is bracketed by a synchronise, so the times are
    the GPU's and not those of queueing kernels (this costs a little speed: benchmarks only)."""

    @contextlib.contextmanager
    def stage(self, name: str, device: torch.device) -> Iterator[None]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        try:
            yield
        finally:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            self[name] = self.get(name, 0.0) + time.perf_counter() - started


def timed(timings: Timings | None, name: str, device: torch.device) -> contextlib.AbstractContextManager:
    return timings.stage(name, device) if timings is not None else contextlib.nullcontext()


def cache_keyword(lm: nn.Module) -> str:
    """transformers 5.x names the KV cache `cache`; 4.x called it `past_key_values`."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


@torch.inference_mode()
def greedy_decode(
    lm: nn.Module,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    lengths: torch.Tensor,
    max_new_tokens: int | Sequence[int],
    stop_ids: Sequence[int],
    banned_ids: Sequence[int] = (),
    timings: Timings | None = None,
) -> list[list[int]]:
    """New token ids per row, each ending with its stop token when one was produced.

    `max_new_tokens` is one limit for all rows or one per row.
    """
    batch = inputs_embeds.shape[0]
    rows = torch.arange(batch, device=inputs_embeds.device)
    limits = torch.as_tensor(max_new_tokens, device=inputs_embeds.device).expand(batch)
    last = lengths - 1
    keyword = cache_keyword(lm)
    device = inputs_embeds.device
    kept = torch.unique(last)
    with timed(timings, "lm_prefill", device):
        # an explicit mask also keeps transformers from reading position jumps as packed sequences
        out = lm(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            logits_to_keep=kept,
        )
        logits = out.logits[rows, torch.searchsorted(kept, last)]
    cache = getattr(out, keyword)
    next_position = position_ids[rows, last] + 1
    stop = torch.tensor(list(stop_ids), device=device)
    banned = list(banned_ids)
    with timed(timings, "lm_decode", device):
        generated = _decode_loop(lm, logits, cache, keyword, attention_mask, next_position, limits, stop, banned)
    if not generated:
        return [[] for _ in range(batch)]
    table = torch.stack(generated, dim=1).tolist()
    return [[token for token in row if token >= 0] for row in table]


def _decode_loop(
    lm: nn.Module,
    logits: torch.Tensor,
    cache: object,
    keyword: str,
    attention_mask: torch.Tensor,
    next_position: torch.Tensor,
    limits: torch.Tensor,
    stop: torch.Tensor,
    banned: list[int],
) -> list[torch.Tensor]:
    finished = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    generated: list[torch.Tensor] = []
    for step in range(int(limits.max())):
        if banned:
            logits[:, banned] = float("-inf")
        token = logits.argmax(dim=-1)
        generated.append(torch.where(finished, -1, token))
        finished |= torch.isin(token, stop) | (limits <= step + 1)
        if bool(finished.all()):
            break
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
        out = lm(
            input_ids=token[:, None],
            attention_mask=attention_mask,
            position_ids=next_position[:, None],
            use_cache=True,
            **{keyword: cache},
        )
        cache = getattr(out, keyword)
        logits = out.logits[:, -1]
        next_position = next_position + 1
    return generated
