"""`tinyaudio train` on tiny random stacks and real espeak-ng speech: it learns, keeps the frozen parts
frozen, resumes exactly, agrees across DDP ranks, writes checkpoints `transcribe` loads, and survives bad data."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
import yaml
from safetensors.torch import load_file
from tinystack import build_bases
from transformers.modeling_layers import GradientCheckpointingLayer
from typer.testing import CliRunner

from tinyaudio_cli.cli import app
from tinyaudio_cli.errors import TinyAudioError
from tinyaudio_cli.model import TinyAudioConfig, create_model, load_model
from tinyaudio_cli.training import data as data_module
from tinyaudio_cli.training import loss as loss_module
from tinyaudio_cli.training import trainer as train_module
from tinyaudio_cli.training.checkpoints import read_metrics
from tinyaudio_cli.training.config import DataSource, TrainConfig, resolve_config
from tinyaudio_cli.training.data import EncoderCache, ExampleStream, Preparer, collate, open_source, prepare_target
from tinyaudio_cli.training.loss import ctc_loss, project
from tinyaudio_cli.training.resume import STATE_NAME
from tinyaudio_cli.training.smoke import SMOKE_AUDIO
from tinyaudio_cli.training.trainer import Trainer, train

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

# words the tiny tokenizer knows, spoken fast: short clips, short targets
UTTERANCES = ("the quick brown fox", "hello world", "speech recognition test", "the lazy dog")
BROKEN_WAV = b"RIFF\x24\x00\x00\x00WAVEfmt this is not audio at all"
SHORT_LIMIT_SECONDS = 3.0  # the bad-data manifest's over-long clip is longer than this
runner = CliRunner()


def espeak_wav(path: Path, text: str, speed: int = 200) -> Path:
    """16 kHz speech, which soundfile decodes in microseconds (espeak-ng's 22.05 kHz would need ffmpeg)."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(speed), "-w", str(raw), text], check=True)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(raw), "-ar", "16000", str(path)], check=True
    )
    raw.unlink()
    return path


def write_manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> tuple[Path, Path]:
    return build_bases(tmp_path_factory.mktemp("bases"))


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    """Four espeak-ng utterances and their manifest."""
    folder = tmp_path_factory.mktemp("speech")
    rows = []
    for index, text in enumerate(UTTERANCES):
        espeak_wav(folder / f"u{index}.wav", text)
        rows.append({"audio": f"u{index}.wav", "text": text, "id": f"u{index}"})
    return write_manifest(folder / "train.jsonl", rows)


@pytest.fixture(scope="module")
def noisy_speech(speech: Path) -> Path:
    """The four good utterances plus one of each kind of bad entry, which training must skip and count."""
    folder = speech.parent
    (folder / "broken.wav").write_bytes(BROKEN_WAV)
    long_text = "the quick brown fox jumps over the lazy dog and says hello world again and again"
    espeak_wav(folder / "long.wav", long_text, speed=120)
    assert sf.info(folder / "long.wav").duration > SHORT_LIMIT_SECONDS
    rows = [json.loads(line) for line in speech.read_text().splitlines()]
    rows += [
        {"audio": "broken.wav", "text": "hello world", "id": "broken"},  # undecodable
        {"audio": "missing.wav", "text": "hello world", "id": "missing"},  # undecodable: no such file
        {"audio": "u0.wav", "text": "", "id": "empty"},  # empty text
        {"audio": "u1.wav", "text": "<inaudible> um uh", "id": "tags"},  # nothing left after normalisation
        {"audio": "long.wav", "text": long_text, "id": "long"},  # too long
    ]
    return write_manifest(folder / "noisy.jsonl", rows)


@pytest.fixture(scope="module")
def model(bases):
    whisper, lm = bases
    config = TinyAudioConfig(audio_model_id=str(whisper), text_model_id=str(lm), projector_hidden_dim=32)
    return create_model(config, device="cpu", dtype="float32", seed=0)


