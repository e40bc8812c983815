"""A plain Whisper checkpoint with Whisper's own decoder, as a baseline `eval` scores beside Tiny Audio models.

Name it `whisper:ID_OR_FOLDER` wherever eval takes a model. It offers the few methods eval uses
(`transcribe`, `stop_ids`, `decode_text`), so both kinds run through the same batching and scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoProcessor, WhisperForConditionalGeneration

from ..audio.media import SAMPLE_RATE, WINDOW_SAMPLES
from ..model.batching import FLOAT32_BYTES, encoder_window_bytes, transformer_bytes
from ..model.loading import resolve_device, resolve_dtype, resolve_model_dir
from ..model.modeling import Transcription, per_clip

PREFIX = "whisper:"
MAX_NEW_TOKENS = 440  # Whisper's decoder holds 448 positions, a few taken by its start tokens


@dataclass
class BaselineConfig:
    max_new_tokens: int = MAX_NEW_TOKENS


class WhisperBaseline:
    def __init__(self, name: str, device: str = "auto", dtype: str = "auto") -> None:
        self.name = name
        folder: Path = resolve_model_dir(name.removeprefix(PREFIX), "audio_full")
        device_ = resolve_device(device)
        self.model = WhisperForConditionalGeneration.from_pretrained(folder, dtype=resolve_dtype(dtype, device_))
        self.model = self.model.to(device_).eval()
        self.processor = AutoProcessor.from_pretrained(folder)
        self.stop_ids: list[int] = []  # decode_text skips Whisper's special tokens itself
        self.config = BaselineConfig()
        self.handles_long_clips = True

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def window_bytes(self) -> int:
        """Accelerator memory one more 30 s window in a batch costs, estimated high (see model.batching):
        the encoder, then the decoder's self-attention cache over its positions and its cross-attention
        cache over the encoder's."""
        config, itemsize = self.model.config, self.dtype.itemsize
        positions = config.max_target_positions
        caches = config.decoder_layers * 2 * config.d_model * (positions + config.max_source_positions) * itemsize
        heads = config.decoder_attention_heads
        layer = transformer_bytes(positions, config.d_model, config.decoder_ffn_dim, heads, itemsize)
        return encoder_window_bytes(config, itemsize) + caches + layer + config.vocab_size * FLOAT32_BYTES

    def decode_text(self, token_ids: Sequence[int]) -> str:
        return self.processor.tokenizer.decode(list(token_ids), skip_special_tokens=True).strip()

    @torch.inference_mode()
    def transcribe(
        self,
        audios: Sequence[np.ndarray],
        mode: str = "trimmed",
        batch_size: int = 8,
        max_new_tokens: int | Sequence[int] | None = None,
        pack: bool = False,
        stop_loops: bool = False,
    ) -> list[Transcription]:
        """Greedy Whisper decoding, clips batched by length; a clip over 30 s is decoded 30 s at a time.
        `pack` and `stop_loops` are Tiny Audio engine options that Whisper's own decoder does not have."""
        limits = per_clip(max_new_tokens or self.config.max_new_tokens, len(audios))
        pieces = [(i, audio[start : start + WINDOW_SAMPLES]) for i, audio in enumerate(audios)
                  for start in range(0, max(len(audio), 1), WINDOW_SAMPLES)]  # fmt: skip
        pieces.sort(key=lambda piece: len(piece[1]), reverse=True)
        tokens: dict[int, list[list[int]]] = {i: [] for i in range(len(audios))}
        for start in range(0, len(pieces), batch_size):
            batch = pieces[start : start + batch_size]
            features = self.processor.feature_extractor(
                [audio for _, audio in batch], sampling_rate=SAMPLE_RATE, return_tensors="pt"
            ).input_features.to(self.device, self.dtype)
            limit = min(self.config.max_new_tokens, max(limits[i] for i, _ in batch))
            out = self.model.generate(features, max_new_tokens=limit, do_sample=False, num_beams=1)
            for (i, _), ids in zip(batch, out.tolist(), strict=True):
                tokens[i].append(ids)
        return [
            Transcription(
                " ".join(self.decode_text(ids) for ids in tokens[i]).strip(), [t for ids in tokens[i] for t in ids]
            )
            for i in range(len(audios))
        ]
