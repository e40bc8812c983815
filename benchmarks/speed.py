"""Speed benchmark: the reference way of transcribing vs tinyaudio's engine, same weights, same audio.

The reference way (reimplemented from the model-core facts, no outside code): one clip at a time,
every clip padded to 30 s, all 375 projector frames sent to the LM, HF `generate` greedy. Long
recordings are cut into consecutive 30 s windows. tinyaudio: its defaults (VAD, a window per speech
region, the encoder over each clip's audio and some padding, batches formed by length, the trimmed
attention mode, its own greedy loop). Clips run interleaved, 16 at a time through each side; the
recording runs twice on each side, alternating, and each side's faster run counts: ratios hold on a
busy machine.

Random weights never say `<|im_end|>`, so both generate exactly as many tokens as real speech of that
length would give (SPEECH_TOKENS_PER_SECOND of speech: per clip, per 30 s window of the reference way by
the speech in it, per tinyaudio segment by its length), with no early stop on either side: the figures
are the stack's cost for the same text, not a particular model's verbosity. The report counts the tokens
each side generated. Transcripts are compared where the two are specified to agree: tinyaudio's
`reference` mode must give the reference way's tokens.

Then, when the shipped model's bases are found (TINYAUDIO_BASES or the Hub cache), the real part
(benchmarks/heldout.py): `tiny-en` on held-out speech, the reference way, `--reference-mode`, whole-window
encoding and tinyaudio's defaults next to faster-whisper (int8 and float32, greedy) on the same clips and
recording: RTFx, WER, peak memory, encoder windows per minute of speech.

    python benchmarks/speed.py --quick --json out.json            # CPU, tiny test models + tiny-en, < 10 min
    python benchmarks/speed.py --real-size --device cuda           # GPU: large-v3-turbo + SmolLM3-3B sizes
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from heldout import print_heldout, run_heldout  # noqa: E402

from tinyaudio_cli.audio.media import SAMPLE_RATE, WINDOW_SAMPLES, load_audio  # noqa: E402
from tinyaudio_cli.inference import transcribe as transcribe_module  # noqa: E402
from tinyaudio_cli.inference.transcribe import TranscribeOptions, transcribe_files  # noqa: E402
from tinyaudio_cli.model import TinyAudioConfig, create_model, load_model  # noqa: E402
from tinyaudio_cli.model.batching import auto_batch_size  # noqa: E402
from tinyaudio_cli.model.decoding import Timings  # noqa: E402
from tinyaudio_cli.model.loading import set_threads  # noqa: E402

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Speech recognition turns spoken words into written text.",
    "A small language model can listen when an audio encoder feeds it.",
    "Please remember to check the timestamps of every region.",
    "The meeting will start again after a short break.",
    "We measured the real time factor on a busy machine.",
    "Long recordings are cut into windows at the pauses.",
    "Nobody expected the results to arrive so quickly.",
    "Turn left at the second traffic light and keep going.",
    "Every window of audio is at most thirty seconds long.",
]
VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb-x-rp"]
# English speech runs at ~150 words a minute, ~1.3 LM tokens a word: the text a second of speech makes
SPEECH_TOKENS_PER_SECOND = 3.0
REAL_SIZE_VOCAB = 128256  # SmolLM3's
INTERLEAVE_CLIPS = 16  # clips each side runs before the other's turn
FULL_WINDOW_FRAMES = 3000  # mel frames of a 30 s window: encoder work is counted in these


def speech_tokens(seconds: float) -> int:
    return max(1, math.ceil(SPEECH_TOKENS_PER_SECOND * seconds))


# -- audio ---------------------------------------------------------------------------------------------


def speak(text: str, voice: str, speed: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "raw.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", raw, text], check=True)
        return load_audio(raw)


def utterances(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    return [
        speak(SENTENCES[i % len(SENTENCES)], VOICES[i % len(VOICES)], int(rng.integers(130, 190))) for i in range(count)
    ]


def short_clips(pool: list[np.ndarray], rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """LoquaciousSet-like clips of 2-20 s: utterances joined with short gaps."""
    clips = []
    for _ in range(count):
        target, parts, length = rng.uniform(2, 20), [], 0
        while length < target * SAMPLE_RATE:
            part = pool[int(rng.integers(len(pool)))]
            parts += [part, np.zeros(int(rng.uniform(0.1, 0.5) * SAMPLE_RATE), np.float32)]
            length += len(parts[-2]) + len(parts[-1])
        clips.append(np.concatenate(parts)[: int(target * SAMPLE_RATE)])
    return clips


def long_recording(
    pool: list[np.ndarray], rng: np.random.Generator, minutes: float, path: Path
) -> tuple[Path, list[tuple[int, int]]]:
    """Speech with pauses of 0.3-4 s and, now and then, a long silence; and where the speech is (samples)."""
    parts, length, speech = [], 0, []
    while length < minutes * 60 * SAMPLE_RATE:
        pause = rng.uniform(8, 20) if rng.random() < 0.05 else rng.uniform(0.3, 4)
        utterance = pool[int(rng.integers(len(pool)))]
        speech.append((length, length + len(utterance)))
        parts += [utterance, np.zeros(int(pause * SAMPLE_RATE), np.float32)]
        length += len(parts[-2]) + len(parts[-1])
    sf.write(path, np.concatenate(parts), SAMPLE_RATE, subtype="PCM_16")
    return path, speech


def window_tokens(speech: list[tuple[int, int]], windows: int) -> list[int]:
    """Tokens for each consecutive 30 s window: as many as the speech inside it makes."""
    seconds = [0.0] * windows
    for start, end in speech:
        for index in range(start // WINDOW_SAMPLES, min(windows, -(-end // WINDOW_SAMPLES))):
            low, high = index * WINDOW_SAMPLES, (index + 1) * WINDOW_SAMPLES
            seconds[index] += max(0, min(end, high) - max(start, low)) / SAMPLE_RATE
    return [speech_tokens(s) for s in seconds]


# -- memory -------------------------------------------------------------------------------------------


class PeakMemory:
    """Peak resident memory (CPU) or peak allocated memory (CUDA) while the block runs."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss())

    def __exit__(self, *_: object) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, rss())