def tiny_config(bases: tuple[Path, Path], output_dir: Path, data: Path, **values) -> TrainConfig:
    """A small, fast, CPU run; `values` override."""
    whisper, lm = bases
    settings = {
        "encoder": str(whisper),
        "llm": str(lm),
        "experts": 2,
        "hidden_dim": 32,
        "train_data": [str(data)],
        "output_dir": str(output_dir),
        "max_steps": 6,
        "warmup_steps": 2,
        "learning_rate": 1e-3,
        "batch_size": 2,
        "grad_accum": 2,
        "save_steps": 0,
        "eval_steps": 0,
        "log_steps": 1,
        "tensorboard": False,
        "device": "cpu",
        "dtype": "float32",
        "seed": 7,
    }
    return TrainConfig().with_values(settings | values)


def projector_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(checkpoint / "model.safetensors")


def train_losses(output_dir: Path) -> list[float]:
    return [record["loss"] for record in read_metrics(output_dir / "metrics.jsonl") if record["split"] == "train"]


# -- settings ------------------------------------------------------------------------------------------------


def test_settings_resolve_preset_file_flags_in_order(tmp_path, speech):
    file = tmp_path / "train.yaml"
    file.write_text("preset: smoke\nlearning_rate: 3e-4\nmax_steps: 77\n")
    config = resolve_config(None, file, {"max_steps": 5, "train_data": [f"{speech},weight=2"]})
    assert config.encoder == SMOKE_AUDIO and config.experts == 2  # from the preset (built locally at the start)
    assert config.learning_rate == pytest.approx(3e-4)  # YAML's "3e-4" is a string: coerced
    assert config.max_steps == 5  # the flag beats the file
    assert config.train_data == [DataSource(str(speech), weight=2.0)]
    assert config.weight_decay == 0.01 and config.mask_time_prob == 0.10  # the reference's

    result = runner.invoke(
        app,
        ["train", "-p", "tiny-en", "--data", str(speech), "--set", "warmup_steps=7", "--no-tensorboard", "--dry-run"],
    )
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    assert printed["warmup_steps"] == 7 and printed["tensorboard"] is False and printed["cache_encoder"] is True
    again = TrainConfig().with_values(printed)  # the dry run's output is a valid config file
    assert again.to_dict() == printed

    for bad in (["--set", "lerning_rate=1"], ["--batch-size", "0"], ["--cache-encoder"], ["--set", "max_steps=2.5"]):
        result = runner.invoke(app, ["train", "-p", "loquacious", *bad, "--dry-run"])
        assert result.exit_code == 1, (bad, result.output)
    with pytest.raises(TinyAudioError, match="nothing to resume"):
        resolve_config(None, None, {"train_data": [str(speech)], "output_dir": str(tmp_path / "none")}, resume=True)


def test_targets_are_normalised_then_truecased():
    assert prepare_target("I'm sure, uh, it's OK. <inaudible>") == "I am sure it is okay"
    assert prepare_target("Twenty-five apples, i think!") == "25 apples I think"
    assert prepare_target("[noise] um") == ""
    assert prepare_target("  Keep  As Is. ", normalize=False) == "Keep As Is."


# -- the computation ----------------------------------------------------------------------------------------


