"""Evaluate one or more checkpoints on one sample source: WER, CER, errors by kind and duration, and speed.

Every model reads the same deterministic source from the start (the same ids in the same order, which
is checked), so nothing but the current chunk of audio is ever held in memory. Clips of up to 30 s go
to the model whole, batched by length; longer clips (every clip with `vad`) take `tinyaudio transcribe`'s
pipeline (Silero VAD, each speech region decoded from a window of its own). Every hypothesis gets the same
repetition guard and token budget as `transcribe`.

Speed follows the Open ASR Leaderboard: RTFx = seconds of audio / seconds of model work, where model
work is features, encoder, projector, LM decoding and detokenisation (plus VAD for long clips). Reading
the dataset, decoding audio and loading the model are timed separately, and warm-up batches not at all.
"""

from __future__ import annotations

import gc
import json
import platform
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from .. import __version__, distributed
from ..audio.media import SAMPLE_RATE, WINDOW_SAMPLES, WINDOW_SECONDS
from ..constants import DEFAULT_ENCODER_CONTEXT
from ..data.entries import EvalSample, SampleEntry, decoded, folder_entries, manifest_entries
from ..data.evaldata import DatasetSpec, hub_entries, resolve_dataset
from ..data.prefetch import Prefetched
from ..errors import TinyAudioError
from ..inference.confidence import DEFAULT_MIN_CONFIDENCE
from .scoring import BucketScore, CorpusScore, Pair, rtfx, score_corpus

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..inference.transcribe import TranscribeOptions
    from ..model import TinyAudioModel

Item = TypeVar("Item")
SourceKind = Literal["dataset", "manifest", "folder"]

BASELINE_PREFIX = "whisper:"  # a plain Whisper model with its own decoder, scored as a baseline
SUMMARY_NAME = "summary.json"
PREDICTIONS_NAME = "predictions.jsonl"
PLOT_NAME = "wer_by_duration.png"
COMPARISON_NAME = "comparison.json"
# Samples are read this many batches at a time and sorted by length inside, so batches pad little
# while memory stays bounded by one chunk of audio.
CHUNK_BATCHES = 8
CHUNK_MAX_SAMPLES = 1024  # a GPU's batches can be large: the chunk (held in memory) stays bounded
PREFETCH_CHUNKS = 2  # chunks read and decoded ahead of the model, on a background thread
THREAD = "tinyaudio-eval-data"
LONG_FORM_METHOD = "tinyaudio transcribe's pipeline: Silero VAD, each speech region in an encoder window of its own"
TIMING_NOTE = (
    "RTFx = audio seconds / model seconds; model seconds cover features, encoder, projector, LM decoding "
    "and detokenisation; data (dataset reading, audio decoding, on a background thread ahead of the model), "
    "model loading, warm-up and, for clips over 30 s, voice activity detection are excluded"
)
RANKS_NOTE = (
    "under torchrun each rank ran a share of the samples at once: audio_seconds is their sum, model, data and "
    "load seconds the longest rank's, so RTFx is the whole job's"
)
# A sample's weight when samples are shared between ranks: its length (as its header gives it) plus a fixed cost.
SAMPLE_OVERHEAD_SECONDS = 0.5
FAILED_NOTE = "samples whose audio could not be decoded are listed here and excluded from WER and CER"
VERSION_PACKAGES = ("torch", "transformers", "datasets", "jiwer", "whisper-normalizer")
SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
PLOT_SIZE = (7.0, 4.0)  # inches