def rss() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS"))


# -- the two ways --------------------------------------------------------------------------------------


@dataclass
class Run:
    audio_seconds: float
    wall_seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float = 0.0
    tokens: list[list[int]] = field(default_factory=list)
    mel_frames: int = 0  # what tinyaudio's encoder read, all passes together

    @property
    def rtfx(self) -> float:
        return self.audio_seconds / self.wall_seconds


@torch.inference_mode()
def reference_way(model, clips: list[np.ndarray] | Path, tokens: list[int], forced: bool) -> Run:
    """One clip at a time, padded to 30 s, all frames to the LM, HF generate. Given a file, it is decoded
    (timed, as tinyaudio's decoding is) and cut into consecutive 30 s windows. `tokens[i]`: clip or window
    i's limit; `forced`: generate exactly that many (random weights never stop by themselves)."""
    timings = Timings()
    started = time.perf_counter()
    if isinstance(clips, Path):
        with timings.stage("audio_decoding", model.device):
            audio = load_audio(clips)
            clips = [audio[i : i + WINDOW_SAMPLES] for i in range(0, len(audio), WINDOW_SAMPLES)]
    run = Run(sum(len(c) for c in clips) / SAMPLE_RATE)
    prompt = [*model.prompt.prefix, model.audio_token_id, *model.prompt.suffix]
    ids = torch.tensor([prompt], device=model.device)
    split = len(model.prompt.prefix)
    with PeakMemory(model.device) as memory:
        for clip, limit in zip(clips, tokens, strict=True):
            with timings.stage("features", model.device):
                features = model.feature_extractor(clip, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
                features = features.to(model.device, model.dtype)
            with timings.stage("encoder", model.device):
                frames = model.projector(model.encoder(features).last_hidden_state)
            with timings.stage("lm_generate", model.device):
                text = model.lm.get_input_embeddings()(ids)
                merged = torch.cat([text[:, :split], frames.to(text.dtype), text[:, split + 1 :]], dim=1)
                out = model.lm.generate(
                    inputs_embeds=merged,
                    attention_mask=torch.ones(merged.shape[:2], dtype=torch.long, device=model.device),
                    max_new_tokens=limit,
                    min_new_tokens=limit if forced else 0,
                    do_sample=False,
                    num_beams=1,
                    eos_token_id=model.stop_ids,
                    pad_token_id=model.stop_ids[0],
                )
            run.tokens.append(out[0].tolist())
        run.wall_seconds = time.perf_counter() - started
    run.stages, run.peak_memory_mb = dict(timings), memory.peak / 2**20
    return run


def tinyaudio_clips(
    model,
    clips: list[np.ndarray],
    tokens: list[int] | None,
    batch_size: int,
    forced: bool,
    mode: str = "trimmed",
    pack: bool = False,
) -> Run:
    run = Run(sum(len(c) for c in clips) / SAMPLE_RATE)
    model.timings = Timings()
    with PeakMemory(model.device) as memory:
        started = time.perf_counter()
        # as `eval` runs it, loops stop early, except when every row must make its exact count of tokens
        stop_loops = mode == "trimmed" and not forced
        results = model.transcribe(
            clips, mode=mode, batch_size=batch_size, max_new_tokens=tokens, pack=pack, stop_loops=stop_loops
        )
        run.wall_seconds = time.perf_counter() - started
    run.tokens = [r.token_ids for r in results]
    run.stages, run.peak_memory_mb, model.timings = dict(model.timings), memory.peak / 2**20, None
    return run


def window_budget(model, path: Path, reference_windows: int) -> dict[str, float]:
    """Encoder windows spent per minute of speech: tinyaudio's default (a window per speech region), with
    `--pack`, and the reference way's one window per 30 s of file."""
    from tinyaudio_cli.inference.transcribe import pack_regions, speech_windows

    vad_windows = list(speech_windows(path, TranscribeOptions(), lambda _: None))
    packed = list(pack_regions(0, vad_windows, model.samples_per_token))
    alone = list(pack_regions(0, vad_windows, model.samples_per_token, pack=False))
    speech_minutes = sum(p.length for w in packed for p in w.placements) / SAMPLE_RATE / 60
    return {
        "speech_minutes": round(speech_minutes, 2),
        "tinyaudio_windows_per_speech_minute": round(len(alone) / speech_minutes, 2),
        "tinyaudio_packed_windows_per_speech_minute": round(len(packed) / speech_minutes, 2),
        "reference_windows_per_speech_minute": round(reference_windows / speech_minutes, 2),
    }


def merge(total: Run, part: Run) -> None:
    """Add a chunk's run to the workload's."""
    total.audio_seconds += part.audio_seconds
    total.wall_seconds += part.wall_seconds
    for stage, seconds in part.stages.items():
        total.stages[stage] = total.stages.get(stage, 0.0) + seconds
    total.peak_memory_mb = max(total.peak_memory_mb, part.peak_memory_mb)
    total.tokens += part.tokens


def tinyaudio_file(model, path: Path, batch_size: int, audio_seconds: float, forced: bool) -> Run:
    """transcribe_files with its defaults; `forced`: every segment's budget is what its length of speech makes
    (random weights use it all), and no early stop."""
    run = Run(audio_seconds)
    model.timings = Timings()
    options = TranscribeOptions(batch_size=batch_size, stop_loops=not forced)
    default_budget = transcribe_module.token_budget
    if forced:
        transcribe_module.token_budget = lambda _model, seconds, _options: speech_tokens(seconds)

    def count(_module, args, _out) -> None:
        run.mel_frames += args[0].shape[0] * args[0].shape[-1]

    hook = model.encoder.conv1.register_forward_hook(count)
    try:
        with PeakMemory(model.device) as memory:
            started = time.perf_counter()
            (result,) = transcribe_files(model, [path], options)
            run.wall_seconds = time.perf_counter() - started
    finally:
        transcribe_module.token_budget = default_budget
        hook.remove()
    run.tokens = [s.tokens for s in result.transcript.segments]
    run.stages, run.peak_memory_mb, model.timings = dict(model.timings), memory.peak / 2**20, None
    return run


# -- models --------------------------------------------------------------------------------------------


def tiny_model(folder: Path, device: str):
    from tinystack import build_checkpoint

    return load_model(str(build_checkpoint(folder, "smollm3")), device=device)


def real_size_model(folder: Path, device: str):
    """Random weights with whisper-large-v3-turbo's encoder and SmolLM3-3B's exact dimensions."""
    from tinystack import build_tokenizer
    from transformers import SmolLM3Config, SmolLM3ForCausalLM, WhisperConfig, WhisperFeatureExtractor, WhisperModel

    whisper = WhisperConfig(
        d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120,
        decoder_layers=1, decoder_attention_heads=20, decoder_ffn_dim=5120, num_mel_bins=128,
        vocab_size=51866, pad_token_id=50256, bos_token_id=50257, eos_token_id=50257, decoder_start_token_id=50258,
    )  # fmt: skip
    WhisperModel(whisper).half().save_pretrained(folder / "whisper")
    WhisperFeatureExtractor(feature_size=128).save_pretrained(folder / "whisper")
    tokenizer = build_tokenizer(folder / "lm")
    # every id the random LM says must decode to text: transcribe drops segments whose text is empty
    tokenizer.add_tokens([f"w{index}" for index in range(len(tokenizer), REAL_SIZE_VOCAB)])
    tokenizer.save_pretrained(folder / "lm")
    lm = SmolLM3Config(
        vocab_size=REAL_SIZE_VOCAB, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
        num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=65536, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    SmolLM3ForCausalLM(lm).to(torch.bfloat16).save_pretrained(folder / "lm")
    config = TinyAudioConfig(audio_model_id=str(folder / "whisper"), text_model_id=str(folder / "lm"))
    return create_model(config, device=device)


# -- report --------------------------------------------------------------------------------------------


def workload_report(reference: Run, engine: Run, agree: bool | None) -> dict:
    def shares(run: Run) -> dict[str, float]:
        stages = dict(run.stages)
        stages["other (audio decoding, VAD, Python)"] = max(0.0, run.wall_seconds - sum(stages.values()))
        return {name: round(seconds / run.wall_seconds, 3) for name, seconds in stages.items()}

    return {
        "audio_seconds": round(engine.audio_seconds, 1),
        "reference_wall_seconds": round(reference.wall_seconds, 2),
        "tinyaudio_wall_seconds": round(engine.wall_seconds, 2),
        "reference_rtfx": round(reference.rtfx, 1),
        "tinyaudio_rtfx": round(engine.rtfx, 1),
        "speedup": round(engine.rtfx / reference.rtfx, 1),
        "reference_tokens_generated": sum(len(t) for t in reference.tokens),
        "tinyaudio_tokens_generated": sum(len(t) for t in engine.tokens),
        "reference_time_shares": shares(reference),
        "tinyaudio_time_shares": shares(engine),
        "reference_peak_memory_mb": round(reference.peak_memory_mb),
        "tinyaudio_peak_memory_mb": round(engine.peak_memory_mb),
        "transcripts_agree_in_reference_mode": agree,
    }


def print_report(report: dict) -> None:
    print(f"\nmachine: {report['machine']}")
    for name, w in report["workloads"].items():
        print(f"\n== {name}: {w['audio_seconds']:.0f} s of audio")
        print(
            f"   reference way  {w['reference_wall_seconds']:8.2f} s   RTFx {w['reference_rtfx']:8.1f}"
            f"   peak {w['reference_peak_memory_mb']} MB"
        )
        print(
            f"   tinyaudio      {w['tinyaudio_wall_seconds']:8.2f} s   RTFx {w['tinyaudio_rtfx']:8.1f}"
            f"   peak {w['tinyaudio_peak_memory_mb']} MB"
        )
        print(
            f"   tokens generated: reference {w['reference_tokens_generated']}, "
            f"tinyaudio {w['tinyaudio_tokens_generated']}"
        )
        print(
            f"   speed-up {w['speedup']}x; transcripts agree in reference mode: "
            f"{w['transcripts_agree_in_reference_mode']}"
        )
        if "speech_minutes" in w:
            print(
                f"   encoder windows per minute of speech: reference {w['reference_windows_per_speech_minute']}, "
                f"tinyaudio {w['tinyaudio_windows_per_speech_minute']} (as encoder work, in 30 s windows' worth of "
                f"frames: {w['tinyaudio_encoder_work_windows_per_speech_minute']}), with --pack "
                f"{w['tinyaudio_packed_windows_per_speech_minute']} ({w['speech_minutes']} min of speech)"
            )
        for who in ("reference", "tinyaudio"):
            parts = ", ".join(f"{k} {v:.0%}" for k, v in w[f"{who}_time_shares"].items())
            print(f"   {who} time: {parts}")


def goal(report: dict) -> list[str]:
    lines = [
        f"{name}: {report['workloads'][name]['speedup']}x the reference way"
        for name in ("short_clips", "long_recording")
    ]
    for name, part in report.get("heldout", {}).items():
        if isinstance(part, dict) and "systems" in part:
            rows = part["systems"]
            default, reference = rows["tinyaudio default"], rows["tinyaudio --reference-mode"]
            speedup = rows["reference way"]["wall_seconds"] / default["wall_seconds"]
            lines.append(
                f"{name} (shipped model): {speedup:.1f}x the reference way; WER {default['wer']:.2f} default, "
                f"{reference['wer']:.2f} --reference-mode ({default['wer'] - reference['wer']:+.2f} points)"
            )
    return lines


def real_part(args: argparse.Namespace, work: Path) -> dict | None:
    """The shipped model on held-out speech next to faster-whisper; None (with a line) when its bases are absent."""
    from tinyaudio_cli.errors import TinyAudioError

    try:
        model = load_model(args.heldout_model, device=args.device)
    except TinyAudioError as error:
        print(f"\nno held-out part: {args.heldout_model} does not load ({error.message})")
        return None
    clips = args.heldout_clips or (48 if args.quick else 150)
    minutes = args.heldout_minutes or (3.0 if args.quick else 10.0)
    return run_heldout(model, reference_way, work, clips, minutes, args.peer_model, args.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer clips: a CPU run under 5 minutes")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--real-size", action="store_true", help="random weights at the published model's sizes")
    parser.add_argument("--model", help="a real checkpoint instead of random weights")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None, help="default: tinyaudio's (auto_batch_size)")
    parser.add_argument("--clips", type=int, default=None)
    parser.add_argument("--long-minutes", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core)")
    parser.add_argument("--heldout-model", default="tiny-en", help="the real checkpoint for the held-out part")
    parser.add_argument("--heldout-clips", type=int, default=None, help="held-out sentences (default 48, 150)")
    parser.add_argument("--heldout-minutes", type=float, default=None, help="held-out recording (default 3, 10)")
    parser.add_argument("--peer-model", type=Path, help="faster-whisper's CTranslate2 tiny.en folder")
    parser.add_argument("--no-heldout", action="store_true", help="skip the real-model part")
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="tinyaudio-bench-"))

    if args.model:
        model = load_model(args.model, device=args.device)
    elif args.real_size:
        model = real_size_model(work, args.device)
    else:
        model = tiny_model(work, args.device)
    batch_size = args.batch_size or auto_batch_size(model)  # tinyaudio's default
    count = args.clips or (48 if args.quick else 200)

    pool = utterances(rng, 24)
    clips = short_clips(pool, rng, count)
    recording, speech = long_recording(pool, rng, args.long_minutes, work / "long.wav")
    recording_audio = load_audio(recording)
    windows = -(-len(recording_audio) // WINDOW_SAMPLES)
    tinyaudio_clips(model, clips[:2], [2, 2], 2, True)  # warm-up: first-call allocations and kernel choices

    # random weights: as many tokens as the speech makes, on both sides; a real model: each stops by itself
    # within its usual limit (the config's for the reference way, tinyaudio's per-segment budget)
    forced = not args.model
    clip_tokens = [speech_tokens(len(c) / SAMPLE_RATE) if forced else model.config.max_new_tokens for c in clips]
    workloads = {}
    # interleaved a chunk of clips at a time, so that a busy machine slows every side alike
    reference, engine, packed = Run(0.0), Run(0.0), Run(0.0)
    for start in range(0, len(clips), INTERLEAVE_CLIPS):
        part, limits = clips[start : start + INTERLEAVE_CLIPS], clip_tokens[start : start + INTERLEAVE_CLIPS]
        merge(reference, reference_way(model, part, limits, forced))
        merge(engine, tinyaudio_clips(model, part, limits if forced else None, batch_size, forced))
        merge(packed, tinyaudio_clips(model, part, limits if forced else None, batch_size, forced, pack=True))
    check = tinyaudio_clips(model, clips, clip_tokens, batch_size, forced, mode="reference")
    workloads["short_clips"] = workload_report(reference, engine, check.tokens == reference.tokens)
    workloads["short_clips_packed"] = workload_report(reference, packed, None)
    long_tokens = window_tokens(speech, windows) if forced else [model.config.max_new_tokens] * windows
    # one file cannot be cut up: each side twice, alternating, and the faster of its two runs
    runs: dict[str, list[Run]] = {"reference": [], "tinyaudio": []}
    for _ in range(2):
        runs["reference"].append(reference_way(model, recording, long_tokens, forced))
        runs["tinyaudio"].append(
            tinyaudio_file(model, recording, batch_size, len(recording_audio) / SAMPLE_RATE, forced)
        )
    reference, engine = (min(runs[side], key=lambda run: run.wall_seconds) for side in ("reference", "tinyaudio"))
    budget = window_budget(model, recording, windows)
    budget["tinyaudio_encoder_work_windows_per_speech_minute"] = round(
        engine.mel_frames / FULL_WINDOW_FRAMES / budget["speech_minutes"], 2
    )
    workloads["long_recording"] = workload_report(reference, engine, None) | budget

    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        + (torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else "CPU only"),
        "device": str(model.device),
        "dtype": str(model.dtype),
        "model": args.model or ("random, real size" if args.real_size else "tiny test model"),
        "batch_size": batch_size,
        "tokens": f"{SPEECH_TOKENS_PER_SECOND:g} per second of speech, forced" if forced else "until <|im_end|>",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "workloads": workloads,
    }
    print_report(report)
    if not args.no_heldout and (heldout := real_part(args, work)) is not None:
        report["heldout"] = heldout
        print_heldout(heldout)
    report["goal"] = goal(report)
    print("\n== issue 19's goal: default >= 10x the reference way; held-out WER within 0.5 points of reference mode")
    for line in report["goal"]:
        print(f"   {line}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