def test_training_loss_is_the_model_loss_cached_or_not(model, speech, tmp_path):
    """The trainer's frames (collated log-mel, projected) give TinyAudioModel.loss; cached encoder frames give the
    same loss; gradient checkpointing gives the same gradients."""
    source = open_source(DataSource(str(speech)), False, 0, shuffle=False, loop=False)
    examples = list(ExampleStream([source], [1.0], 0, Preparer(model, 30 * 16_000, True, None)))
    model.projector.eval()
    features = model.features([e.audio for e in examples])
    reference = model.loss(features, [e.num_samples for e in examples], [e.targets for e in examples])

    cache = EncoderCache(tmp_path / "cache", "test")
    frames = project(model, model.projector, collate(examples, model.feature_extractor), cache=cache)
    loss, count = model.target_loss(frames, [e.targets for e in examples])
    assert count == sum(len(e.targets) for e in examples)
    assert (loss / count).item() == pytest.approx(reference.item(), rel=1e-5)

    cached = [
        Preparer(model, 30 * 16_000, True, cache)(raw)
        for raw in open_source(DataSource(str(speech)), False, 0, shuffle=False, loop=False)
    ]
    assert all(e.frames is not None and e.audio is None for e in cached)
    loss_cached, _ = model.target_loss(
        project(model, model.projector, collate(cached, None)), [e.targets for e in cached]
    )
    assert loss_cached.item() == pytest.approx(loss.item(), rel=1e-6)

    def gradients() -> list[torch.Tensor]:
        model.projector.zero_grad()
        value, _ = model.target_loss(
            project(model, model.projector, collate(cached, None)), [e.targets for e in cached]
        )
        value.backward()
        return [p.grad.clone() for p in model.projector.parameters()]

    plain = gradients()
    train_module.set_gradient_checkpointing(model.lm, True)
    try:
        layers = [m for m in model.lm.modules() if isinstance(m, GradientCheckpointingLayer)]
        assert layers and all(m.gradient_checkpointing and m.training for m in layers) and not model.lm.training
        checkpointed = gradients()
    finally:
        train_module.set_gradient_checkpointing(model.lm, False)
    for a, b in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_training_features_are_the_models_log_mel(model, speech):
    """The loader's batches carry exactly the features inference computes for the same audio: one log-mel,
    not a second implementation that agrees only to a tolerance."""
    source = open_source(DataSource(str(speech)), False, 0, shuffle=False, loop=False)
    examples = list(ExampleStream([source], [1.0], 0, Preparer(model, 30 * 16_000, True, None)))
    batch = collate(examples, model.feature_extractor)
    assert batch.features is not None and batch.features.device.type == "cpu"
    assert torch.equal(batch.features, model.features([e.audio for e in examples]).cpu())


def test_bad_data_is_skipped_and_counted(model, noisy_speech):
    source = open_source(DataSource(str(noisy_speech)), False, 0, loop=False)
    stream = ExampleStream([source], [1.0], 0, Preparer(model, int(SHORT_LIMIT_SECONDS * 16_000), True, None))
    good = list(stream)  # one epoch
    assert sorted(e.key.rsplit("|", 1)[1] for e in good) == ["u0", "u1", "u2", "u3"]
    assert stream.skipped == {"undecodable": 2, "empty_text": 2, "too_long": 1}


def test_sources_mix_by_weight(model, speech, tmp_path):
    """A manifest and a media folder (same-named .txt beside each file) mixed 3:1; a file without its .txt is
    skipped as empty text."""
    folder = tmp_path / "folder"
    folder.mkdir()
    for name, text in (("a", "hello world"), ("b", "the lazy dog"), ("c", None)):
        sf.write(folder / f"{name}.wav", np.zeros(3_200, np.float32), 16_000)
        if text:
            (folder / f"{name}.txt").write_text(text)
    sources = [open_source(DataSource(str(speech)), False, 1), open_source(DataSource(str(folder)), False, 2)]
    stream = ExampleStream(sources, [3.0, 1.0], 0, Preparer(model, 30 * 16_000, True, None))
    keys = [next(stream).key for _ in range(120)]
    from_folder = sum(key.startswith(str(folder)) for key in keys) / len(keys)
    assert 0.15 < from_folder < 0.3, from_folder  # 1/4 of the draws, less the files without text
    assert stream.skipped["empty_text"] > 0 and stream.skipped["undecodable"] == 0


