"""The model core on tiny random stacks (SmolLM3 and Llama LMs): loading, the projector, both attention modes."""

from __future__ import annotations

import itertools
import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tinystack import build_checkpoint, build_whisper, fake_hub_cache
from transformers import WhisperConfig, WhisperForConditionalGeneration

from tinyaudio_cli.errors import TinyAudioError
from tinyaudio_cli.model import MOSAProjector, TinyAudioConfig, load_model
from tinyaudio_cli.model.loading import load_whisper_encoder

os.environ["HF_HUB_OFFLINE"] = "1"
SR = 16_000


@pytest.fixture(scope="module", params=["smollm3", "llama"])
def model(request, tmp_path_factory):
    folder = build_checkpoint(tmp_path_factory.mktemp(request.param), request.param)
    return load_model(str(folder), device="cpu")


def noise(seconds: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.1).astype(np.float32)


# -- config -----------------------------------------------------------------------------------------


def test_config_round_trip_keeps_unknown_keys(tmp_path):
    published = {
        "model_type": "asr_model",
        "audio_model_id": "openai/whisper-large-v3-turbo",
        "text_model_id": "HuggingFaceTB/SmolLM3-3B",
        "projector_hidden_dim": None,
        "auto_map": {"AutoConfig": "asr_config.ASRConfig"},
        "text_config": {"hidden_size": 2048, "model_type": "smollm3"},
        "inference_warmup_tokens": 10,
        "max_new_tokens": 256,
    }
    config = TinyAudioConfig.from_dict(published)
    assert config.num_experts == 4 and config.expert_hidden_dim == 4096
    assert config.num_beams == 1 and config.do_sample is False and config.repetition_penalty == 1.0
    config.save_pretrained(tmp_path)
    again = TinyAudioConfig.from_pretrained(tmp_path).to_dict()
    for key, value in published.items():
        assert again[key] == value
    assert again == config.to_dict()


# -- projector ----------------------------------------------------------------------------------------


def test_projector_parameter_names_match_published_layout():
    shapes = {name: tuple(p.shape) for name, p in MOSAProjector(64, 32, 128, 4).state_dict().items()}
    expected = {
        "conv.0.weight": (32, 64, 3),
        "conv.0.bias": (32,),
        "conv.2.weight": (32, 32, 3),
        "conv.2.bias": (32,),
        "router.0.weight": (512, 64),
        "router.0.bias": (512,),
        "router.2.weight": (4, 512),
        "router.2.bias": (4,),
        "ln_post.weight": (32,),
    }
    for i in range(4):
        expected |= {
            f"experts.{i}.fc1.weight": (128, 32),
            f"experts.{i}.fc1.bias": (128,),
            f"experts.{i}.fc2.weight": (32, 128),
            f"experts.{i}.fc2.bias": (32,),
        }
    assert shapes == expected


@pytest.mark.parametrize("frames", [1500, 1499, 7])
def test_projector_math_matches_functional_formula(frames):
    torch.manual_seed(0)
    projector = MOSAProjector(16, 8, 24, 3).eval()
    for p in projector.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, frames, 16)
    sd = projector.state_dict()
    padded = F.pad(x, (0, 0, 0, (4 - frames % 4) % 4))
    h = F.relu(F.conv1d(padded.transpose(1, 2), sd["conv.0.weight"], sd["conv.0.bias"], stride=2, padding=1))
    h = F.relu(F.conv1d(h, sd["conv.2.weight"], sd["conv.2.bias"], stride=2, padding=1)).transpose(1, 2)
    logits = F.linear(F.relu(F.linear(padded, sd["router.0.weight"], sd["router.0.bias"])), sd["router.2.weight"])
    logits = logits + sd["router.2.bias"]
    weights = torch.stack([logits[:, i::4] for i in range(4)]).mean(0).softmax(-1)
    out = torch.zeros_like(h)
    for i in range(3):
        hidden = F.relu(F.linear(h, sd[f"experts.{i}.fc1.weight"], sd[f"experts.{i}.fc1.bias"]))
        out += weights[..., i : i + 1] * F.linear(hidden, sd[f"experts.{i}.fc2.weight"], sd[f"experts.{i}.fc2.bias"])
    out = out * torch.rsqrt(out.pow(2).mean(-1, keepdim=True) + 1e-6) * sd["ln_post.weight"]
    result = projector(x)
    assert result.shape == (2, math.ceil(frames / 4), 8)
    torch.testing.assert_close(result, out, atol=1e-5, rtol=1e-5)