# -- records ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSource:
    """Where samples come from; `samples()` gives the same samples in the same order on every call."""

    kind: SourceKind
    location: str  # registry name, Hub id or local path (dataset); the file (manifest); the folder
    data_dir: str | None = None  # a local copy of a registered dataset, read with the registry's columns
    config: str | None = None
    split: str | None = None
    audio_column: str | None = None
    text_column: str | None = None
    id_column: str | None = None
    max_samples: int | None = None
    shuffle: bool = False
    seed: int = 0

    def entries(self) -> Iterator[SampleEntry]:
        """The samples before decoding (see SampleEntry)."""
        if self.kind == "manifest":
            return manifest_entries(self.location, self.max_samples, self.shuffle, self.seed)
        if self.kind == "folder":
            return folder_entries(self.location, self.max_samples, self.shuffle, self.seed)
        return hub_entries(
            self._spec(), self.split, self.config, max_samples=self.max_samples, shuffle=self.shuffle, seed=self.seed
        )

    def samples(self) -> Iterator[EvalSample]:
        return decoded(self.entries())

    def describe(self) -> dict[str, str | None]:
        """Dataset, path, config and split as the summary names them (registry defaults filled in)."""
        if self.kind != "dataset":
            return {"dataset": Path(self.location).name, "path": self.location, "config": None, "split": None}
        spec = self._spec()
        return {
            "dataset": spec.name,
            "path": spec.path,
            "config": self.config or spec.default_config,
            "split": self.split or spec.default_split,
        }

    def _spec(self) -> DatasetSpec:
        return resolve_dataset(
            self.location,
            path=self.data_dir,
            audio_column=self.audio_column,
            text_column=self.text_column,
            id_column=self.id_column,
        )


@dataclass(frozen=True)
class EvalOptions:
    batch_size: int | None = None  # None: as many as fit (model.batching.auto_batch_size)
    device: str = "auto"
    dtype: str = "auto"
    mode: Literal["trimmed", "reference"] = "trimmed"
    max_new_tokens: int | None = None  # None: transcribe's budget from each clip's length
    normalize: bool = True
    warmup_batches: int = 1  # untimed runs of the first batch: CUDA kernels and allocators start cold
    pack: bool = False  # several short clips per encoder window (TinyAudioModel.transcribe(pack=True))
    vad: bool = False  # every clip through transcribe's pipeline (voice detection), not only those over 30 s
    # in that pipeline, segments under this VAD speech probability leave the hypothesis (inference.confidence)
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    encoder_context: str = DEFAULT_ENCODER_CONTEXT  # what the encoder runs over (model.context.context_padding)
    threads: int | None = None  # torch's CPU threads (model.loading.set_threads)


@dataclass(frozen=True)
class Hypothesis:
    text: str
    repetition_cut: bool
    long_form: bool


@dataclass
class SampleOutcome:
    """One sample as the run saw it: transcribed (`hypothesis`) or not (`error`)."""

    id: str
    reference: str
    duration: float
    hypothesis: Hypothesis | None = None
    error: str | None = None


@dataclass
class Timing:
    audio_seconds: float = 0.0
    model_seconds: float = 0.0
    data_seconds: float = 0.0
    load_seconds: float = 0.0

    @property
    def rtfx(self) -> float:
        return rtfx(self.audio_seconds, self.model_seconds)


@dataclass
class ModelResult:
    model: str
    device: str
    dtype: str
    score: CorpusScore
    outcomes: list[SampleOutcome]
    timing: Timing
    output_dir: Path | None = None
    ranks: int = 1  # torchrun processes that shared the samples
    batch_size: int = 0  # the batch size it ran at (the last, if running out of memory lowered it)
    weights_sha256: str | None = None  # of the checkpoint's safetensors (None for a Whisper baseline)

    @property
    def failed(self) -> list[SampleOutcome]:
        return [outcome for outcome in self.outcomes if outcome.error is not None]

    @property
    def long_form_samples(self) -> int:
        return sum(1 for o in self.outcomes if o.hypothesis is not None and o.hypothesis.long_form)

    @property
    def repetition_cuts(self) -> int:
        return sum(1 for o in self.outcomes if o.hypothesis is not None and o.hypothesis.repetition_cut)


@dataclass
class EvalReport:
    source: dict[str, str | None]
    options: EvalOptions
    results: list[ModelResult]
    date: str
    output_dir: Path | None = None


