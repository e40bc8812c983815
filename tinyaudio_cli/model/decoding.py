"""Greedy decoding with a KV cache and explicit positions.

HF `generate` rebuilds positions from the attention mask, which would compact the positions of the
trimmed mode. This loop feeds the positions we give it, batch rows of different lengths included
(rows are right-padded; the padding stays masked for every later token).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import nn


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
) -> list[list[int]]:
    """New token ids per row, each ending with its stop token when one was produced.

    `max_new_tokens` is one limit for all rows or one per row.
    """
    batch = inputs_embeds.shape[0]
    rows = torch.arange(batch, device=inputs_embeds.device)
    limits = torch.as_tensor(max_new_tokens, device=inputs_embeds.device).expand(batch)
    last = lengths - 1
    keyword = cache_keyword(lm)
    # an explicit mask also keeps transformers from reading position jumps as packed sequences
    out = lm(
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=True,
        logits_to_keep=torch.unique(last),
    )
    kept = torch.unique(last)
    logits = out.logits[rows, torch.searchsorted(kept, last)]
    cache = getattr(out, keyword)
    next_position = position_ids[rows, last] + 1
    stop = torch.tensor(list(stop_ids), device=inputs_embeds.device)
    banned = list(banned_ids)
    finished = torch.zeros(batch, dtype=torch.bool, device=inputs_embeds.device)
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
    if not generated:
        return [[] for _ in range(batch)]
    table = torch.stack(generated, dim=1).tolist()
    return [[token for token in row if token >= 0] for row in table]
