"""Whisper log-mel features, computed only where the audio is.

Every clip is zero-padded to 30 s before the STFT, so every frame past the audio is the same constant.
This computes the frames that see audio (in one batched STFT, on the model's device) and fills the
rest with that constant: equal to transformers' WhisperFeatureExtractor, for a fraction of the work
on short clips. `whisper_features` is the one entry point: inference and training both call it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .constants import SAMPLE_RATE

LOG_FLOOR = 1e-10  # the floor before log10, as Whisper's reference has it
DYNAMIC_RANGE = 8.0  # log10 units kept below the loudest frame


def whisper_features(audios: Sequence[np.ndarray], extractor, device: torch.device) -> torch.Tensor:
    """[batch, n_mels, 3000] float32 on `device`: `log_mel`, unless the extractor dithers (adds random noise
    before the STFT), which only the extractor itself reproduces."""
    if getattr(extractor, "dither", 0.0) == 0.0:
        return log_mel(audios, extractor, device)
    features = extractor(
        [np.asarray(audio, dtype=np.float32) for audio in audios], sampling_rate=SAMPLE_RATE, return_tensors="pt"
    ).input_features
    return features.to(device)


def log_mel(audios: Sequence[np.ndarray], extractor, device: torch.device) -> torch.Tensor:
    """[batch, n_mels, 3000] float32 on `device`, like `extractor(audios, padding="max_length")`."""
    n_fft, hop, frames = extractor.n_fft, extractor.hop_length, extractor.nb_max_frames
    longest = max(len(audio) for audio in audios)
    # samples the STFT must see so that every frame touching audio is computed exactly (center=True
    # reflects the signal's edge, which must be padding zeros as in the full 30 s signal)
    length = min(extractor.n_samples, -(-(longest + n_fft) // hop) * hop)
    batch = torch.zeros(len(audios), length, dtype=torch.float32)
    for row, audio in enumerate(audios):
        batch[row, : len(audio)] = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    batch = batch.to(device, non_blocking=True)
    power = power_spectrum(batch, n_fft, hop)[:, : frames + 1]
    computed = min(frames, power.shape[1] - (1 if length == extractor.n_samples else 0))
    filters = torch.as_tensor(extractor.mel_filters, dtype=torch.float32, device=device)
    mel = (power[:, :computed] @ filters).transpose(1, 2)  # [batch, n_mels, computed]
    log_spec = torch.clamp(mel, min=LOG_FLOOR).log10()
    if computed < frames:  # the padding frames: all-zero power
        pad = torch.full((*log_spec.shape[:2], frames - computed), np.log10(LOG_FLOOR), device=device)
        log_spec = torch.cat([log_spec, pad], dim=-1)
    peak = log_spec.amax(dim=(1, 2), keepdim=True)
    return (torch.maximum(log_spec, peak - DYNAMIC_RANGE) + 4.0) / 4.0


def power_spectrum(signal: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """|STFT|² of [batch, samples] as [batch, frames, n_fft // 2 + 1]: torch.stft's centred, reflect-padded,
    Hann-windowed frames, computed with one rfft over the framed signal (about 4× faster on a CPU than
    torch.stft followed by |z|², the same numbers)."""
    padded = F.pad(signal[:, None], (n_fft // 2, n_fft // 2), mode="reflect")[:, 0]
    framed = padded.unfold(-1, n_fft, hop) * torch.hann_window(n_fft, device=signal.device)
    spectrum = torch.fft.rfft(framed)
    return spectrum.real.square() + spectrum.imag.square()