@dataclass(frozen=True)
class EvalProgress:
    """What a progress display needs; sent when a model starts loading, after every chunk, and at the end."""

    model: str
    model_index: int
    models: int
    stage: Literal["loading", "running", "done"]
    samples_done: int = 0
    samples_total: int | None = None  # a manifest's or folder's size, else --max-samples if given
    audio_seconds: float = 0.0
    model_seconds: float = 0.0


ProgressCallback = Callable[[EvalProgress], None]


# -- running ------------------------------------------------------------------------------------


def run_evaluation(
    models: Sequence[str],
    source: EvalSource,
    options: EvalOptions | None = None,
    output_dir: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
) -> EvalReport:
    """Evaluate every model on the same samples. With `output_dir`, each model's files are written as
    soon as it is done (a later failure keeps them), and a comparison at the end when there are several.

    Under torchrun each rank evaluates a share of the samples; every rank gets the merged report (one
    corpus score over all samples, in source order), and only rank 0 writes files."""
    if not models:
        raise TinyAudioError("No model to evaluate", hint="name one with --model")
    options = options or EvalOptions()
    described = source.describe()  # an unknown dataset name fails here, before any model loads
    rank_options = replace(options, device=distributed.init(options.device))
    try:
        return _run_evaluation(models, source, options, rank_options, described, output_dir, on_progress)
    finally:
        distributed.close()


def _run_evaluation(
    models: Sequence[str],
    source: EvalSource,
    options: EvalOptions,
    rank_options: EvalOptions,
    described: dict[str, str | None],
    output_dir: str | Path | None,
    on_progress: ProgressCallback | None,
) -> EvalReport:
    writes = distributed.is_main()
    report = EvalReport(described, options, [], datetime.now(timezone.utc).isoformat(timespec="seconds"))
    report.output_dir = Path(output_dir) if output_dir is not None else None
    slugs = model_slugs(models)
    for index, name in enumerate(models):
        result = evaluate_model(name, source, rank_options, on_progress, (index, len(models)))
        if report.results and [o.id for o in result.outcomes] != [o.id for o in report.results[0].outcomes]:
            raise TinyAudioError(
                f"The source gave {name} other samples than {report.results[0].model}",
                hint="use a deterministic source: a fixed --seed, or no --shuffle",
            )
        report.results.append(result)
        if report.output_dir is not None and writes:
            result.output_dir = report.output_dir / slugs[index] if len(models) > 1 else report.output_dir
            write_model_files(report, result)
    if report.output_dir is not None and writes and len(models) > 1:
        write_comparison(report, slugs)
    return report