def test_streamed_dataset_position_restores_exactly(tmp_path, monkeypatch):
    """A Parquet set read through `datasets` streaming: blocks shuffled in memory, several shards open; a saved
    position (mid-block, then across an epoch) continues with exactly the same rows; ranks read disjoint rows."""
    monkeypatch.setattr(data_module, "SHUFFLE_BLOCK", 4)
    monkeypatch.setattr(data_module, "PARALLEL_SHARDS", 2)
    folder = tmp_path / "parquet"
    folder.mkdir()
    for shard in range(4):
        ids = [f"s{shard}r{row}" for row in range(4 + shard)]
        table = pa.table({"audio": [b"not decoded here"] * len(ids), "text": ids, "id": ids})
        pq.write_table(table, folder / f"train-{shard:02d}.parquet", row_group_size=2)
    total = 4 + 5 + 6 + 7

    def opened(rank: int = 0, world: int = 1):
        return open_source(DataSource(str(folder), id_column="id"), False, 3, rank, world)

    source = opened()
    first_epoch = [next(source).text for _ in range(total)]
    assert sorted(first_epoch) == sorted(f"s{s}r{r}" for s in range(4) for r in range(4 + s))
    assert first_epoch != sorted(first_epoch)  # shuffled

    source = opened()
    for _ in range(9):
        next(source)
    position = source.state()
    expected = [next(source).text for _ in range(total)]  # runs into the second epoch
    restored = opened()
    restored.load_state(json.loads(json.dumps(position)))  # survives serialisation
    assert [next(restored).text for _ in range(total)] == expected

    halves = [opened(rank, 2) for rank in range(2)]
    rows = [[next(half).text for _ in range(8)] for half in halves]
    assert not set(rows[0]) & set(rows[1])


def test_data_names_a_local_copy_of_a_registered_set_as_eval_does(tmp_path):
    """`--data loquacious,data_dir=PATH` (eval's spelling) reads the local copy with the registry's columns
    (wav, text, ID) and its train split."""
    folder = tmp_path / "LoquaciousSet"
    (folder / "train").mkdir(parents=True)
    ids = ["a", "b", "c"]
    table = pa.table({"ID": ids, "wav": [b"not decoded here"] * 3, "text": [f"say {i}" for i in ids]})
    pq.write_table(table, folder / "train" / "train-00000.parquet")
    source = open_source(DataSource.parse(f"loquacious,data_dir={folder}"), False, 0, shuffle=False, loop=False)
    assert [(entry.id.rsplit("|", 1)[1], entry.text) for entry in source] == [(i, f"say {i}") for i in ids]


# -- training --------------------------------------------------------------------------------------------------


@pytest.mark.slow  # whole processes or runs: out of the fast loop (-m 'not slow')
def test_overfits_keeps_frozen_parts_and_writes_a_usable_checkpoint(bases, speech, tmp_path):
    config = tiny_config(
        bases, tmp_path / "run", speech,
        experts=4, hidden_dim=256, max_steps=240, warmup_steps=10, lr_scheduler="constant_with_warmup",
        batch_size=4, grad_accum=1, log_steps=10, save_steps=120, keep_last=1, projector_dropout=0.0,
        mask_time_prob=0.0, cache_encoder=True, dev_data=[str(speech)], eval_steps=120, eval_loss_samples=4,
        eval_wer_samples=2, tensorboard=True,
    )  # fmt: skip
    trainer = Trainer(config, quiet=True)
    frozen = {
        name: tensor.clone()
        for part in ("encoder", "lm")
        for name, tensor in getattr(trainer.model, part).state_dict(prefix=f"{part}.").items()
    }
    try:
        result = trainer.run()
    finally:
        trainer.close()

    losses = train_losses(result.output_dir)
    assert losses[-1] < 0.3 * losses[0], losses
    after = {**trainer.model.encoder.state_dict(prefix="encoder."), **trainer.model.lm.state_dict(prefix="lm.")}
    assert frozen.keys() == after.keys()
    assert all(torch.equal(frozen[name], after[name]) for name in frozen), "a frozen weight changed"
    assert not any(p.requires_grad for part in (trainer.model.encoder, trainer.model.lm) for p in part.parameters())

    dev = [r for r in read_metrics(result.output_dir / "metrics.jsonl") if r["split"] == "dev"]
    assert [r["step"] for r in dev] == [120, 240] and all(r["wer"] is not None for r in dev)
    assert dev[-1]["loss"] < dev[0]["loss"]
    assert [p.name for p in result.output_dir.glob("checkpoint-*")] == ["checkpoint-240"]  # keep_last=1
    assert result.skipped == dict.fromkeys(result.skipped, 0)
    if importlib.util.find_spec("matplotlib"):  # optional dependencies: their outputs when installed
        assert result.plot and result.plot.stat().st_size > 0
    if importlib.util.find_spec("tensorboard"):
        assert list((result.output_dir / "tensorboard").glob("events.out.tfevents.*"))

    loaded = load_model(str(result.final_model), device="cpu", dtype="float32")
    for name, tensor in trainer.model.projector.state_dict().items():
        assert torch.equal(loaded.projector.state_dict()[name], tensor), name
    saved = yaml.safe_load((result.final_model / "train_config.yaml").read_text())
    assert saved["max_steps"] == 240 and saved["train_data"] == [{"path": str(speech), "weight": 1.0}]
    wav = speech.parent / "u0.wav"
    transcribed = runner.invoke(
        app, ["transcribe", str(wav), "--no-vad", "-m", str(result.final_model), "-o", "-", "-q"]
    )
    assert transcribed.exit_code == 0, transcribed.output

    # --init-from continues from the trained projector (its shape wins over the flags): low loss from step 1
    continued = tiny_config(
        bases, tmp_path / "again", speech, init_from=str(result.final_model), max_steps=1, batch_size=4, grad_accum=1
    )
    again = train(continued, quiet=True)
    assert train_losses(again.output_dir)[0] < 0.5 * losses[0]
    assert yaml.safe_load((again.final_model / "train_config.yaml").read_text())["hidden_dim"] == 256