# -- loading ------------------------------------------------------------------------------------------


def test_loaded_model_is_frozen_except_projector_and_round_trips(model, tmp_path):
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert not any(p.requires_grad for p in model.lm.parameters())
    assert model.audio_tokens_max == 375
    saved = model.save_pretrained(tmp_path / "again")
    tokenizer_config = json.loads((saved / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"  # the name transformers 4 knows too
    assert not {"is_local", "local_files_only"} & set(tokenizer_config)
    again = load_model(str(saved), device="cpu")
    for (name, a), b in zip(model.projector.state_dict().items(), again.projector.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    clip = [noise(2, 1)]
    assert again.generate_ids(clip, max_new_tokens=6) == model.generate_ids(clip, max_new_tokens=6)


def test_encoder_loads_from_full_whisper_layouts_without_decoder(tmp_path):
    reference = build_whisper(tmp_path / "whisper-model")
    config = WhisperConfig.from_pretrained(reference)
    full = WhisperForConditionalGeneration(config)  # keys "model.encoder.*" and "model.decoder.*"
    full.model.encoder.load_state_dict(
        load_whisper_encoder(reference, torch.float32, torch.device("cpu"), "sdpa").state_dict()
    )
    full.save_pretrained(tmp_path / "whisper-cg")
    a = load_whisper_encoder(reference, torch.float32, torch.device("cpu"), "sdpa")
    b = load_whisper_encoder(tmp_path / "whisper-cg", torch.float32, torch.device("cpu"), "sdpa")
    assert not any("decoder" in name for name in b.state_dict())
    features = torch.randn(1, 80, 3000)
    torch.testing.assert_close(a(features).last_hidden_state, b(features).last_hidden_state)


def test_load_by_hub_id_from_cache_and_clear_offline_error(tmp_path, monkeypatch):
    checkpoint = build_checkpoint(tmp_path / "src", "llama")
    cache = tmp_path / "hub"
    config = TinyAudioConfig.from_pretrained(checkpoint)
    fake_hub_cache(cache, "org/whisper-tiny", config.audio_model_id)
    fake_hub_cache(cache, "org/lm-tiny", config.text_model_id)
    config.audio_model_id, config.text_model_id = "org/whisper-tiny", "org/lm-tiny"
    config.save_pretrained(checkpoint)
    fake_hub_cache(cache, "org/tiny-audio", checkpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    model = load_model("org/tiny-audio", device="cpu")
    assert model.transcribe([noise(1, 2)], max_new_tokens=3)[0].token_ids
    with pytest.raises(TinyAudioError, match="tinyaudio download org/missing"):
        load_model("org/missing", device="cpu")


def test_bases_mapping_env_redirects_base_ids(tmp_path, monkeypatch):
    checkpoint = build_checkpoint(tmp_path / "src", "llama")
    config = TinyAudioConfig.from_pretrained(checkpoint)
    mapping = f"org/w={config.audio_model_id},org/l={config.text_model_id}"
    config.audio_model_id, config.text_model_id = "org/w", "org/l"
    config.save_pretrained(checkpoint)
    monkeypatch.setenv("TINYAUDIO_BASES", mapping)
    assert load_model(str(checkpoint), device="cpu").transcribe([noise(1, 3)], max_new_tokens=2)


def test_missing_safetensors_is_one_clear_error(tmp_path):
    checkpoint = build_checkpoint(tmp_path / "src", "llama")
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(TinyAudioError, match="safetensors"):
        load_model(str(checkpoint), device="cpu")


# -- attention modes ----------------------------------------------------------------------------------


def text_logits(model, frames, mode, continuation, mask_from=None):
    """Teacher-forced logits over the prompt suffix and the continuation."""
    embeds, mask, positions, lengths = model.build_inputs([frames], mode, [continuation])
    if mask_from is not None:
        start = len(model.prompt.prefix)
        mask[0, start + mask_from : start + len(frames)] = 0
    with torch.no_grad():
        logits = model.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits[0]
    tail = len(model.prompt.suffix) + len(continuation)
    return logits[int(lengths[0]) - tail : int(lengths[0])]


@pytest.mark.parametrize("seconds", [0.4, 2.3, 11.0, 30.0])
def test_trimmed_equals_full_window_with_padding_masked(model, seconds, monkeypatch):
    monkeypatch.setattr(model, "context_padding", None)  # whole windows: the encoder context is test_context's
    clip = noise(seconds, 7)
    tokens = model.generate_ids([clip], mode="trimmed", max_new_tokens=8)[0]
    projected = model.encode(model.features([clip]))[0]
    kept = model.audio_token_count(len(clip))
    assert kept == min(375, math.ceil(math.ceil(len(clip) / 160) / 8))
    trimmed = text_logits(model, projected[:kept], "trimmed", tokens)
    masked = text_logits(model, projected, "reference", tokens, mask_from=kept)
    torch.testing.assert_close(trimmed, masked, atol=1e-4, rtol=0)
    # greedy decoding with the KV cache picks exactly the teacher-forced argmax at every step
    steps = trimmed[len(model.prompt.suffix) - 1 : -1].argmax(-1).tolist()
    assert steps == tokens[: len(steps)]


def test_trimmed_differs_from_reference_when_padding_is_attended(model):
    clip = noise(1.5, 9)
    projected = model.encode(model.features([clip]))[0]
    kept = model.audio_token_count(len(clip))
    tokens = [5, 6, 7]
    trimmed = text_logits(model, projected[:kept], "trimmed", tokens)
    reference = text_logits(model, projected, "reference", tokens)
    assert (trimmed - reference).abs().max() > 1e-3


@pytest.mark.parametrize("mode", ["trimmed", "reference"])
def test_batched_results_equal_one_at_a_time(model, mode):
    clips = [noise(s, i) for i, s in enumerate([0.7, 4.2, 9.5, 1.1, 29.9])]
    together = model.transcribe(clips, mode=mode, batch_size=5, max_new_tokens=8)
    alone = [model.transcribe([clip], mode=mode, max_new_tokens=8)[0] for clip in clips]
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    assert all(len(r.token_ids) == 8 or r.token_ids[-1] in model.stop_ids for r in together)


def test_clip_longer_than_window_is_rejected(model):
    with pytest.raises(ValueError, match="30 s"):
        model.generate_ids([noise(30.5, 0)])


@pytest.mark.parametrize("mels", [80, 128])
def test_log_mel_equals_whisper_feature_extractor(mels):
    from transformers import WhisperFeatureExtractor

    from tinyaudio_cli.model.features import log_mel

    extractor = WhisperFeatureExtractor(feature_size=mels)
    rng = np.random.default_rng(mels)
    for lengths in ([16_000], [1, 5_000], [480_000, 1_000], [479_999, 479_800, 160 * 2999], [0]):
        audios = [(rng.standard_normal(n) * 0.1).astype(np.float32) for n in lengths]
        expected = extractor(audios, sampling_rate=SR, return_tensors="pt").input_features
        torch.testing.assert_close(log_mel(audios, extractor, torch.device("cpu")), expected, atol=1e-5, rtol=0)


def test_pack_clips_fills_windows_without_overlap():
    from tinyaudio_cli.model.modeling import pack_clips

    lengths = [int(s * SR) for s in (2, 20, 9.5, 3, 28, 0.3, 11, 7)]
    windows = pack_clips(lengths, 30 * SR, 1280)
    placed = sorted(i for window in windows for i, _ in window)
    assert placed == list(range(len(lengths)))
    for window in windows:
        spans = sorted((offset, offset + lengths[i]) for i, offset in window)
        assert all(offset % 1280 == 0 for offset, _ in spans)
        assert spans[-1][1] <= 30 * SR
        assert all(end + 1280 <= start for (_, end), (start, _) in itertools.pairwise(spans))
    assert len(windows) < len(lengths) / 2


def test_packed_transcription(model):
    clips = [noise(s, i) for i, s in enumerate([16.0, 3.0, 0.5, 5.0])]
    packed = model.transcribe(clips, batch_size=4, max_new_tokens=5, pack=True)
    alone = model.transcribe(clips, batch_size=4, max_new_tokens=5)
    assert len(packed) == 4 and all(r.token_ids for r in packed)
    big = model.transcribe([clips[0], noise(20, 9)], max_new_tokens=5, pack=True)
    assert big[0].token_ids == alone[0].token_ids  # nothing fits beside a 20 s clip: its window is its own


def test_training_loss_is_cross_entropy_of_targets_after_the_prompt(model):
    clips = [noise(1.0, 3), noise(2.5, 4)]
    targets = [model.target_ids("hello world"), model.target_ids("the quick brown fox")]
    assert targets[0][-1] == model.end_of_turn_id
    loss = model.loss(model.features(clips), [len(c) for c in clips], targets)
    # independently: teacher-forced logits of each row on its own
    expected, count = 0.0, 0
    for clip, target in zip(clips, targets, strict=True):
        frames = model.encode(model.features([clip]))[0][: model.audio_token_count(len(clip))]
        embeds, mask, positions, lengths = model.build_inputs([frames], "trimmed", [target])
        logits = model.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits[0]
        predicted = logits[int(lengths[0]) - len(target) - 1 : int(lengths[0]) - 1]
        expected += F.cross_entropy(predicted, torch.tensor(target), reduction="sum").item()
        count += len(target)
    assert loss.item() == pytest.approx(expected / count, rel=1e-4)
    loss.backward()
    assert model.projector.experts[0].fc1.weight.grad is not None
    assert all(p.grad is None for p in model.lm.parameters())
    model.projector.zero_grad(set_to_none=True)


def test_rows_leave_the_batch_as_they_finish_without_changing_results(model):
    clips = [noise(s, 20 + i) for i, s in enumerate([1.0, 6.0, 2.5])]
    limits = [3, 9, 5]  # rows finish at different steps and are dropped from the batch
    together = model.transcribe(clips, batch_size=3, max_new_tokens=limits)
    alone = [model.transcribe([clip], max_new_tokens=limit)[0] for clip, limit in zip(clips, limits, strict=True)]
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    assert [len(r.token_ids) for r in together] == [
        limit if model.stop_ids[0] not in r.token_ids else len(r.token_ids)
        for r, limit in zip(alone, limits, strict=True)
    ]


def test_the_prompt_prefix_is_computed_once_and_decoding_starts_from_it(model, monkeypatch):
    """Every row's prompt starts with the same tokens: their KV cache is computed once (batch 1) and each
    batch's prefill computes only the positions after it, with the same tokens and log-probabilities as
    computing every position; reference mode still computes the whole prompt in one pass."""
    clips = [noise(1.0, 11), noise(2.3, 12), noise(3.1, 13)]
    widths: list[int] = []

    def hook(_module, args, kwargs) -> None:
        tensor = kwargs.get("inputs_embeds") if kwargs.get("inputs_embeds") is not None else kwargs.get("input_ids")
        widths.append(tensor.shape[1])

    _, projected = model.encode_audio(clips, "trimmed")
    frames = [p[: model.audio_token_count(len(c))] for p, c in zip(projected, clips, strict=True)]
    width = int(model.build_inputs(frames, "trimmed")[3].max())
    prefix = len(model.prompt.prefix)
    model._prefix = None
    handle = model.lm.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        reused_scores: list[list[float]] = []
        reused = model.generate_from_frames(frames, max_new_tokens=5, logprobs=reused_scores)
        assert widths[:2] == [prefix, width - prefix]  # the prefix alone once, then the rest of the prompt
        widths.clear()
        assert model.generate_from_frames(frames, max_new_tokens=5) == reused
        assert widths[0] == width - prefix  # the second batch computes no prefix again
        widths.clear()
        model.generate_from_frames(frames, "reference", max_new_tokens=5)
        assert widths[0] == int(model.build_inputs(frames, "reference")[3].max())
    finally:
        handle.remove()
    monkeypatch.setattr(model, "prefix_cache", lambda: None)
    whole_scores: list[list[float]] = []
    assert model.generate_from_frames(frames, max_new_tokens=5, logprobs=whole_scores) == reused
    for a, b in zip(reused_scores, whole_scores, strict=True):
        assert a == pytest.approx(b, abs=1e-4)