def evaluate_model(
    name: str,
    source: EvalSource,
    options: EvalOptions,
    on_progress: ProgressCallback | None = None,
    position: tuple[int, int] = (0, 1),
) -> ModelResult:
    """One model over the whole source, chunk by chunk; scored once all hypotheses are in.
    `position` is (index, count) of this model in a comparison, for the progress display.

    Under torchrun (a process group joined, `distributed.init`) this rank runs its share of the samples,
    balanced by length as they stream past (every rank reads the whole source, so the shares agree, but
    decodes only its own: lengths come from headers), and every rank gets back all outcomes in source
    order, scored as one corpus."""
    from ..model import load_model
    from ..model.batching import auto_batch_size
    from ..model.context import context_padding
    from ..model.loading import set_threads, weights_sha256

    rank, ranks, _ = distributed.world()
    set_threads(options.threads)
    timing = Timing()
    outcomes: list[SampleOutcome] = []
    positions: list[int] = []  # each outcome's place in the source

    def report(stage: Literal["loading", "running", "done"]) -> None:
        if on_progress is not None:
            done, audio, spent = len(outcomes), timing.audio_seconds, timing.model_seconds
            total = known_total if ranks == 1 or stage == "done" else None  # a share's size is unknown
            on_progress(EvalProgress(name, *position, stage, done, total, audio, spent))

    def share(entries: Iterable[SampleEntry]) -> Iterator[EvalSample]:
        for index, entry in distributed.shard_stream(entries, _entry_weight, rank, ranks):
            positions.append(index)
            yield entry.load()  # only this rank's share is decoded

    started = time.perf_counter()
    entries = source.entries()
    # a manifest or folder knows its size; a streamed dataset only when --max-samples bounds it
    known_total = getattr(entries, "total", source.max_samples)
    head = list(islice(entries, 1))  # open the source first: a missing dataset should not cost a model load
    timing.data_seconds += time.perf_counter() - started
    report("loading")
    started = time.perf_counter()
    if name.startswith(BASELINE_PREFIX):
        from .baseline import WhisperBaseline

        model = WhisperBaseline(name, device=options.device, dtype=options.dtype)
    else:
        model = load_model(name, device=options.device, dtype=options.dtype)
        model.context_padding = context_padding(options.encoder_context)
    timing.load_seconds = time.perf_counter() - started
    batch_size = options.batch_size or auto_batch_size(model)
    options = replace(options, batch_size=batch_size)
    entries = chain(head, entries)
    samples = decoded(entries) if ranks == 1 else share(entries)
    with Prefetched(_chunks(_timed(samples, timing), _chunk_size(batch_size)), PREFETCH_CHUNKS, THREAD) as chunks:
        first = next(chunks, [])
        _warm_up(model, first, options)
        for chunk in chain([first], chunks):
            if chunk:  # a rank's share can be empty
                done, fitted = _run_chunk_fitting(name, model, chunk, options, timing)
                outcomes.extend(done)
                options = replace(options, batch_size=fitted)
                report("running")
    device, dtype = model.device, str(model.dtype).removeprefix("torch.")
    checkpoint_dir = getattr(model, "checkpoint_dir", None)
    fingerprint = weights_sha256(checkpoint_dir) if checkpoint_dir is not None else None
    del model  # the next model should not have to share the accelerator with this one
    _free_memory(device)
    if ranks > 1:
        outcomes, timing = _merge(distributed.gather((positions, outcomes, timing)))
    score = _score(outcomes, options.normalize)
    report("done")
    return ModelResult(
        name, str(device), dtype, score, outcomes, timing, ranks=ranks, batch_size=options.batch_size,
        weights_sha256=fingerprint,
    )  # fmt: skip


def _chunk_size(batch_size: int) -> int:
    """Samples read at a time: CHUNK_BATCHES batches, at most CHUNK_MAX_SAMPLES unless a batch is larger."""
    return max(2 * batch_size, min(CHUNK_BATCHES * batch_size, CHUNK_MAX_SAMPLES))


def _run_chunk_fitting(
    name: str, model: TinyAudioModel, chunk: list[EvalSample], options: EvalOptions, timing: Timing
) -> tuple[list[SampleOutcome], int]:
    """_run_chunk at the largest batch size up to options.batch_size that fits in the accelerator's memory,
    and that size, for the chunks after it."""
    import torch

    from ..model.batching import fitting_batch

    def run(batch_size: int) -> tuple[list[SampleOutcome], Timing]:
        part = Timing()  # a try that ran out of memory leaves no time behind
        return _run_chunk(model, chunk, replace(options, batch_size=batch_size), part), part

    try:
        (outcomes, part), batch_size = fitting_batch(run, options.batch_size or 1)
    except torch.OutOfMemoryError as error:
        raise TinyAudioError(
            f"{name} ran out of accelerator memory at batch size 1", hint="use --dtype bfloat16"
        ) from error
    timing.audio_seconds += part.audio_seconds
    timing.model_seconds += part.model_seconds
    return outcomes, batch_size


def _entry_weight(entry: SampleEntry) -> float:
    return entry.seconds + SAMPLE_OVERHEAD_SECONDS


