"""What `train --preset smoke` trains on: tiny random bases and a few dozen utterances, all made on this machine.

The smoke preset checks the whole pipeline (data, features, encoder, projector, LM, loss, checkpoints,
evaluation, the final model) in a minute on a CPU, offline: nothing comes from the Hub. Its bases are a Whisper
encoder and a Llama-style LM with random weights, built from configs (a small byte-level BPE tokenizer with a
ChatML template); its data are sentences spoken by espeak-ng when it is installed, else tones standing in for
words (the run then checks the plumbing, not listening). Both are written once into OUTPUT_DIR/smoke-inputs and
the run's config names them by path, so `--resume` and the checkpoints find them again.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import TrainConfig

# what the preset names; replaced by local paths before the run starts
SMOKE_PREFIX = "tinyaudio-smoke/"
SMOKE_AUDIO, SMOKE_TEXT = f"{SMOKE_PREFIX}whisper", f"{SMOKE_PREFIX}lm"
SMOKE_TRAIN, SMOKE_DEV = f"{SMOKE_PREFIX}train.jsonl", f"{SMOKE_PREFIX}dev.jsonl"
INPUTS_DIR = "smoke-inputs"
DONE = "DONE"
SAMPLE_RATE = 16_000
SENTENCES = (
    "the quick brown fox jumps over the lazy dog",
    "speech recognition turns spoken words into text",
    "a small model can listen to a short clip",
    "every window of audio is thirty seconds long",
    "the encoder hears and the language model writes",
    "please check the pipeline before the long run",
    "seven green birds sat on the old stone wall",
    "she sells sea shells by the sea shore",
    "a cup of tea in the morning is nice",
    "the train leaves the station at nine",
    "open the window and let the air in",
    "four plus four makes eight",
    "the river runs fast after the rain",
    "my friend plays the piano every evening",
    "turn left at the big red door",
    "the cat sleeps on a warm blanket",
    "we walked home under a bright moon",
    "bring two apples and a loaf of bread",
    "the meeting starts in ten minutes",
    "a light wind moves the tall grass",
    "he wrote a long letter to his sister",
    "the clock on the wall is slow",
    "dogs bark when the mail arrives",
    "listen closely and write what you hear",
)
DEV_COUNT = 4
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def uses_smoke_inputs(config: TrainConfig) -> bool:
    names = [config.encoder, config.llm, *(source.path for source in [*config.train_data, *config.dev_data])]
    return any(name.startswith(SMOKE_PREFIX) for name in names)


def materialise(config: TrainConfig, say: Callable[[str], None]) -> TrainConfig:
    """`config` with the smoke preset's placeholders replaced by bases and data built under its output folder."""
    if not uses_smoke_inputs(config):
        return config
    folder = Path(config.output_dir).expanduser().resolve() / INPUTS_DIR
    if not (folder / DONE).is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{INPUTS_DIR}.", dir=folder.parent))
        try:
            say(f"smoke: building tiny random bases and {_data_kind()} in {folder}")
            build_inputs(scratch)
            shutil.rmtree(folder, ignore_errors=True)
            scratch.rename(folder)  # complete or absent
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    if not (folder / "espeak").is_file():
        say("[yellow]smoke: espeak-ng was not found, so the data are tones, not speech: the run checks the "
            "pipeline, not recognition (install espeak-ng for spoken data)[/]")  # fmt: skip
    paths = {
        SMOKE_AUDIO: str(folder / "whisper"),
        SMOKE_TEXT: str(folder / "lm"),
        SMOKE_TRAIN: str(folder / "train.jsonl"),
        SMOKE_DEV: str(folder / "dev.jsonl"),
    }

    def local(sources: list[Any]) -> list[Any]:
        return [dataclasses.replace(source, path=paths.get(source.path, source.path)) for source in sources]

    return dataclasses.replace(
        config,
        encoder=paths.get(config.encoder, config.encoder),
        llm=paths.get(config.llm, config.llm),
        train_data=local(config.train_data),
        dev_data=local(config.dev_data),
    )


def _data_kind() -> str:
    return "espeak-ng speech" if shutil.which("espeak-ng") else "synthetic tones"


def build_inputs(folder: Path) -> None:
    import torch

    torch.manual_seed(0)
    build_whisper(folder / "whisper")
    build_lm(folder / "lm")
    spoken = build_data(folder)
    if spoken:
        (folder / "espeak").write_text("the data were spoken by espeak-ng\n")
    (folder / DONE).write_text("complete\n")


def build_whisper(folder: Path) -> None:
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    config = WhisperConfig(
        d_model=64,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        num_mel_bins=80,
        vocab_size=64,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)


def build_lm(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator([*SENTENCES, "Transcribe the audio. system user assistant"] * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )  # fmt: skip
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder)


def build_data(folder: Path) -> bool:
    """train.jsonl and dev.jsonl with 16 kHz WAVs beside them; True if espeak-ng spoke them."""
    import soundfile as sf

    espeak = shutil.which("espeak-ng")
    rows = []
    for index, text in enumerate(SENTENCES):
        audio = _spoken(espeak, text, folder) if espeak else _tones(text)
        name = f"utt{index:02d}.wav"
        sf.write(folder / name, audio, SAMPLE_RATE, subtype="PCM_16")
        rows.append({"audio": name, "text": text, "id": f"utt{index:02d}"})
    for name, part in (("train.jsonl", rows[DEV_COUNT:]), ("dev.jsonl", rows[:DEV_COUNT])):
        (folder / name).write_text("".join(json.dumps(row) + "\n" for row in part), encoding="utf-8")
    return espeak is not None


def _spoken(espeak: str, text: str, folder: Path) -> Any:
    from ..data.evaldata import decode_audio_bytes

    raw = folder / "espeak.wav"
    subprocess.run([espeak, "-v", "en-us", "-w", str(raw), text], check=True, capture_output=True)
    audio = decode_audio_bytes(raw.read_bytes())  # espeak-ng speaks at 22.05 kHz; the decoder resamples
    raw.unlink()
    return audio


def _tones(text: str) -> Any:
    """A tone per word (its pitch from the word), with short gaps: stands in for speech without espeak-ng."""
    import numpy as np

    pieces = []
    for word in text.split():
        pitch = 200 + zlib.crc32(word.encode()) % 800
        t = np.arange(int(0.25 * SAMPLE_RATE)) / SAMPLE_RATE
        pieces += [0.3 * np.sin(2 * np.pi * pitch * t), np.zeros(int(0.05 * SAMPLE_RATE))]
    return np.concatenate(pieces).astype(np.float32)
