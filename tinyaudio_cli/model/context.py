"""The Whisper encoder over the mel frames that hold audio, instead of always the whole 30 s window.

Whisper pads every clip to 30 s (3000 mel frames, 1500 encoder positions), so a 3 s clip pays for ten
times the encoder it needs, and attention, quadratic in length, more still. Like whisper.cpp's audio
context, this runs the encoder's own submodules over the first N mel frames only: the same convolutions,
the first N / 2 rows of the positional table (the positions those frames have in the full window), the
same layers. N covers the audio plus some of the window's padding (the frames the model is used to seeing
after speech), rounded up so that the encoder's conv stride and the projector's ×4 stride divide it.

The full window (N = 3000) goes through transformers' own forward, so it is the reference computation,
bit for bit. Shorter contexts compute differently (attention no longer spreads over the padding), which
the benchmark's WER on held-out speech measures.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import UsageError

# `--encoder-context audio`: the padding after the audio the encoder still sees, in seconds of mel frames
# (100 a second). Measured with the shipped tiny-en (benchmarks/context_wer.py and speed.py's held-out part,
# 2026-11-30), WER against whole windows: without padding +4 points on 80 held-out espeak clips; with 2 s
# +0.0 there, +3.4 on 48 other clips, +1.9 on 55 clips with silences, +8.5 on a 3-minute recording; with
# 4-5 s -0.7, -0.6, -6.0 and +7.4 (10 s: -1.1 and +11.4 on the last two). Padding buys clips back, not
# all of the recording there; on nine more 3-minute recordings (benchmarks/context_recordings.py)
# 5 s gave +0.9 on three and -2.9 on six: the recording's +7.4 was one recording's luck, not the rule.
AUDIO_PADDING_SECONDS = 5.0
MEL_FRAMES_PER_SECOND = 100
CONTEXT_CHOICES = "audio, full, or seconds of padding"


def context_padding(value: str) -> float | None:
    """`--encoder-context`: 'audio' (AUDIO_PADDING_SECONDS), 'full' (whole 30 s windows: None) or seconds."""
    name = value.strip().lower()
    if name == "audio":
        return AUDIO_PADDING_SECONDS
    if name == "full":
        return None
    try:
        seconds = float(name)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 30:  # also refuses nan
        raise UsageError(f"--encoder-context {value!r}: use {CONTEXT_CHOICES} (0 to 30)")
    return seconds


def context_frames(num_samples: int, hop: int, step: int, full: int, padding_seconds: float) -> int:
    """Mel frames to encode for a clip of `num_samples`: its frames, plus `padding_seconds` of the window's
    padding, rounded up to a multiple of `step` (so every stride divides it), at most the whole window."""
    frames = math.ceil(num_samples / hop) + math.ceil(padding_seconds * MEL_FRAMES_PER_SECOND)
    return min(full, max(step, -(-frames // step) * step))


def encode_frames(encoder: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Whisper encoder states for [batch, n_mels, N] log-mel frames: [batch, N / 2, d_model].

    transformers' WhisperEncoder refuses anything but the full window, so a shorter one runs the same
    submodules in the same order (conv1, GELU, conv2, GELU, positions, layers, final norm); eval mode has
    no dropout or layer drop to apply.
    """
    full = encoder.config.max_source_positions * encoder.conv1.stride[0] * encoder.conv2.stride[0]
    if features.shape[-1] == full:
        return encoder(features).last_hidden_state
    hidden = nn.functional.gelu(encoder.conv1(features))
    hidden = nn.functional.gelu(encoder.conv2(hidden)).permute(0, 2, 1)
    hidden = hidden + encoder.embed_positions.weight[: hidden.shape[1]]
    for layer in encoder.layers:
        out = layer(hidden, None)
        hidden = out[0] if isinstance(out, tuple) else out  # transformers 4.x returns a tuple
    return encoder.layer_norm(hidden)