def _merge(shares: list[tuple[list[int], list[SampleOutcome], Timing]]) -> tuple[list[SampleOutcome], Timing]:
    """All ranks' outcomes back in source order, and the job's timing (see RANKS_NOTE)."""
    placed = sorted(
        (index, outcome)
        for positions, outcomes, _ in shares
        for index, outcome in zip(positions, outcomes, strict=True)
    )
    timings = [timing for _, _, timing in shares]
    timing = Timing(
        audio_seconds=sum(t.audio_seconds for t in timings),
        model_seconds=max(t.model_seconds for t in timings),
        data_seconds=max(t.data_seconds for t in timings),
        load_seconds=max(t.load_seconds for t in timings),
    )
    return [outcome for _, outcome in placed], timing


def _timed(items: Iterable[Item], timing: Timing) -> Iterator[Item]:
    """The items, adding the time spent producing each (reading, decoding) to timing.data_seconds."""
    iterator = iter(items)
    while True:
        started = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        finally:
            timing.data_seconds += time.perf_counter() - started
        yield item


def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _transcribe_options(options: EvalOptions) -> TranscribeOptions:
    from ..audio.vad import VadOptions
    from ..inference.transcribe import TranscribeOptions

    return TranscribeOptions(
        options.mode, options.batch_size, options.max_new_tokens, VadOptions(), min_confidence=options.min_confidence
    )


def _run_chunk(
    model: TinyAudioModel, chunk: list[EvalSample], options: EvalOptions, timing: Timing
) -> list[SampleOutcome]:
    outcomes = [SampleOutcome(s.id, s.text, s.duration, error=_unusable(s)) for s in chunk]
    usable = [i for i, outcome in enumerate(outcomes) if outcome.error is None]
    whole = getattr(model, "handles_long_clips", False)  # the Whisper baseline decodes long clips itself
    max_whole = 0 if options.vad else WINDOW_SAMPLES  # longer clips go through transcribe's pipeline
    short = [i for i in usable if whole or len(chunk[i].audio) <= max_whole]  # type: ignore[arg-type]
    long = sorted(set(usable) - set(short))
    started = time.perf_counter()
    hypotheses: list[Hypothesis | str] = list(_transcribe_short(model, [chunk[i].audio for i in short], options))
    timing.model_seconds += time.perf_counter() - started
    long_results, long_seconds = _transcribe_long(model, [chunk[i].audio for i in long], options)
    timing.model_seconds += long_seconds
    for i, result in zip(short + long, hypotheses + long_results, strict=True):
        if isinstance(result, str):
            outcomes[i].error = result
        else:
            outcomes[i].hypothesis = result
            timing.audio_seconds += chunk[i].duration
    return outcomes


def _unusable(sample: EvalSample) -> str | None:
    if sample.error is not None or sample.audio is None:
        return sample.error or "no audio"
    return None if len(sample.audio) else "the audio has no samples"


def _transcribe_short(model: TinyAudioModel, audios: list[np.ndarray], options: EvalOptions) -> list[Hypothesis]:
    """Whole clips of up to 30 s, batched by length; results in input order."""
    from ..model.decoding import guarded_text, token_budget

    settings = _transcribe_options(options)
    # one budget per clip, as transcribe gives each region: a short clip stuck in a loop stops early
    budgets = [token_budget(model, len(audio) / SAMPLE_RATE, settings.max_new_tokens) for audio in audios]
    results = model.transcribe(audios, options.mode, options.batch_size, budgets, pack=options.pack, stop_loops=True)
    return [Hypothesis(*guarded_text(model, result.token_ids), long_form=False) for result in results]


def _transcribe_long(
    model: TinyAudioModel, audios: list[np.ndarray], options: EvalOptions
) -> tuple[list[Hypothesis | str], float]:
    """Clips over 30 s through `transcribe_files`, the long-form pipeline `tinyaudio transcribe` runs, so
    both give the same text; windows of different clips share batches. A clip comes back as its
    Hypothesis, or as the error message when the pipeline failed on it; plus the pipeline's model seconds."""
    if not audios:
        return [], 0.0
    from ..inference.transcribe import NamedAudio, transcribe_files

    settings = _transcribe_options(options)
    clips = [NamedAudio(f"clip-{clip}", audio) for clip, audio in enumerate(audios)]
    results = {result.index: result for result in transcribe_files(model, clips, settings)}
    outcomes: list[Hypothesis | str] = []
    for clip in range(len(audios)):
        result = results[clip]
        if result.transcript is None:
            outcomes.append(result.error or "the long-form pipeline returned nothing")
            continue
        cut = any(segment.repetition_cut for segment in result.transcript.segments)
        outcomes.append(Hypothesis(result.transcript.text, cut, long_form=True))
    return outcomes, sum(result.model_seconds for result in results.values())


