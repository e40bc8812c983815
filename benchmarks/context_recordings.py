"""WER and speed of the shipped checkpoint's encoder contexts on held-out recordings, through `transcribe`.

context_wer.py scores whole clips; a recording goes through the file pipeline instead (VAD, one encoder window
per speech region), where a region's encoder context ends at the region. Each recording is a few minutes of
held-out espeak-ng template sentences with pauses of 0.3-3 s (heldout.py's recording, one seed each, seeds
speed.py does not use), transcribed once per context, and scored with eval's normaliser over all recordings.

    python benchmarks/context_recordings.py -m tiny-en --recordings 9 --json recordings.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import heldout

from tinyaudio_cli.evaluation.scoring import Pair, score_corpus
from tinyaudio_cli.inference.transcribe import TranscribeOptions, transcribe_files
from tinyaudio_cli.model import load_model
from tinyaudio_cli.model.context import context_padding

FIRST_SEED = 4711  # then 4712, ...; speed.py's own recording draws its sentences after 48 clips of 4711


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", default="tiny-en")
    parser.add_argument("--recordings", type=int, default=9)
    parser.add_argument("--minutes", type=float, default=3.0, help="length of each recording")
    parser.add_argument("--contexts", nargs="+", default=["full", "audio"], help="--encoder-context values")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        recordings = []
        for seed in range(FIRST_SEED, FIRST_SEED + args.recordings):
            heldout.HELDOUT_SEED = seed
            _, made, text, speech = heldout.heldout_speech(0, args.minutes, work)
            path = made.rename(work / f"recording-{seed}.wav")
            recordings.append((path, text, speech))
        model = load_model(args.model, device="cpu")
        mel_frames = [0]
        model.encoder.conv1.register_forward_hook(
            lambda _m, inputs, _o: mel_frames.__setitem__(0, mel_frames[0] + inputs[0].shape[0] * inputs[0].shape[-1])
        )
        speech_minutes = sum(speech for _, _, speech in recordings) / 60
        report: dict[str, dict] = {}
        for context in args.contexts:
            model.context_padding = context_padding(context)
            mel_frames[0], seconds, pairs, per_recording = 0, 0.0, [], []
            for path, text, _ in recordings:
                started = time.perf_counter()
                (result,) = transcribe_files(model, [path], TranscribeOptions())
                seconds += time.perf_counter() - started
                pair = Pair(path.stem, text, " ".join(segment.text for segment in result.transcript.segments))
                pairs.append(pair)
                per_recording.append(round(100 * score_corpus([pair]).wer, 2))
            report[context] = {
                "wer": round(100 * score_corpus(pairs).wer, 2),
                "wer_per_recording": per_recording,
                "wall_seconds": round(seconds, 1),
                "encoder_windows_per_speech_minute": round(mel_frames[0] / 3000 / speech_minutes, 2),
            }
            print(context, report[context], flush=True)
    if args.json:
        args.json.write_text(
            json.dumps({"model": args.model, "speech_minutes": round(speech_minutes, 2), "contexts": report}, indent=1)
        )


if __name__ == "__main__":
    main()
