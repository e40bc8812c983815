"""The Tiny Audio stack: Whisper encoder (frozen) → MOSA projector → causal LM (frozen).

One 30 s window of audio becomes `audio_tokens_max` projector frames (375 for Whisper). The prompt
is the checkpoint's chat template over [system, user: "Transcribe: <audio>"]; the single `<audio>`
token's embedding is replaced by projector frames and the LM continues greedily.

Two attention modes, both computed by the same code:
- `reference`: all frames of the window go to the LM, padding included (what the published
  reference does at inference).
- `trimmed`: only the frames that cover real audio go to the LM, but every token after them keeps
  the position it would have with all frames. That is the training-time computation (padded audio
  masked, positions not compacted) at a fraction of the LM cost.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save
from torch import nn

from .batching import encoder_window_bytes, lm_window_bytes, projector_window_bytes
from .config import AUDIO_TOKEN, TinyAudioConfig
from .constants import DEFAULT_ENCODER_CONTEXT, SAMPLE_RATE, WINDOW_SAMPLES
from .context import context_frames, context_padding, encode_frames
from .decoding import PrefixCache, Timings, cache_keyword, greedy_decode, timed
from .errors import TinyAudioError
from .features import whisper_features
from .projector import STRIDE as PROJECTOR_STRIDE
from .projector import MOSAProjector
from .template import check_chat_template

AttentionMode = Literal["reference", "trimmed"]
ATTENTION_MODES: tuple[AttentionMode, ...] = ("reference", "trimmed")
DEFAULT_MODE: AttentionMode = "trimmed"
# transformers 5 records how a tokenizer was loaded and names its fast class TokenizersBackend; a saved
# checkpoint drops the former and uses the older name (the same class in 5.x) so transformers 4 loads it too
TOKENIZER_LOAD_KEYS = ("is_local", "local_files_only")
TOKENIZER_CLASS_NAMES = {"TokenizersBackend": "PreTrainedTokenizerFast"}


@dataclass
class Transcription:
    text: str
    token_ids: list[int]


@dataclass
class Prompt:
    """Token ids before and after the `<audio>` placeholder."""

    prefix: list[int]
    suffix: list[int]


class TinyAudioModel(nn.Module):
    def __init__(
        self,
        config: TinyAudioConfig,
        encoder: nn.Module,
        projector: MOSAProjector,
        lm: nn.Module,
        tokenizer,
        feature_extractor,
    ) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.projector = projector
        self.lm = lm
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.prompt = build_prompt(tokenizer, config)
        self.stop_ids = stop_token_ids(tokenizer, lm)
        self.audio_token_id = tokenizer.convert_tokens_to_ids(AUDIO_TOKEN)
        self.end_of_turn_id = self.stop_ids[0] if len(self.stop_ids) == 1 else end_of_turn_id(tokenizer)
        # the encoder's conv2 halves mel frames; the projector divides by 4 again
        self.mel_frames_per_token = encoder.conv1.stride[0] * encoder.conv2.stride[0] * PROJECTOR_STRIDE
        self.audio_tokens_max = math.ceil(encoder.config.max_source_positions / PROJECTOR_STRIDE)
        self.timings: Timings | None = None  # set a Timings to see where the time goes
        # seconds of the window's padding the encoder sees after the audio in trimmed mode (model.context);
        # None: the whole 30 s window, as reference mode always has it
        self.context_padding = context_padding(DEFAULT_ENCODER_CONTEXT)
        self.audio_dir: Path | None = None  # the Whisper base's folder (set by the loader): its decoder aligns words
        self._aligner = None
        self._prefix: tuple[tuple, PrefixCache | None] | None = None  # (device, dtype, autocast), its prefix cache

    @property
    def device(self) -> torch.device:
        return next(self.projector.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.projector.parameters()).dtype

    # -- audio → LM embeddings ------------------------------------------------------------

    def features(self, audios: Sequence[np.ndarray]) -> torch.Tensor:
        """Whisper log-mel features, every clip zero-padded to 30 s: [batch, n_mels, 3000]."""
        for audio in audios:
            if len(audio) > WINDOW_SAMPLES:
                raise ValueError(f"clip of {len(audio) / SAMPLE_RATE:.1f} s exceeds the 30 s window")
        with timed(self.timings, "features", self.device):
            return whisper_features(audios, self.feature_extractor, self.device).to(self.dtype)

    def audio_token_count(self, num_samples: int) -> int:
        """Projector frames that cover real audio (the rest only covers the 30 s padding)."""
        mel_frames = math.ceil(num_samples / self.feature_extractor.hop_length)
        return max(1, min(self.audio_tokens_max, math.ceil(mel_frames / self.mel_frames_per_token)))

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Log-mel features → projector frames [batch, audio_tokens_max, llm_dim]."""
        return self.project(self.encoder_states(features))

    def encoder_states(self, features: torch.Tensor) -> torch.Tensor:
        """Log-mel features → the frozen encoder's output [batch, frames / 2, encoder_dim] (1500 for the
        whole window); kept by word timing, which aligns words against these same states (no second pass)."""
        with timed(self.timings, "encoder", self.device), torch.no_grad():
            return encode_frames(self.encoder, features)

    def encode_audio(
        self, audios: Sequence[np.ndarray], mode: AttentionMode
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each clip's encoder states and projector frames. Reference mode (or `context_padding` None) encodes
        whole 30 s windows; otherwise each clip is encoded over its own context (model.context), clips of the
        same context together, so a clip's result does not depend on the others in its batch."""
        features = self.features(audios)
        if mode == "reference" or self.context_padding is None:
            states = self.encoder_states(features)
            return list(states), list(self.project(states))
        full = features.shape[-1]
        step = self.encoder.conv1.stride[0] * self.encoder.conv2.stride[0] * PROJECTOR_STRIDE
        hop = self.feature_extractor.hop_length
        contexts = [context_frames(len(audio), hop, step, full, self.context_padding) for audio in audios]
        states: list[torch.Tensor] = [features] * len(audios)  # placeholders, each replaced below
        projected: list[torch.Tensor] = [features] * len(audios)
        for context in sorted(set(contexts)):
            rows = [row for row, c in enumerate(contexts) if c == context]
            group = self.encoder_states(features[rows, :, :context])
            for row, row_states, row_frames in zip(rows, group, self.project(group), strict=True):
                states[row], projected[row] = row_states, row_frames
        return states, projected

    def project(self, states: torch.Tensor) -> torch.Tensor:
        with timed(self.timings, "encoder", self.device):
            return self.projector(states)

    def aligner(self):  # -> WhisperAligner, imported only when word timing is asked for
        """The Whisper base's decoder as a word aligner, loaded on first use."""
        if self._aligner is None:
            from .alignment import WhisperAligner

            if self.audio_dir is None:
                raise TinyAudioError("word timing needs the Whisper base's folder, which this model does not know")
            self._aligner = WhisperAligner.load(self.audio_dir, self.device, self.dtype)
        return self._aligner

    def window_bytes(self) -> int:
        """Accelerator memory one more 30 s window in a batch costs, estimated high (see model.batching)."""
        itemsize = self.dtype.itemsize
        frames = self.audio_tokens_max
        sequence = len(self.prompt.prefix) + frames + len(self.prompt.suffix) + self.config.max_new_tokens
        return (
            encoder_window_bytes(self.encoder.config, itemsize)
            + projector_window_bytes(frames, self.lm.config.hidden_size, self.config.expert_hidden_dim, itemsize)
            + lm_window_bytes(self.lm.config, sequence, itemsize)
        )

    # -- prompt assembly ----------------------------------------------------------------------

    def build_inputs(
        self,
        audio_frames: Sequence[torch.Tensor],
        mode: AttentionMode,
        continuations: Sequence[list[int]] = (),
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded prompt embeddings for a batch.

        `audio_frames[i]` holds the projector frames to place at `<audio>`; `continuations[i]`
        optional token ids appended after the prompt (the target text, when training).
        Returns inputs_embeds, attention_mask, position_ids and each row's length.
        """
        prefix, suffix = self.prompt.prefix, self.prompt.suffix
        embed = self.lm.get_input_embeddings()
        rows, positions = [], []
        for i, frames in enumerate(audio_frames):
            tail = suffix + (list(continuations[i]) if continuations else [])
            ids = torch.tensor(prefix + tail, device=self.device)
            text = embed(ids)
            rows.append(torch.cat([text[: len(prefix)], frames.to(text.dtype), text[len(prefix) :]]))
            # in trimmed mode the text after the audio keeps the positions of the full window
            audio_span = len(frames) if mode == "reference" else self.audio_tokens_max
            after = len(prefix) + audio_span
            positions.append(
                torch.cat(
                    [
                        torch.arange(len(prefix) + len(frames)),
                        torch.arange(after, after + len(tail)),
                    ]
                )
            )
        lengths = torch.tensor([len(row) for row in rows], device=self.device)
        width = int(lengths.max())
        inputs_embeds = rows[0].new_zeros(len(rows), width, rows[0].shape[-1])
        attention_mask = torch.zeros(len(rows), width, dtype=torch.long, device=self.device)
        position_ids = torch.zeros(len(rows), width, dtype=torch.long, device=self.device)
        for i, (row, pos) in enumerate(zip(rows, positions, strict=True)):
            inputs_embeds[i, : len(row)] = row
            attention_mask[i, : len(row)] = 1
            position_ids[i, : len(row)] = pos.to(self.device)
        return inputs_embeds, attention_mask, position_ids, lengths

    def select_frames(
        self, projected: torch.Tensor | Sequence[torch.Tensor], num_samples: Sequence[int], mode: AttentionMode
    ) -> list[torch.Tensor]:
        if mode == "reference":
            return list(projected)
        return [frames[: self.audio_token_count(n)] for frames, n in zip(projected, num_samples, strict=True)]

    # -- training ----------------------------------------------------------------------------------

    def target_ids(self, text: str) -> list[int]:
        """The assistant turn the LM must produce: the transcript, then the end of the turn."""
        return [*self.tokenizer(text, add_special_tokens=False).input_ids, self.end_of_turn_id]

    def loss(self, features: torch.Tensor, num_samples: Sequence[int], targets: Sequence[list[int]]) -> torch.Tensor:
        """Mean cross-entropy over the target tokens of log-mel `features` (see target_loss).

        Gradients reach only the projector: the encoder runs without them, the LM is frozen.
        """
        frames = self.select_frames(self.encode(features), num_samples, "trimmed")
        total, count = self.target_loss(frames, targets)
        return total / count

    def target_loss(
        self, frames: Sequence[torch.Tensor], targets: Sequence[list[int]], label_smoothing: float = 0.0
    ) -> tuple[torch.Tensor, int]:
        """Summed cross-entropy of each row's target tokens given its projector frames, and their number: the
        training computation (training sums over a whole optimizer step, then divides by its tokens).

        The padded audio is left out (trimmed mode), which equals masking it with positions kept.
        """
        inputs_embeds, attention_mask, position_ids, lengths = self.build_inputs(frames, "trimmed", targets)
        width = inputs_embeds.shape[1]
        starts = [length - len(target) for length, target in zip(lengths.tolist(), targets, strict=True)]
        keep = width - (min(starts) - 1)  # the logit at i predicts the token at i + 1
        # the LM's own forward, so that its logit post-processing (soft-capping, scaling) is what is trained;
        # its head only from the first position that predicts a target (over the prompt and audio it is waste)
        logits = self.lm(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
            logits_to_keep=keep,
        ).logits
        offset = width - keep
        rows, columns, labels = [], [], []
        for row, (start, target) in enumerate(zip(starts, targets, strict=True)):
            rows += [row] * len(target)
            columns += range(start - 1 - offset, start - 1 - offset + len(target))
            labels += target
        device = logits.device
        picked = logits[torch.tensor(rows, device=device), torch.tensor(columns, device=device)]
        loss = F.cross_entropy(
            picked.float(), torch.tensor(labels, device=device), reduction="sum", label_smoothing=label_smoothing
        )
        return loss, len(labels)

    # -- transcription ---------------------------------------------------------------------------

    @torch.inference_mode()
    def generate_ids(
        self,
        audios: Sequence[np.ndarray],
        mode: AttentionMode = DEFAULT_MODE,
        max_new_tokens: int | Sequence[int] | None = None,
        stop_loops: bool = False,
    ) -> list[list[int]]:
        """Greedy token ids for one batch of ≤30 s clips (16 kHz mono float32)."""
        if mode not in ATTENTION_MODES:
            raise ValueError(f"unknown attention mode {mode!r}; choose from {ATTENTION_MODES}")
        _, projected = self.encode_audio(audios, mode)
        frames = self.select_frames(projected, [len(a) for a in audios], mode)
        return self.generate_from_frames(frames, mode, max_new_tokens, stop_loops)

    @torch.inference_mode()
    def generate_from_frames(
        self,
        frames: Sequence[torch.Tensor],
        mode: AttentionMode = DEFAULT_MODE,
        max_new_tokens: int | Sequence[int] | None = None,
        stop_loops: bool = False,
        logprobs: list[list[float]] | None = None,
    ) -> list[list[int]]:
        """Greedy token ids for projector frames (one tensor [n, llm_dim] per row); limits may differ per row.
        `stop_loops` ends a row caught repeating a phrase (see decoding.cut_repetition) early; a `logprobs`
        list given gets each row's token log-probabilities (see decoding.greedy_decode)."""
        inputs_embeds, attention_mask, position_ids, lengths = self.build_inputs(frames, mode)
        # reference mode computes every position in one pass, as the reference does
        prefix = self.prefix_cache() if mode != "reference" else None
        return greedy_decode(
            self.lm,
            inputs_embeds,
            attention_mask,
            position_ids,
            lengths,
            max_new_tokens=max_new_tokens or self.config.max_new_tokens,
            stop_ids=self.stop_ids,
            banned_ids=[self.audio_token_id],
            timings=self.timings,
            stop_loops=stop_loops,
            logprobs=logprobs,
            prefix=prefix,
        )

    def prefix_cache(self) -> PrefixCache | None:
        """The LM's cache of the prompt before the audio, computed once per device and dtype: every row starts
        with it (21 of the 50-80 positions of a short clip's prompt with SmolLM2), so decoding starts from a
        copy instead of computing it again. None where the LM's cache cannot be copied out to a batch."""
        if not self.prompt.prefix:  # a template that starts with the audio: nothing to reuse
            return None
        # a cache made under autocast holds its dtype: one made outside it (or in another) must not be mixed in
        autocast = torch.is_autocast_enabled(self.device.type)
        key = (self.device, self.dtype, autocast and torch.get_autocast_dtype(self.device.type))
        if self._prefix is None or self._prefix[0] != key:
            ids = torch.tensor([self.prompt.prefix], device=self.device)
            # ordinary tensors even when called in inference mode: a caller outside it may then use them too
            with torch.inference_mode(False), torch.no_grad():
                out = self.lm(input_ids=ids, use_cache=True)
            cache = getattr(out, cache_keyword(self.lm), None)
            usable = cache is not None and hasattr(cache, "batch_repeat_interleave")
            self._prefix = (key, PrefixCache(cache, len(self.prompt.prefix)) if usable else None)
        return self._prefix[1]

    @property
    def samples_per_token(self) -> int:
        """Audio samples behind one projector frame (1280 = 80 ms for Whisper)."""
        return self.feature_extractor.hop_length * self.mel_frames_per_token

    def frame_span(self, start_sample: int, end_sample: int) -> tuple[int, int]:
        """The projector frames of a window that cover samples [start, end) of it."""
        per_token = self.samples_per_token
        first = min(start_sample // per_token, self.audio_tokens_max - 1)
        last = min(max(math.ceil(end_sample / per_token), first + 1), self.audio_tokens_max)
        return first, last

    def transcribe(
        self,
        audios: Sequence[np.ndarray],
        mode: AttentionMode = DEFAULT_MODE,
        batch_size: int = 8,
        max_new_tokens: int | Sequence[int] | None = None,
        pack: bool = False,
        stop_loops: bool = False,
    ) -> list[Transcription]:
        """One result per clip (≤30 s each); clips of similar length share a batch; input order kept.

        `max_new_tokens` is one limit, or one per clip.

        With `pack`, several short clips share one 30 s encoder window (each decoded from its own
        frames, trimmed mode): far fewer encoder passes, but each clip's encoder context then holds
        its neighbours instead of silence, so results differ slightly from one clip per window.
        """
        limits = per_clip(max_new_tokens or self.config.max_new_tokens, len(audios))
        if pack and mode == "trimmed":
            return self._transcribe_packed(audios, batch_size, limits, stop_loops)
        order = sorted(range(len(audios)), key=lambda i: len(audios[i]), reverse=True)
        results: list[Transcription | None] = [None] * len(audios)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            ids = self.generate_ids([audios[i] for i in batch], mode, [limits[i] for i in batch], stop_loops)
            for i, token_ids in zip(batch, ids, strict=True):
                results[i] = Transcription(self.decode_text(token_ids), token_ids)
        return results  # type: ignore[return-value]

    def _transcribe_packed(
        self, audios: Sequence[np.ndarray], batch_size: int, limits: list[int], stop_loops: bool
    ) -> list[Transcription]:
        windows = pack_clips([len(audio) for audio in audios], WINDOW_SAMPLES, self.samples_per_token)
        frames: dict[int, torch.Tensor] = {}
        for start in range(0, len(windows), batch_size):
            chunk = windows[start : start + batch_size]
            samples = []
            for placements in chunk:
                window = np.zeros(max(offset + len(audios[i]) for i, offset in placements), dtype=np.float32)
                for i, offset in placements:
                    window[offset : offset + len(audios[i])] = audios[i]
                samples.append(window)
            with torch.inference_mode():
                _, projected = self.encode_audio(samples, "trimmed")
            for placements, window_frames in zip(chunk, projected, strict=True):
                for i, offset in placements:
                    first, last = self.frame_span(offset, offset + len(audios[i]))
                    frames[i] = window_frames[first:last]
        order = sorted(frames, key=lambda i: len(frames[i]), reverse=True)
        results: list[Transcription | None] = [None] * len(audios)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            limits_ = [limits[i] for i in batch]
            ids = self.generate_from_frames([frames[i] for i in batch], "trimmed", limits_, stop_loops)
            for i, token_ids in zip(batch, ids, strict=True):
                results[i] = Transcription(self.decode_text(token_ids), token_ids)
        return results  # type: ignore[return-value]

    def decode_text(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True).strip()

    # -- saving ------------------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype | None = None) -> Path:
        """The published layout: config, projector-only safetensors, tokenizer, feature extractor."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            f"projector.{name}": tensor.detach().to("cpu", dtype or tensor.dtype).contiguous()
            for name, tensor in self.projector.state_dict().items()
        }
        # safetensors' save_file creates its file 0600; a plain write keeps the umask's mode, as for every other file
        (folder / "model.safetensors").write_bytes(save(state, metadata={"format": "pt"}))
        self.config.model_dtype = str(dtype or self.dtype).removeprefix("torch.")
        self.config.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        portable_tokenizer_config(folder / "tokenizer_config.json")
        self.feature_extractor.save_pretrained(folder)
        self.lm.generation_config.save_pretrained(folder)
        return folder


def portable_tokenizer_config(path: Path) -> None:
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    config = {key: value for key, value in config.items() if key not in TOKENIZER_LOAD_KEYS}
    if config.get("tokenizer_class") in TOKENIZER_CLASS_NAMES:
        config["tokenizer_class"] = TOKENIZER_CLASS_NAMES[config["tokenizer_class"]]
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def build_prompt(tokenizer, config: TinyAudioConfig) -> Prompt:
    """Render the checkpoint's own chat template and split it at the `<audio>` placeholder."""
    messages = [
        {"role": "system", "content": config.system_prompt},
        {"role": "user", "content": config.user_prompt},
    ]
    check_chat_template(tokenizer, messages)  # a template is code from the checkpoint: bounded, clear errors
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    audio_id = tokenizer.convert_tokens_to_ids(AUDIO_TOKEN)
    if ids.count(audio_id) != 1:
        raise ValueError(f"the prompt must hold exactly one {AUDIO_TOKEN} token: {text!r}")
    split = ids.index(audio_id)
    return Prompt(prefix=ids[:split], suffix=ids[split + 1 :])


def per_clip(limit: int | Sequence[int], count: int) -> list[int]:
    limits = [limit] * count if isinstance(limit, int) else list(limit)
    if len(limits) != count:
        raise ValueError(f"{len(limits)} token limits for {count} clips")
    return limits


def pack_clips(lengths: Sequence[int], window: int, align: int) -> list[list[tuple[int, int]]]:
    """First-fit decreasing: each window a list of (clip index, sample offset).

    Clips start on projector-frame boundaries with one empty frame between neighbours, so no clip's
    frames begin inside another clip's audio.
    """
    windows: list[list[tuple[int, int]]] = []
    ends: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True):
        for w, end in enumerate(ends):
            offset = next_offset(end, align)
            if offset + lengths[i] <= window:
                windows[w].append((i, offset))
                ends[w] = offset + lengths[i]
                break
        else:
            windows.append([(i, 0)])
            ends.append(lengths[i])
    return windows


def next_offset(end: int, align: int) -> int:
    """Where the next clip in a packed window starts: the next frame boundary, plus one empty frame."""
    return -(-end // align) * align + align


def end_of_turn_id(tokenizer) -> int:
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return im_end if isinstance(im_end, int) and im_end != tokenizer.unk_token_id else tokenizer.eos_token_id


def stop_token_ids(tokenizer, lm: nn.Module) -> list[int]:
    """`<|im_end|>` ends a chat turn; the LM's own end-of-sequence ids stop decoding too."""
    ids = set()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    for candidate in (tokenizer.eos_token_id, getattr(lm.generation_config, "eos_token_id", None)):
        if isinstance(candidate, int):
            ids.add(candidate)
        elif isinstance(candidate, list):
            ids.update(candidate)
    return sorted(ids)