def _warm_up(model: TinyAudioModel, chunk: list[EvalSample], options: EvalOptions) -> None:
    import torch

    clips = [s.audio for s in chunk if _unusable(s) is None and len(s.audio) <= WINDOW_SAMPLES]  # type: ignore[arg-type]
    try:
        for _ in range(options.warmup_batches if clips else 0):
            _transcribe_short(model, clips[: options.batch_size], options)
    except torch.OutOfMemoryError:  # the timed run finds the batch size that fits
        _free_memory(model.device)


def _free_memory(device: torch.device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _score(outcomes: list[SampleOutcome], normalize: bool) -> CorpusScore:
    if not outcomes:
        raise TinyAudioError("The source gave no samples", hint="check the split, the path and --max-samples")
    pairs = [Pair(o.id, o.reference, o.hypothesis.text, o.duration) for o in outcomes if o.hypothesis is not None]
    if not pairs:
        first = outcomes[0]
        raise TinyAudioError(
            f"None of the {len(outcomes)} samples could be decoded (first: {first.id}: {first.error})",
            hint="check that the audio column holds audio and that ffmpeg is installed",
        )
    return score_corpus(pairs, normalize=normalize)


# -- report files -------------------------------------------------------------------------------


def write_comparison(report: EvalReport, slugs: list[str]) -> None:
    """comparison.json (every model's headline numbers and folder) and one plot of all models."""
    assert report.output_dir is not None
    models = [{**_headline(result), "folder": slug} for result, slug in zip(report.results, slugs, strict=True)]
    comparison = {**report.source, "date": report.date, "settings": asdict(report.options), "models": models}
    _write_json(report.output_dir / COMPARISON_NAME, comparison)
    plot_wer_by_duration([(r.model, r.score.by_duration) for r in report.results], report.output_dir / PLOT_NAME)


def write_model_files(report: EvalReport, result: ModelResult) -> None:
    assert result.output_dir is not None
    result.output_dir.mkdir(parents=True, exist_ok=True)
    _write_json(result.output_dir / SUMMARY_NAME, summary(report, result))
    with (result.output_dir / PREDICTIONS_NAME).open("w", encoding="utf-8") as handle:
        for record in prediction_records(result):
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    plot_wer_by_duration([(result.model, result.score.by_duration)], result.output_dir / PLOT_NAME)


def summary(report: EvalReport, result: ModelResult) -> dict:
    """Everything summary.json holds for one model."""
    score = result.score
    return {
        **_headline(result),
        **report.source,
        "hits": score.hits,
        "ref_words": score.ref_words,
        "errors": score.errors,
        "empty_references": score.empty_references,
        "mean_utterance_wer": score.mean_utterance_wer,
        "normalized": score.normalized,
        "failed": [{"id": o.id, "error": o.error, "duration": o.duration} for o in result.failed],
        "failed_note": FAILED_NOTE,
        "wer_by_duration": [asdict(bucket) for bucket in score.by_duration],
        "top_substitutions": [asdict(substitution) for substitution in score.top_substitutions],
        "speed": _speed(result),
        "long_form": {
            "threshold_seconds": WINDOW_SECONDS,
            "method": LONG_FORM_METHOD,
            "samples": result.long_form_samples,
        },
        "repetition_cuts": result.repetition_cuts,
        "settings": {
            **asdict(report.options),
            "device": result.device,
            "dtype": result.dtype,
            "batch_size": result.batch_size,
        },
        "hardware": _hardware(result.device),
        "versions": versions(),
        "date": report.date,
    }


def _speed(result: ModelResult) -> dict:
    timing = result.timing
    speed = {**asdict(timing), "rtfx": _finite(timing.rtfx), "note": TIMING_NOTE}
    if result.ranks > 1:
        speed |= {"ranks": result.ranks, "ranks_note": RANKS_NOTE}
    return speed


def _headline(result: ModelResult) -> dict:
    score = result.score
    return {
        "model": result.model,
        "weights_sha256": result.weights_sha256,
        "samples": len(result.outcomes),
        "scored_samples": len(score.samples),
        "failed_samples": len(result.failed),
        "wer": score.wer,
        "cer": score.cer,
        "substitutions": score.substitutions,
        "deletions": score.deletions,
        "insertions": score.insertions,
        "rtfx": _finite(result.timing.rtfx),
    }


def prediction_records(result: ModelResult) -> Iterator[dict]:
    """One JSON record per sample in source order; failed samples too, with their error."""
    scored = iter(result.score.samples)  # score_corpus keeps the order of the pairs it was given
    for outcome in result.outcomes:
        if outcome.hypothesis is None:
            yield {
                "id": outcome.id,
                "reference": outcome.reference,
                "hypothesis": None,
                "reference_norm": None,
                "hypothesis_norm": None,
                "wer": None,
                "duration": outcome.duration,
                "error": outcome.error,
            }
            continue
        sample = next(scored)
        yield {
            "id": sample.id,
            "reference": sample.reference,
            "hypothesis": sample.hypothesis,
            "reference_norm": sample.reference_norm,
            "hypothesis_norm": sample.hypothesis_norm,
            "wer": sample.wer,
            "errors": sample.errors,
            "ref_words": sample.ref_words,
            "substitutions": sample.substitutions,
            "deletions": sample.deletions,
            "insertions": sample.insertions,
            "duration": sample.duration,
            "long_form": outcome.hypothesis.long_form,
            "repetition_cut": outcome.hypothesis.repetition_cut,
            "error": None,
        }


def plot_wer_by_duration(series: list[tuple[str, list[BucketScore]]], path: Path) -> None:
    """Grouped bars of corpus WER per duration bucket, one colour per model, sample counts on top."""
    # The Agg canvas directly, not pyplot: no global backend switch inside a library, no GUI needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = list(dict.fromkeys(bucket.label for _, buckets in series for bucket in buckets))
    figure = Figure(figsize=PLOT_SIZE, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / len(series)
    for index, (name, buckets) in enumerate(series):
        found = {bucket.label: bucket for bucket in buckets}
        xs = [position + index * width for position, label in enumerate(labels) if label in found]
        values = [100 * found[label].wer for label in labels if label in found]
        bars = axes.bar(xs, values, width, label=name)
        axes.bar_label(bars, [f"n={found[label].samples}" for label in labels if label in found], fontsize=7)
    axes.set_xticks([position + width * (len(series) - 1) / 2 for position in range(len(labels))], labels)
    axes.set_xlabel("utterance duration")
    axes.set_ylabel("WER (%)")
    axes.set_title("WER by duration")
    if len(series) > 1:
        axes.legend(fontsize=7)
    figure.savefig(path, dpi=120)


def model_slugs(models: Sequence[str]) -> list[str]:
    """A distinct folder name per model: a local folder's name, a Hub id with '/' as '--'."""
    slugs: list[str] = []
    for model in models:
        local = Path(model).expanduser()
        base = local.name if local.is_dir() else model.replace("/", "--")
        slug = SLUG_UNSAFE.sub("_", base).strip("._") or "model"
        candidate, number = slug, 2
        while candidate in slugs:
            candidate, number = f"{slug}-{number}", number + 1
        slugs.append(candidate)
    return slugs


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"tinyaudio": __version__, "python": platform.python_version()}
    for package in VERSION_PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def _hardware(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()


def _finite(value: float) -> float | None:
    # JSON has no infinity; a run too short for the clock to see reports no speed rather than a fake one.
    return value if value != float("inf") else None


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
