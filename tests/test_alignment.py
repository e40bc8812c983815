"""Word timing from a Whisper base's decoder (tinyaudio_cli.model.alignment): the path search, the snapping of
boundaries to pauses, and, on the real Whisper tiny.en, espeak-ng words whose true times are known."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose, espeak, need

from tinyaudio_cli.errors import TinyAudioError
from tinyaudio_cli.model.alignment import WhisperAligner, WordTiming, dtw, snap_to_sound

SR = 16_000
REALSTACK = Path(os.environ.get("TINYAUDIO_REALSTACK_DIR", Path.home() / ".cache" / "tinyaudio" / "realstack"))
WHISPER = REALSTACK / "whisper-tiny.en"


def test_dtw_follows_the_cheap_monotonic_path():
    # 3 tokens over 9 frames: token 0 cheap on frames 0-2, token 1 on 3-5, token 2 on 6-8
    cost = np.ones((3, 9))
    for token in range(3):
        cost[token, 3 * token : 3 * token + 3] = 0.0
    tokens, frames = dtw(cost)
    assert list(frames) == list(range(9))
    assert list(tokens) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert np.all(np.diff(tokens) >= 0) and np.all(np.diff(frames) >= 0)


def test_snapping_puts_boundaries_in_pauses_and_starts_on_sound():
    # sound 0.2-0.6 s and 0.9-1.3 s; the attention put the boundary at 0.7 s and the first start at 0.0 s
    samples = np.zeros(int(1.6 * SR), np.float32)
    for start, end in ((0.2, 0.6), (0.9, 1.3)):
        t = np.arange(int(start * SR), int(end * SR))
        samples[t] = 0.3 * np.sin(2 * np.pi * 220 * t / SR)
    words = [WordTiming(" one", 0.0, 0.7, 0.9), WordTiming(" two", 0.7, 1.5, 0.9)]
    snapped = snap_to_sound(words, samples)
    assert [(w.start, w.end) for w in snapped] == [(0.2, 0.6), (0.9, 1.3)]
    assert [w.word for w in snapped] == [" one", " two"]


def test_the_closure_of_a_stop_is_not_taken_for_the_pause_between_words():
    # connected speech: "one" sounds 0.2-0.6 s and "two" follows at once (0.6-0.7 s), then goes quiet for 80 ms
    # (the closure of a stop inside it) and on to 1.2 s; the attention put their boundary a little late, at 0.66 s
    samples = np.zeros(int(1.6 * SR), np.float32)
    for start, end in ((0.2, 0.7), (0.78, 1.2)):
        t = np.arange(int(start * SR), int(end * SR))
        samples[t] = 0.3 * np.sin(2 * np.pi * 220 * t / SR)
    words = [WordTiming(" one", 0.0, 0.66, 0.9), WordTiming(" two", 0.66, 1.5, 0.9)]
    one, two = snap_to_sound(words, samples)
    assert one.start == 0.2 and two.end == 1.2
    assert 0.6 <= two.start <= 0.66  # not moved on to the end of the closure (0.78 s)


def test_snapping_leaves_words_alone_where_nothing_is_quiet():
    t = np.arange(SR)
    samples = (0.3 * np.sin(2 * np.pi * 220 * t / SR)).astype(np.float32)
    words = [WordTiming(" a", 0.0, 0.5, 1.0), WordTiming(" b", 0.5, 1.0, 1.0)]
    assert snap_to_sound(words, samples) == words


needs_whisper = pytest.mark.skipif(
    not (WHISPER / "config.json").is_file(), reason=f"real Whisper not built at {WHISPER}"
)


@pytest.mark.slow
@needs_whisper
@pytest.mark.parametrize("context", ["full", "audio"])
def test_real_whisper_times_known_words(tmp_path, context):
    """Over the whole window's encoder states, and over those of transcribe's default encoder context."""
    from transformers import WhisperFeatureExtractor

    from tinyaudio_cli.model.context import AUDIO_PADDING_SECONDS, context_frames, encode_frames
    from tinyaudio_cli.model.loading import load_whisper_encoder

    words = ["please", "remember", "to", "check", "the", "timestamps", "of", "every", "region"]
    gaps = [0.3, 0.1, 0.25, 0.4, 0.15, 0.2, 0.35, 0.1, 0.3]
    need("espeak-ng", "ffmpeg")
    pieces: list = [0.3]
    for word, gap in zip(words, gaps, strict=True):
        pieces += [espeak(tmp_path, word, speed=160), gap]
    speech = compose(tmp_path, "words", pieces)
    audio, truth = speech.audio, speech.spans
    features = WhisperFeatureExtractor.from_pretrained(WHISPER)(audio, sampling_rate=SR, return_tensors="pt")
    encoder = load_whisper_encoder(WHISPER, torch.float32, torch.device("cpu"), "sdpa")
    mel = features.input_features
    if context == "audio":
        mel = mel[:, :, : context_frames(len(audio), 160, 8, mel.shape[-1], AUDIO_PADDING_SECONDS)]
    with torch.inference_mode():
        states = encode_frames(encoder, mel)
    aligner = WhisperAligner.load(WHISPER)
    frames = int(np.ceil(len(audio) / SR * 50))
    text = " ".join(words[:4]) + "\n" + " ".join(words[4:])  # a line break is a space between words
    timed = snap_to_sound(aligner.align(states, [text], [frames])[0], audio)
    assert [w.word for w in timed] == [f" {word}" for word in words]
    duration = len(audio) / SR
    assert all(0 <= w.start <= w.end <= duration + 0.02 for w in timed)
    assert all(a.start <= b.start for a, b in itertools.pairwise(timed))
    assert all(0 <= w.probability <= 1 for w in timed)
    errors = np.array([abs(w.start - start) for w, (start, _) in zip(timed, truth, strict=True)])
    # measured 2026-11-30: median 0.01 s, 9 of 9 within 200 ms (20-clip benchmark: see README)
    assert np.median(errors) < 0.1 and np.mean(errors < 0.2) >= 0.75, errors


@needs_whisper
def test_an_encoder_only_folder_cannot_align():
    with pytest.raises(TinyAudioError, match="decoder"):
        WhisperAligner.load(REALSTACK / "whisper-tiny.en-encoder")


@needs_whisper
def test_texts_aligned_together_get_the_times_each_gets_alone(tmp_path):
    """Three texts of different lengths in one decoder pass: their token ids are padded to the longest and their
    frames to the longest, and neither padding may move a word (unmasked, the padded frames take attention)."""
    from transformers import WhisperFeatureExtractor

    from tinyaudio_cli.model.loading import load_whisper_encoder

    need("espeak-ng", "ffmpeg")
    texts = [
        "Please bring the report.",
        "Where did you put the dark table and the green chair last night?",
        "We will meet at two on Saturday.",
    ]
    clips = [
        compose(tmp_path, f"clip{i}", [0.3, espeak(tmp_path, text, speed=150), 0.3]).audio
        for i, text in enumerate(texts)
    ]
    features = WhisperFeatureExtractor.from_pretrained(WHISPER)(clips, sampling_rate=SR, return_tensors="pt")
    encoder = load_whisper_encoder(WHISPER, torch.float32, torch.device("cpu"), "sdpa")
    with torch.inference_mode():
        states = encoder(features.input_features).last_hidden_state
    frames = [int(np.ceil(len(clip) / SR * 50)) for clip in clips]
    assert len(set(frames)) == 3  # each row is padded to the longest
    aligner = WhisperAligner.load(WHISPER)
    passes = []
    hook = aligner.decoder.register_forward_hook(lambda module, args, output: passes.append(len(output[0])))
    together = aligner.align(states, texts, frames)
    hook.remove()
    assert passes == [3]  # one decoder pass of three rows
    alone = [aligner.align_frames(states[i, : frames[i]], text) for i, text in enumerate(texts)]
    assert [[w.word for w in words] for words in together] == [[f" {w}" for w in t.split()] for t in texts]
    assert [[(w.start, w.end) for w in words] for words in together] == [
        [(w.start, w.end) for w in words] for words in alone
    ]
    for a, b in zip(itertools.chain(*together), itertools.chain(*alone), strict=True):
        assert a.probability == pytest.approx(b.probability, abs=1e-4)


@needs_whisper
def test_a_text_longer_than_the_decoder_holds_is_aligned_in_pieces():
    """Whisper's decoder holds 448 positions: a longer text (a script that does not match its audio, a decoding
    loop) is cut at words into pieces over shares of the frames, so every word gets a time in order instead of
    the positional table failing with a traceback."""
    aligner = WhisperAligner.load(WHISPER)
    capacity = aligner.decoder.config.max_target_positions
    text = " ".join(["where did you put the dark table"] * 120)  # 840 words, well over 448 tokens
    assert len(aligner._text_tokens(text)) > capacity
    states = torch.randn(1500, aligner.decoder.config.d_model)
    (words,) = aligner.align(states[None], [text], [1500])
    assert [w.word.strip() for w in words] == text.split()
    starts = [w.start for w in words]
    assert starts == sorted(starts) and starts[0] >= 0 and words[-1].end <= 30.0 + 1e-6
    assert 10.0 < starts[len(words) // 2] < 20.0  # the middle word near the middle of the frames
