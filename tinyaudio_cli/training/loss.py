"""One step's computation: frozen encoder → projector → frozen LM, the cross-entropy on the assistant turn,
and SpecAugment on the log-mel."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from .config import PROJECTOR_STRIDE, TrainConfig
from .data import EncoderCache, MicroBatch

if TYPE_CHECKING:
    from ..model import TinyAudioModel

# -- the computation ------------------------------------------------------------------------------------------


# CTC scores a frame against every token of these and of the batch's transcripts: the first ids of a BPE vocabulary
# are its earliest merges, the commonest pieces. A softmax over all of SmolLM's 49k tokens made most of a CPU step.
CTC_VOCABULARY = 8192


def ctc_blank(embeddings: torch.Tensor) -> torch.Tensor:
    """The blank's vector: the direction of the mean token embedding (word-less), as long as the longest token.

    A frame along it scores the blank at least as high as any token (no token is longer, none points further
    that way); the mean embedding itself is short, so nearly every frame preferred some word to it and the
    blank could hardly win.
    """
    mean = embeddings.mean(0)
    return mean / mean.norm() * embeddings.norm(dim=1).max()


def ctc_loss(
    model: TinyAudioModel,
    frames: Sequence[torch.Tensor],
    targets: Sequence[list[int]],
    vocabulary: int | None = None,
) -> torch.Tensor:
    """Summed CTC loss of the transcript tokens (end of turn left out) over each example's projector frames.

    A frame's score for a token is its dot product with the token's input embedding in the frozen LM, so the
    loss pulls each frame toward the embedding of a word being said, a place the LM already knows how to read.
    The LM loss alone teaches this slowly: on an hour of speech its gradient, through the whole frozen LM,
    long says "predict the usual sentence", and the projector learns to carry no words. The blank is fixed (see
    ctc_blank): no parameter that a checkpoint would have to carry. The classes are the first `vocabulary`
    (default CTC_VOCABULARY) token ids plus every token of the batch's transcripts.
    """
    labels = [target[:-1] for target in targets]  # the end-of-turn token is not said
    embeddings = model.lm.get_input_embeddings().weight
    said = {token for label in labels for token in label}
    first = CTC_VOCABULARY if vocabulary is None else vocabulary
    classes = sorted(said.union(range(min(first, len(embeddings)))))
    column = {token: index + 1 for index, token in enumerate(classes)}  # blank is class 0
    table = torch.cat([ctc_blank(embeddings)[None], embeddings[classes]]).to(frames[0].dtype)
    lengths = torch.tensor([len(f) for f in frames])
    padded = torch.nn.utils.rnn.pad_sequence(list(frames), batch_first=True)
    log_probs = (padded @ table.T).float().log_softmax(-1).transpose(0, 1)  # [time, batch, classes]
    flat = torch.tensor([column[token] for label in labels for token in label], device=padded.device)
    return F.ctc_loss(
        log_probs, flat, lengths, torch.tensor([len(label) for label in labels]), blank=0,
        reduction="sum", zero_infinity=True,  # a clip too short for its text is left out, not infinite
    )  # fmt: skip


def project(
    model: TinyAudioModel,
    projector: Callable[[Any], Any],
    batch: MicroBatch,
    augment: Callable[[Any], Any] | None = None,
    cache: EncoderCache | None = None,
) -> list[torch.Tensor]:
    """Projector frames covering each example's real audio (trimmed mode).

    The encoder runs on the full 30 s window (its output depends on all of it), without gradients. The
    projector only reads the first 4·n encoder frames for its first n frames (two stride-2, kernel-3
    convolutions; the router averages each frame's 4 inputs), so it runs on those alone: same result,
    a fraction of the work, and that is all the cache needs to keep.
    """
    counts = [model.audio_token_count(example.num_samples) for example in batch.examples]
    rows = [None if e.frames is None else e.frames.to(model.device) for e in batch.examples]
    if batch.features is not None:
        features = batch.features.to(model.device)
        if augment is not None:
            features = augment(features)
        with torch.no_grad():
            encoded = model.encoder(features).last_hidden_state
        missing = [i for i, row in enumerate(rows) if row is None]
        for j, i in enumerate(missing):
            rows[i] = encoded[j, : PROJECTOR_STRIDE * counts[i]]
            if cache is not None:  # kept on disk for later epochs, and in the example (dev sets are reused)
                example = batch.examples[i]
                cache.put(example.key, rows[i], example.num_samples)
                example.frames, example.audio = rows[i].clone(), None  # a copy: a view would keep the batch alive
    width = PROJECTOR_STRIDE * max(counts)
    stacked = torch.stack([F.pad(row, (0, 0, 0, width - len(row))) for row in rows])
    projected = projector(stacked)
    return [frames[:count] for frames, count in zip(projected, counts, strict=True)]


class SpecAugment:
    """Whisper's SpecAugment (transformers' `_compute_mask_indices`, zeroed spans) on the padded 30 s features,
    as the reference applies it. That function draws from numpy's global generator, so a private state is
    swapped in around each call: the masks are reproducible and resumable, and nothing else is disturbed."""

    def __init__(self, config: TrainConfig, seed: int) -> None:
        self.config = config
        self.rng = np.random.RandomState(seed)

    @contextlib.contextmanager
    def _own_numpy_state(self) -> Iterator[None]:
        saved = np.random.get_state()
        np.random.set_state(self.rng.get_state())
        try:
            yield
        finally:
            self.rng.set_state(np.random.get_state())
            np.random.set_state(saved)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        from transformers.models.whisper.modeling_whisper import _compute_mask_indices

        c = self.config
        batch, bins, frames = features.shape
        with self._own_numpy_state():
            time_mask = (
                _compute_mask_indices(
                    (batch, frames), c.mask_time_prob, c.mask_time_length, None, c.mask_time_min_masks
                )
                if c.mask_time_prob > 0
                else None
            )
            bin_mask = (
                _compute_mask_indices((batch, bins), c.mask_feature_prob, c.mask_feature_length, None,
                                      c.mask_feature_min_masks)
                if c.mask_feature_prob > 0
                else None
            )  # fmt: skip
        if time_mask is not None:
            features = features.masked_fill(torch.from_numpy(time_mask).to(features.device)[:, None, :], 0.0)
        if bin_mask is not None:
            features = features.masked_fill(torch.from_numpy(bin_mask).to(features.device)[:, :, None], 0.0)
        return features

    def state(self) -> list[Any]:
        name, keys, position, has_gauss, gauss = self.rng.get_state()
        return [name, keys.tolist(), int(position), int(has_gauss), float(gauss)]

    def load_state(self, state: list[Any]) -> None:
        name, keys, position, has_gauss, gauss = state
        self.rng.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
