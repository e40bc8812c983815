"""Tiny random Tiny Audio stacks built from configs: no network, a second to build.

`build_bases` writes a Whisper-family base folder and a causal-LM base folder (SmolLM3 or Llama) with
a small byte-level BPE tokenizer and a ChatML template; `build_checkpoint` saves a Tiny Audio
checkpoint in the published layout on top of them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    SmolLM3Config,
    SmolLM3ForCausalLM,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperModel,
)

from tinyaudio_cli.model import TinyAudioConfig, create_model

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "hello world this is a test of speech recognition",
    "Transcribe: please write down what you hear",
    "system user assistant no think override",
] * 20


def build_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    return fast


def build_whisper(folder: Path, d_model: int = 32, num_mel_bins: int = 80, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config = WhisperConfig(
        d_model=d_model,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_mel_bins=num_mel_bins,
        vocab_size=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        max_target_positions=32,
        init_std=0.3,
    )
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=num_mel_bins).save_pretrained(folder)
    return folder


def build_lm(folder: Path, family: str = "smollm3", hidden: int = 48, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(folder)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.5,
    )
    if family == "smollm3":
        # layer 1 without rotary embeddings, as SmolLM3 alternates NoPE layers
        model = SmolLM3ForCausalLM(SmolLM3Config(**common, no_rope_layers=[1, 0]))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder)
    return folder


def build_bases(root: Path, family: str = "smollm3") -> tuple[Path, Path]:
    return build_whisper(root / "whisper-tiny"), build_lm(root / f"{family}-tiny", family)


def build_checkpoint(
    root: Path, family: str = "smollm3", hidden_dim: int = 64, seed: int = 0, system_prompt: str | None = None
) -> Path:
    """A complete checkpoint folder whose config names the bases by absolute path."""
    audio_dir, text_dir = build_bases(root, family)
    config = TinyAudioConfig(
        audio_model_id=str(audio_dir), text_model_id=str(text_dir), projector_hidden_dim=hidden_dim
    )
    if system_prompt is not None:
        config.system_prompt = system_prompt
    model = create_model(config, device="cpu", dtype="float32", seed=seed)
    with torch.no_grad():  # non-trivial biases and norm so loading mistakes show
        for name, parameter in model.projector.named_parameters():
            if name.endswith("bias") or name.startswith("ln_post"):
                parameter.add_(torch.randn_like(parameter) * 0.1)
    folder = root / f"checkpoint-{family}"
    model.save_pretrained(folder)
    (folder / "README.md").write_text(json.dumps({"family": family}))
    return folder


def fake_hub_cache(cache: Path, repo_id: str, source: Path | str) -> None:
    """Lay out a folder as the Hugging Face cache holds a downloaded repo (one snapshot, refs/main)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(source, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