def ctc_greedy(model, frames: torch.Tensor) -> list[int]:
    """Best path of CTC over [blank; every token embedding], repeats merged, blanks dropped."""
    embeddings = model.lm.get_input_embeddings().weight
    best = (frames @ torch.cat([loss_module.ctc_blank(embeddings)[None], embeddings]).T).argmax(-1).tolist()
    return [b - 1 for i, b in enumerate(best) if b != 0 and (i == 0 or b != best[i - 1])]


def test_ctc_only_run_puts_the_words_in_the_projector_frames(bases, speech, tmp_path, monkeypatch):
    """lm_weight=0, ctc_weight=1: no LM pass, and the projector learns to emit each word's own LM embedding in
    order (CTC's best path over ALL the LM's tokens spells the transcript's tokens), though the loss only scores
    the first CTC_VOCABULARY ids and the batch's own tokens."""
    monkeypatch.setattr(loss_module, "CTC_VOCABULARY", 64)  # the tiny LM has 374: the subset path is taken
    config = tiny_config(
        bases, tmp_path / "run", speech, experts=2, hidden_dim=128, max_steps=150, warmup_steps=5,
        lr_scheduler="constant_with_warmup", batch_size=4, grad_accum=1, log_steps=10, projector_dropout=0.0,
        mask_time_prob=0.0, cache_encoder=True, lm_weight=0.0, ctc_weight=1.0,
    )  # fmt: skip
    trainer = Trainer(config, quiet=True)
    calls = []
    trainer.model.lm.register_forward_hook(lambda *args: calls.append(1))
    try:
        result = trainer.run()
    finally:
        trainer.close()
    assert not calls, "a CTC-only run must not run the LM"
    records = [r for r in read_metrics(result.output_dir / "metrics.jsonl") if r["split"] == "train"]
    assert records[-1]["ctc_loss"] < 0.2 * records[0]["ctc_loss"], [r["ctc_loss"] for r in records]
    assert records[-1]["loss"] == records[-1]["ctc_loss"]  # "loss" is what the run optimises

    model = trainer.model
    model.projector.eval()
    source = open_source(DataSource(str(speech)), False, 0, shuffle=False, loop=False)
    examples = list(ExampleStream([source], [1.0], 0, Preparer(model, 30 * 16_000, True, None)))
    with torch.no_grad():
        frames = project(model, model.projector, collate(examples, model.feature_extractor))
        decoded = [ctc_greedy(model, f) for f in frames]
        summed = ctc_loss(model, frames, [e.targets for e in examples])
    assert decoded == [e.targets[:-1] for e in examples]  # without the end of turn, which is never said
    assert 0 <= summed.item() < 0.2 * records[0]["ctc_loss"] * sum(len(e.targets) for e in examples)


