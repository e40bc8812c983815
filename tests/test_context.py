"""Encoder context: the Whisper encoder runs over the mel frames that hold audio (plus some padding), not the
whole 30 s window, except in reference mode."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from tinystack import build_checkpoint
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder
from typer.testing import CliRunner

from tinyaudio_cli.cli.app import app
from tinyaudio_cli.model import load_model
from tinyaudio_cli.model.context import AUDIO_PADDING_SECONDS, context_frames, encode_frames

os.environ["HF_HUB_OFFLINE"] = "1"
SR = 16_000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("context"))


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_model(str(checkpoint), device="cpu")


def noise(seconds: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.1).astype(np.float32)


def conv1_lengths(model, run) -> list[int]:
    """The mel frames every encoder pass of `run()` read (a hook on the encoder's first convolution)."""
    seen: list[int] = []
    handle = model.encoder.conv1.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[-1]))
    try:
        run()
    finally:
        handle.remove()
    return seen


def test_short_context_is_whisper_with_that_many_positions(model):
    """Independent check: transformers' own WhisperEncoder built for N / 2 positions, holding the same weights
    and the first N / 2 rows of the positional table, gives the same states over the same N frames."""
    features = model.features([noise(2.0, 1)])[:, :, :256]
    config = WhisperConfig.from_dict({**model.encoder.config.to_dict(), "max_source_positions": 128})
    short = WhisperEncoder(config).eval()
    state = {k: v[:128] if k == "embed_positions.weight" else v for k, v in model.encoder.state_dict().items()}
    short.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(encode_frames(model.encoder, features), short(features).last_hidden_state)


def test_full_window_is_transformers_forward_bit_for_bit(model):
    features = model.features([noise(3.0, 2)])
    with torch.no_grad():
        assert torch.equal(encode_frames(model.encoder, features), model.encoder(features).last_hidden_state)


def test_trimmed_mode_encodes_only_the_audio_and_its_padding(model, monkeypatch):
    monkeypatch.setattr(model, "context_padding", 1.0)
    clips = [noise(2.0, 3), noise(2.03, 4), noise(7.3, 5)]
    lengths = conv1_lengths(model, lambda: model.transcribe(clips, max_new_tokens=2))
    # 2 s = 200 mel frames + 100 of padding, rounded up to 8 (conv2's stride × the projector's): 304; the two
    # clips of the same context share one pass; 7.3 s: 730 + 100 → 832
    assert sorted(lengths) == [304, 832]
    assert conv1_lengths(model, lambda: model.transcribe(clips, mode="reference", max_new_tokens=2)) == [3000]
    monkeypatch.setattr(model, "context_padding", None)
    assert conv1_lengths(model, lambda: model.transcribe(clips, max_new_tokens=2)) == [3000]


def test_context_never_passes_the_window():
    assert context_frames(29 * SR, 160, 8, 3000, 2.0) == 3000
    assert context_frames(30 * SR, 160, 8, 3000, 0.0) == 3000
    assert context_frames(1, 160, 8, 3000, 0.0) == 8


def test_short_context_frames_decode_as_the_model_decodes_them(model, monkeypatch):
    """transcribe's tokens are greedy decoding of the projector over the short encoder pass: the same frames
    computed by hand from the encoder's submodules give the same tokens."""
    monkeypatch.setattr(model, "context_padding", 0.5)
    clip = noise(1.3, 6)
    tokens = model.transcribe([clip], max_new_tokens=6)[0].token_ids
    with torch.no_grad():
        states = encode_frames(model.encoder, model.features([clip])[:, :, :184])  # 130 + 50 → 184
        frames = model.projector(states)[0][: model.audio_token_count(len(clip))]
    assert model.generate_from_frames([frames], max_new_tokens=6)[0] == tokens


@contextlib.contextmanager
def mel_frames_read() -> Iterator[list[int]]:
    """The mel frames every Whisper encoder pass in this process reads: the input length of each Conv1d fed
    80 mel bins (the encoder's first convolution), seen by a global forward hook."""
    seen: list[int] = []

    def hook(module, args, _out) -> None:
        if isinstance(module, torch.nn.Conv1d) and module.in_channels == 80:
            seen.append(args[0].shape[-1])

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def test_cli_encoder_context_and_threads(checkpoint, paused_speech, tmp_path):
    threads = torch.get_num_threads()
    base = ["transcribe", str(paused_speech.path), "-m", str(checkpoint), "--max-new-tokens", "2", "-q"]
    try:
        with mel_frames_read() as full:
            result = CliRunner().invoke(app, [*base, "-o", tmp_path / "full", "--encoder-context", "full"])
        assert result.exit_code == 0, result.output
        with mel_frames_read() as short:
            args = [*base, "-o", tmp_path / "short", "--encoder-context", "0.5", "--threads", "1"]
            result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert full and set(full) == {3000}
    # each region: its own frames and 50 of padding, far short of the window
    assert short and max(short) < 3000 / 2
    (tmp_path / "out").mkdir()
    for bad in ("bogus", "-1", "31", "nan"):
        result = CliRunner().invoke(app, [*base, "-o", tmp_path / "out", "--encoder-context", bad])
        assert result.exit_code == 2 and f"--encoder-context {bad!r}" in result.output, result.output
        assert not any((tmp_path / "out").iterdir())


def test_eval_encoder_context_and_threads(checkpoint, paused_speech, tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "a.wav").write_bytes(paused_speech.path.read_bytes())
    (folder / "a.txt").write_text("where did you put it")
    threads = torch.get_num_threads()
    args = ["eval", "--folder", folder, "-m", checkpoint, "--max-new-tokens", "2", "-q", "--warmup-batches", "0"]
    try:
        with mel_frames_read() as short:
            result = CliRunner().invoke(
                app, [*map(str, args), "-o", str(tmp_path / "out"), "--encoder-context", "1", "--threads", "1"]
            )
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert short and max(short) < 3000
    settings = json.loads((tmp_path / "out" / "summary.json").read_text())["settings"]
    assert settings["encoder_context"] == "1" and settings["threads"] == 1


def test_default_context_is_the_audio_and_reference_mode_the_whole_window(checkpoint, paused_speech, tmp_path):
    """The default encodes each region with AUDIO_PADDING_SECONDS of padding (measured as accurate as whole
    windows on held-out speech, and faster); `--reference-mode` still encodes whole 30 s windows."""
    base = ["transcribe", str(paused_speech.path), "-m", str(checkpoint), "--max-new-tokens", "2", "-q"]
    with mel_frames_read() as default:
        result = CliRunner().invoke(app, [*base, "-o", tmp_path / "default"])
    assert result.exit_code == 0, result.output
    with mel_frames_read() as reference:
        result = CliRunner().invoke(app, [*base, "-o", tmp_path / "reference", "--reference-mode"])
    assert result.exit_code == 0, result.output
    assert reference and set(reference) == {3000}
    longest = max(end - start for start, end in paused_speech.spans)
    # the VAD widens a region by its speech padding; a second more than the longest utterance bounds that
    assert default and max(default) <= 100 * (longest + 1 + AUDIO_PADDING_SECONDS), default
