"""Segment confidence on real media (espeak-ng speech, ffmpeg-made music) with a tiny random model: the
avg_logprob and VAD speech probability of every segment, and `--min-confidence` marking what it drops.

The model's words are gibberish (random weights); the VAD is the real Silero, so it decides what is speech.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import srt
import torch
import webvtt
from conftest import SR, compose, espeak, run_ffmpeg
from tinystack import build_checkpoint
from typer.testing import CliRunner

from tinyaudio_cli.audio.media import load_audio
from tinyaudio_cli.cli import app
from tinyaudio_cli.inference.confidence import DEFAULT_MIN_CONFIDENCE
from tinyaudio_cli.inference.transcribe import TranscribeOptions, transcribe
from tinyaudio_cli.model import load_model

# A major chord pulsing three times a second: music that Silero lets through as (unsure) speech
PULSING_CHORD = "0.12*(1+0.9*sin(2*PI*3*t))*(sin(2*PI*220*t)+sin(2*PI*277.2*t)+sin(2*PI*329.6*t))"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("stack"), "smollm3")


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_model(str(checkpoint), device="cpu")


@pytest.fixture(scope="module")
def music(media_dir: Path) -> Path:
    """4 s of a pulsing chord, which Silero takes for speech for a moment (a mean probability near 0.33)."""
    path = media_dir / "pulsing_chord.wav"
    run_ffmpeg("-f", "lavfi", "-i", f"aevalsrc=exprs='{PULSING_CHORD}':s={SR}:d=4", "-c:a", "pcm_f32le", path)
    return path


@pytest.fixture(scope="module")
def speech_then_music(media_dir: Path, music: Path) -> Path:
    """An espeak sentence, a pause, then the chord: one segment of speech (Silero is sure of it, about 0.95),
    one of music (about 0.58: unsure, but over the default threshold)."""
    chord, _ = sf.read(music, dtype="float32")
    sentence = espeak(media_dir, "the weather will be fine tomorrow, said the old farmer")
    return compose(media_dir, "speech_then_music", [0.5, sentence, 2.5, chord, 0.5]).path


def run(checkpoint: Path, *args: str | Path):
    return CliRunner().invoke(app, ["transcribe", *map(str, args), "-m", str(checkpoint), "--max-new-tokens", "6"])


def test_segments_carry_avg_logprob_and_speech_probability(checkpoint, paused_speech, tmp_path):
    result = run(checkpoint, paused_speech.path, "--json", "-o", tmp_path / "vad", "-q")
    assert result.exit_code == 0, result.output
    segments = json.loads((tmp_path / "vad" / "paused.json").read_text())["segments"]
    assert len(segments) == len(paused_speech.spans)
    for segment in segments:
        assert isinstance(segment["avg_logprob"], float) and segment["avg_logprob"] <= 0
        assert 0.5 < segment["speech_probability"] <= 1  # espeak speech: Silero is sure of it
        assert "dropped" not in segment
    # without VAD nothing measured the speech: null, not a made-up number; the LM's own figure stays
    result = run(checkpoint, paused_speech.path, "--json", "--no-vad", "-o", tmp_path / "novad", "-q")
    assert result.exit_code == 0, result.output
    [segment] = json.loads((tmp_path / "novad" / "paused.json").read_text())["segments"]
    assert segment["speech_probability"] is None and segment["avg_logprob"] <= 0


def test_avg_logprob_is_the_mean_log_probability_of_the_tokens_in_one_full_pass(model, source_wav):
    """Teacher-force the segment's tokens through the LM in one pass (no cache, no decoding loop) and average
    their log-probabilities, the audio token excluded as decoding excludes it."""
    [segment] = transcribe(model, source_wav, TranscribeOptions(max_new_tokens=8)).segments
    audio = load_audio(source_wav)[round(segment.start * SR) : round(segment.end * SR)]
    with torch.inference_mode():
        projected = model.encode_audio([audio], "trimmed")[1][0]  # the encoder context transcribe uses
        first, last = model.frame_span(0, len(audio))
        embeds, mask, positions, lengths = model.build_inputs([projected[first:last]], "trimmed", [segment.tokens])
        logits = model.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits[0].float()
        logits[:, model.audio_token_id] = float("-inf")
        length, count = int(lengths[0]), len(segment.tokens)
        predicting = logits[length - count - 1 : length - 1].log_softmax(-1)  # position i predicts token i + 1
        expected = predicting[torch.arange(count), torch.tensor(segment.tokens)].mean().item()
    assert segment.avg_logprob == pytest.approx(expected, abs=2e-3)
    assert expected < 0


def test_music_alone_is_dropped_by_default(checkpoint, music, tmp_path):
    result = run(checkpoint, music, "--json", "--txt", "-o", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "pulsing_chord.json").read_text())
    [segment] = data["segments"]  # the VAD let a moment of it through, and the model wrote something
    assert segment["text"].strip() and segment["dropped"] is True
    assert segment["speech_probability"] < DEFAULT_MIN_CONFIDENCE
    assert (
        segment["drop_reason"] == f"speech probability {segment['speech_probability']:.2f} < {DEFAULT_MIN_CONFIDENCE:g}"
    )
    assert data["text"] == "" and (tmp_path / "pulsing_chord.txt").read_text() == ""


def test_music_is_dropped_from_text_and_subtitles_and_marked_in_json(checkpoint, speech_then_music, tmp_path):
    result = run(checkpoint, speech_then_music, "-f", "all", "--min-confidence", "0.75", "-o", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "speech_then_music.json").read_text())
    speech, music = data["segments"]  # the VAD let both through; the model wrote text for both
    assert speech["end"] < 4.5 < music["start"]
    assert "dropped" not in speech and speech["speech_probability"] >= 0.75
    assert music["dropped"] is True and music["speech_probability"] < 0.75
    assert music["drop_reason"].startswith("speech probability")
    assert data["text"] == speech["text"].strip()
    assert (tmp_path / "speech_then_music.txt").read_text().split() == speech["text"].split()
    cues = list(srt.parse((tmp_path / "speech_then_music.srt").read_text()))
    assert cues and all(cue.end.total_seconds() <= speech["end"] + 1e-3 for cue in cues)
    vtt = list(webvtt.read(tmp_path / "speech_then_music.vtt"))
    assert len(vtt) == len(cues) and all(cue.end_in_seconds <= speech["end"] + 1e-3 for cue in vtt)
    rows = (tmp_path / "speech_then_music.tsv").read_text().splitlines()[1:]
    assert [row.split("\t")[0] for row in rows] == [str(round(speech["start"] * 1000))]
    # 0 keeps everything
    result = run(checkpoint, speech_then_music, "--srt", "--json", "--min-confidence", "0", "-o", tmp_path / "all")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "all" / "speech_then_music.json").read_text())
    assert [s.get("dropped") for s in data["segments"]] == [None, None]
    cues = list(srt.parse((tmp_path / "all" / "speech_then_music.srt").read_text()))
    assert cues[-1].start.total_seconds() >= music["start"] - 1e-3


@pytest.mark.parametrize("value", ["abc", "1.5", "-0.1", "nan", ""])
def test_bad_min_confidence_is_one_usage_line(checkpoint, source_wav, value, tmp_path):
    result = run(checkpoint, source_wav, "--min-confidence", value, "-o", tmp_path)
    assert result.exit_code == 2, result.output
    [line] = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("error: --min-confidence must be")
    assert list(tmp_path.iterdir()) == []
    result = CliRunner().invoke(app, ["eval", "--folder", str(tmp_path), "--min-confidence", value])
    assert result.exit_code == 2 and result.output.startswith("error: --min-confidence must be"), result.output


def test_eval_leaves_dropped_segments_out_of_its_hypotheses(checkpoint, speech_then_music, tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "clip.wav").write_bytes(speech_then_music.read_bytes())
    (folder / "clip.txt").write_text("the weather will be fine tomorrow said the old farmer\n")
    hypotheses = {}
    for value in ("0", "0.75"):
        out = tmp_path / f"out-{value}"
        args = ["eval", "--folder", folder, "-m", checkpoint, "--vad", "--max-new-tokens", "6", "-o", out]
        result = CliRunner().invoke(app, [*map(str, args), "--min-confidence", value, "-q", "--warmup-batches", "0"])
        assert result.exit_code == 0, result.output
        [prediction] = [json.loads(line) for line in next(out.rglob("predictions.jsonl")).read_text().splitlines()]
        hypotheses[value] = prediction["hypothesis"]
    kept_all, kept_speech = hypotheses["0"].split(), hypotheses["0.75"].split()
    assert kept_speech and len(kept_speech) < len(kept_all) and kept_all[: len(kept_speech)] == kept_speech


def test_speech_probability_is_unaffected_by_the_rule(model, speech_then_music):
    """The rule marks; it measures nothing: the same segments and figures with and without it."""
    kept = transcribe(model, speech_then_music, TranscribeOptions(max_new_tokens=6, min_confidence=0.0))
    judged = transcribe(model, speech_then_music, TranscribeOptions(max_new_tokens=6, min_confidence=1.0))
    assert [(s.start, s.speech_probability, s.avg_logprob) for s in kept.segments] == [
        (s.start, s.speech_probability, s.avg_logprob) for s in judged.segments
    ]
    assert [s.dropped is not None for s in judged.segments] == [True, True]
    assert judged.text == "" and np.isclose(judged.duration, kept.duration)