def test_loss_weights_are_checked(bases, speech, tmp_path):
    with pytest.raises(TinyAudioError, match="cannot both be 0"):
        tiny_config(bases, tmp_path, speech, lm_weight=0.0, ctc_weight=0.0).validate()
    with pytest.raises(TinyAudioError, match="must not be negative"):
        tiny_config(bases, tmp_path, speech, ctc_weight=-1.0).validate()


def test_resumed_run_equals_uninterrupted_run(bases, noisy_speech, tmp_path):
    """SpecAugment, dropout, accumulation and skipped bad data all draw on state a checkpoint must restore."""
    values = {"max_audio_seconds": SHORT_LIMIT_SECONDS, "projector_dropout": 0.3, "mask_time_prob": 0.3}
    whole = train(tiny_config(bases, tmp_path / "whole", noisy_speech, **values), quiet=True)
    assert whole.step == 6 and not whole.stopped_early and sum(whole.skipped.values()) > 0

    split_dir = tmp_path / "split"
    first = train(tiny_config(bases, split_dir, noisy_speech, **values), quiet=True, stop_after_steps=3)
    assert first.stopped_early and first.step == 3 and (first.last_checkpoint / STATE_NAME).is_file()
    result = runner.invoke(app, ["train", "--resume", "-o", str(split_dir), "-q"])  # the saved settings
    assert result.exit_code == 0, result.output

    assert train_losses(split_dir) == pytest.approx(train_losses(whole.output_dir), rel=1e-6)
    ours, theirs = projector_weights(split_dir / "final"), projector_weights(whole.output_dir / "final")
    for name, tensor in theirs.items():
        torch.testing.assert_close(ours[name], tensor, rtol=1e-6, atol=1e-8)
    state = torch.load(split_dir / "checkpoint-6" / STATE_NAME, weights_only=True)
    assert state["step"] == 6 and state["samples_seen"] == 6 * 4


@pytest.mark.slow  # several processes or a long decode: out of the fast loop
def test_two_process_ddp_equals_one_process(bases, speech, tmp_path):
    """torchrun, 2 gloo ranks × batch 1 × 2 accumulation = 1 process × batch 2 × 2 accumulation, same data."""
    values = {"max_steps": 3, "projector_dropout": 0.0, "mask_time_prob": 0.0, "warmup_steps": 0}
    # Adam divides by √v + ε: with the default ε a near-zero gradient's last-bit difference (sums in another
    # order) becomes a full-size step; a larger ε keeps the comparison about the math, not rounding
    values |= {"adam_epsilon": 1e-3}
    values |= {"dev_data": [str(speech)], "eval_loss_samples": 4, "eval_wer_samples": 3}  # a final eval
    single = train(tiny_config(bases, tmp_path / "single", speech, batch_size=2, **values), quiet=True)

    ddp_dir = tmp_path / "ddp"
    config_file = tmp_path / "ddp.yaml"
    config_file.write_text(tiny_config(bases, ddp_dir, speech, batch_size=1, **values).to_yaml())
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "tinyaudio_cli", "train", "-c", str(config_file), "-q"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]

    assert train_losses(ddp_dir) == pytest.approx(train_losses(single.output_dir), rel=1e-5)
    dev = [
        [r for r in read_metrics(run / "metrics.jsonl") if r["split"] == "dev"] for run in (ddp_dir, single.output_dir)
    ]
    assert dev[0][0]["loss"] == pytest.approx(dev[1][0]["loss"], rel=1e-4)  # dev set split across ranks, summed
    assert dev[0][0]["samples"] == 3 and dev[0][0]["wer"] == pytest.approx(dev[1][0]["wer"])
    ours, theirs = projector_weights(ddp_dir / "final"), projector_weights(single.output_dir / "final")
    for name, tensor in theirs.items():
        torch.testing.assert_close(ours[name], tensor, rtol=1e-4, atol=1e-5)
    state = torch.load(ddp_dir / "checkpoint-3" / STATE_NAME, weights_only=True)
    assert state["world_size"] == 2 and len(state["ranks"]) == 2 and state["samples_seen"] == 3 * 4
