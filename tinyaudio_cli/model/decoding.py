"""Greedy decoding with a KV cache and explicit positions.

HF `generate` rebuilds positions from the attention mask, which would compact the positions of the
trimmed mode. This loop feeds the positions we give it, batch rows of different lengths included
(rows are right-padded; the padding stays masked for every later token).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .modeling import TinyAudioModel

# Fast speech is about 8 LM tokens a second; a region asking for far more is an LM stuck in a loop.
TOKENS_PER_SECOND_LIMIT = 15
TOKEN_BUDGET_FLOOR = 16


@dataclass(frozen=True)
class PrefixCache:
    """The LM's KV cache of the first `length` positions every row of a batch shares (the prompt before the
    audio), computed once for batch size 1."""

    cache: object
    length: int


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


# A phrase of up to REPEAT_MAX_PERIOD tokens said REPEAT_MIN_COUNT times in a row, over at least
# REPEAT_MIN_TOKENS tokens, is a decoding loop rather than speech.
REPEAT_MAX_PERIOD = 24
REPEAT_MIN_COUNT = 4
REPEAT_MIN_TOKENS = 16
REPEAT_CHECK_EVERY = 16  # decoding steps between loop checks (the check is Python, so not every step)


def cut_repetition(token_ids: Sequence[int]) -> tuple[list[int], bool]:
    """Cut a decoding loop back to its first occurrence; True when something was cut."""
    ids = list(token_ids)
    for start in range(len(ids)):
        for period in range(1, REPEAT_MAX_PERIOD + 1):
            phrase = ids[start : start + period]
            count = 1
            while ids[start + count * period : start + (count + 1) * period] == phrase:
                count += 1
            if count >= REPEAT_MIN_COUNT and count * period >= REPEAT_MIN_TOKENS:
                return ids[: start + period], True
    return ids, False


def guarded_text(model: TinyAudioModel, token_ids: Sequence[int]) -> tuple[str, bool]:
    """The text of generated ids after the repetition guard, and whether the guard cut anything."""
    _, text, cut = guarded(model, token_ids)
    return text, cut


def guarded(model: TinyAudioModel, token_ids: Sequence[int]) -> tuple[list[int], str, bool]:
    """(the ids a segment keeps, their text, whether the guard cut a loop): a cut segment keeps only the ids
    before the loop, so that its tokens say what its text says; an uncut one keeps all, stop token included."""
    kept, cut = cut_repetition([t for t in token_ids if t not in model.stop_ids])
    return (kept if cut else list(token_ids)), model.decode_text(kept), cut


def token_budget(model: TinyAudioModel, seconds: float, max_new_tokens: int | None) -> int:
    """Tokens a segment may take: the user's limit, else enough for fast speech, at most the model's limit."""
    if max_new_tokens:
        return max_new_tokens
    return min(model.config.max_new_tokens, TOKEN_BUDGET_FLOOR + math.ceil(seconds * TOKENS_PER_SECOND_LIMIT))


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
    stop_loops: bool = False,
    logprobs: list[list[float]] | None = None,
    prefix: PrefixCache | None = None,
) -> list[list[int]]:
    """New token ids per row, each ending with its stop token when one was produced.

    `max_new_tokens` is one limit for all rows or one per row. Rows leave the batch as they finish, so
    one long row does not make the others pay for its steps. With `stop_loops`, a row caught repeating
    itself (see `cut_repetition`) finishes early: its tokens beyond the limit would be cut anyway.
    A `logprobs` list given is filled with one list per row: the log-probability of each token chosen, under
    the distribution it was chosen from (banned ids excluded), from the logits the loop has anyway.
    With a `prefix`, the first `prefix.length` positions of every row (the same in each) come from that cache
    instead of being computed again.
    """
    device = inputs_embeds.device
    batch = inputs_embeds.shape[0]
    rows = torch.arange(batch, device=device)
    last = lengths - 1
    keyword = cache_keyword(lm)
    kept = torch.unique(last)
    start, reused = 0, {}
    if prefix is not None:
        start = prefix.length
        cache = copy.deepcopy(prefix.cache)  # decoding grows the cache: the model's copy stays as it is
        cache.batch_repeat_interleave(batch)
        reused = {keyword: cache}
    with timed(timings, "lm_prefill", device):
        # an explicit mask also keeps transformers from reading position jumps as packed sequences
        out = lm(
            inputs_embeds=inputs_embeds[:, start:],
            attention_mask=attention_mask,
            position_ids=position_ids[:, start:],
            use_cache=True,
            logits_to_keep=kept - start,
            **reused,
        )
        logits = out.logits[rows, torch.searchsorted(kept, last)]
    state = _Rows(
        cache=getattr(out, keyword),
        attention_mask=attention_mask,
        next_position=position_ids[rows, last] + 1,
        limits=torch.as_tensor(max_new_tokens, device=device).expand(batch).clone(),
        original=rows,
    )
    with timed(timings, "lm_decode", device):
        return _decode_loop(lm, logits, state, keyword, list(stop_ids), list(banned_ids), stop_loops, logprobs)


class _Rows:
    """What decoding carries per batch row; rows that finish are dropped from all of it at once."""

    def __init__(self, cache, attention_mask, next_position, limits, original) -> None:
        self.cache, self.attention_mask, self.next_position = cache, attention_mask, next_position
        self.limits, self.original = limits, original

    def keep(self, alive: torch.Tensor) -> None:
        self.cache.batch_select_indices(alive)
        self.attention_mask = self.attention_mask[alive]
        self.next_position, self.limits, self.original = (
            self.next_position[alive],
            self.limits[alive],
            self.original[alive],
        )


def _decode_loop(
    lm: nn.Module,
    logits: torch.Tensor,
    state: _Rows,
    keyword: str,
    stop_ids: list[int],
    banned: list[int],
    stop_loops: bool,
    logprobs: list[list[float]] | None = None,
) -> list[list[int]]:
    tokens: list[list[int]] = [[] for _ in range(len(state.original))]
    if logprobs is not None:
        logprobs[:] = [[] for _ in tokens]
    stop = torch.tensor(stop_ids, device=logits.device)
    step = 0
    while True:
        if banned:
            logits[:, banned] = float("-inf")
        token = logits.argmax(dim=-1)
        step += 1
        for row, value in zip(state.original.tolist(), token.tolist(), strict=True):
            tokens[row].append(value)
        if logprobs is not None:  # the chosen logit less the log of the softmax's denominator, in float32
            chosen = logits.gather(1, token[:, None]).squeeze(1).float() - torch.logsumexp(logits.float(), dim=-1)
            for row, value in zip(state.original.tolist(), chosen.tolist(), strict=True):
                logprobs[row].append(value)
        finished = torch.isin(token, stop) | (state.limits <= step)
        if stop_loops and step % REPEAT_CHECK_EVERY == 0:
            looping = [cut_repetition(tokens[row])[1] for row in state.original.tolist()]
            finished |= torch.tensor(looping, device=finished.device)
        if bool(finished.all()):
            return tokens
        if bool(finished.any()):
            alive = torch.nonzero(~finished).squeeze(1)
            state.keep(alive)
            token = token[alive]
        state.attention_mask = torch.cat([state.attention_mask, torch.ones_like(state.attention_mask[:, :1])], dim=1)
        out = lm(
            input_ids=token[:, None],
            attention_mask=state.attention_mask,
            position_ids=state.next_position[:, None],
            use_cache=True,
            **{keyword: state.cache},
        )
        state.cache = getattr(out, keyword)
        logits = out.logits[:, -1]
        state.next_position = state.next_position + 1
