"""Voice activity detection on real (espeak-ng) speech: Silero scores, regions, windows, streaming."""

from __future__ import annotations

import itertools
import tracemalloc
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import silero_vad
import torch
from conftest import PAUSED_LAYOUT, SR, Speech

from tinyaudio_cli.audio.media import SAMPLE_RATE, WINDOW_SECONDS, stream_audio
from tinyaudio_cli.audio.vad import (
    FRAME_SAMPLES,
    SpeechRegion,
    SpeechWindow,
    VadOptions,
    _Cut,
    _Segmenter,
    _SileroScorer,
    iter_fixed_windows,
    iter_speech_windows,
)
from tinyaudio_cli.errors import TinyAudioError

FRAME = FRAME_SAMPLES / SR


def blocks_of(audio: np.ndarray, seconds: float) -> Iterator[np.ndarray]:
    size = round(seconds * SR)
    for start in range(0, len(audio), size):
        yield audio[start : start + size]


def windows_of(speech: Speech, options: VadOptions | None = None, block_seconds: float = 30.0) -> list[SpeechWindow]:
    return list(iter_speech_windows(blocks_of(speech.audio, block_seconds), options or VadOptions()))


def regions_of(windows: list[SpeechWindow]) -> list[SpeechRegion]:
    return [region for window in windows for region in window.regions]


def assert_well_formed(windows: list[SpeechWindow], audio: np.ndarray, max_seconds: float) -> None:
    """Windows are ordered, disjoint, within the limit, exact slices of the audio, and hold their regions."""
    for window in windows:
        first = round(window.start * SR)
        assert window.start * SR == pytest.approx(first, abs=1e-6)
        np.testing.assert_array_equal(window.samples, audio[first : first + len(window.samples)])
        assert 0 < window.end - window.start <= max_seconds + 1e-9
        assert window.regions
        for region in window.regions:
            assert window.start - 1e-9 <= region.start < region.end <= window.end + 1e-9
        for earlier, later in itertools.pairwise(window.regions):
            assert earlier.end <= later.start + 1e-9
    for earlier, later in itertools.pairwise(windows):
        assert earlier.end <= later.start + 1e-9


@pytest.fixture(scope="module")
def reference_scores(paused_speech: Speech) -> np.ndarray:
    """Silero's own API, one frame per call, as its get_speech_timestamps runs it."""
    with warnings.catch_warnings():  # its loader uses deprecated torch and importlib APIs
        warnings.simplefilter("ignore", DeprecationWarning)
        model = silero_vad.load_silero_vad()
    model.reset_states()
    audio = torch.from_numpy(paused_speech.audio)
    with torch.inference_mode():
        scores = [
            model(audio[start : start + FRAME_SAMPLES], SR).item()
            for start in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES)
        ]
    return np.array(scores)


def test_batched_scores_equal_silero_frame_by_frame(paused_speech, reference_scores):
    frames = paused_speech.audio[: len(reference_scores) * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
    scorer = _SileroScorer()
    # Uneven calls: state and context must carry over between them exactly as between frames.
    splits = [100, 1, 250]
    scores = np.concatenate([scorer(part) for part in np.split(frames, np.cumsum(splits))])
    assert scores.shape == reference_scores.shape
    np.testing.assert_allclose(scores, reference_scores, atol=1e-4)
    assert scores.max() > 0.9 and scores.min() < 0.05  # the audio has both speech and silence


@pytest.mark.parametrize(
    "options",
    [
        VadOptions(merge_gap_seconds=0),
        # Any dip splits a region, and padding too wide for the pauses makes neighbours share them.
        VadOptions(threshold=0.7, min_silence_duration_ms=0, speech_pad_ms=300, merge_gap_seconds=0),
        VadOptions(threshold=0.7, min_silence_duration_ms=200, speech_pad_ms=30, merge_gap_seconds=0),
    ],
)
def test_regions_match_silero_get_speech_timestamps(paused_speech, reference_scores, options):
    expected = silero_vad.get_speech_timestamps_from_probs(
        reference_scores.tolist(),
        threshold=options.threshold,
        min_speech_duration_ms=options.min_speech_duration_ms,
        min_silence_duration_ms=options.min_silence_duration_ms,
        speech_pad_ms=options.speech_pad_ms,
        audio_length_samples=len(paused_speech.audio),
    )
    windows = windows_of(paused_speech, options, block_seconds=1.7)
    assert_well_formed(windows, paused_speech.audio, options.max_window_seconds)
    found = [(region.start, region.end) for region in regions_of(windows)]
    assert len(found) == len(expected) >= 2
    for (start, end), reference in zip(found, expected, strict=True):
        assert start == pytest.approx(reference["start"] / SR, abs=1e-6)
        assert end == pytest.approx(reference["end"] / SR, abs=1e-6)


def random_scores(rng: np.random.Generator) -> list[float]:
    """Runs of speech, silence and the in-between band where silero's hysteresis matters, then silence."""
    scores: list[float] = []
    for _ in range(rng.integers(1, 30)):
        low, high = [(0.6, 1.0), (0.0, 0.3), (0.35, 0.5)][rng.integers(0, 3)]
        scores += rng.uniform(low, high, rng.integers(1, 60)).tolist()
    return scores + [0.0] * 80


def segment(options: VadOptions, scores: list[float], total: int, rng: np.random.Generator) -> list[_Cut]:
    segmenter, cuts, done = _Segmenter(options), [], 0
    while done < len(scores):  # in uneven pieces, as blocks arrive
        step = int(rng.integers(1, 100))
        cuts += segmenter.push(np.array(scores[done : done + step]))
        segmenter.keep_from()
        done += step
    return cuts + segmenter.finish(total)


def group_sizes(pauses: list[int], merge_gap: float) -> list[int]:
    sizes = [1]
    for pause in pauses:
        if pause > merge_gap:
            sizes.append(1)
        else:
            sizes[-1] += 1
    return sizes


def test_segmenter_agrees_with_silero_on_random_scores():
    rng = np.random.default_rng(1234)
    for _ in range(300):
        scores = random_scores(rng)
        total = len(scores) * FRAME_SAMPLES - int(rng.integers(0, FRAME_SAMPLES))
        silence, pad, speech = (int(rng.choice(values)) for values in ([0, 32, 100, 500], [0, 30, 200, 300], [0, 250]))
        settings = {"min_silence_duration_ms": silence, "speech_pad_ms": pad, "min_speech_duration_ms": speech}
        expected = silero_vad.get_speech_timestamps_from_probs(scores, audio_length_samples=total, **settings)
        # Unlimited windows: the regions must be silero's, sample for sample...
        merge_gap = float(rng.choice([0, 0.2, 1.0]))
        unlimited = VadOptions(merge_gap_seconds=merge_gap, max_window_seconds=1e6, **settings)
        cuts = segment(unlimited, scores, total, rng)
        assert [region for cut in cuts for region in cut.regions] == [(r["start"], r["end"]) for r in expected]
        # ...grouped into one window exactly while the pauses between them are at most merge_gap.
        raw = silero_vad.get_speech_timestamps_from_probs(
            scores, audio_length_samples=total, **{**settings, "speech_pad_ms": 0}
        )
        pauses = [later["start"] - earlier["end"] for earlier, later in itertools.pairwise(raw)]
        assert [len(cut.regions) for cut in cuts] == (group_sizes(pauses, merge_gap * SR) if raw else [])

        # Tight windows: never over the limit, in order, and every speech frame of silero's regions covered.
        limit = float(rng.choice([1.0, 1.5, 3.0]))
        settings["speech_pad_ms"] = min(pad, int(limit * 250))  # the most padding a window allows
        tight = VadOptions(merge_gap_seconds=float(rng.choice([0, 0.5, 2])), max_window_seconds=limit, **settings)
        cuts = segment(tight, scores, total, rng)
        previous_end = 0
        for cut in cuts:
            assert previous_end <= cut.start < cut.end <= min(total, cut.start + limit * SR)
            assert all(cut.start <= start < end <= cut.end for start, end in cut.regions)
            previous_end = cut.end
        covered = [region for cut in cuts for region in cut.regions]
        unpadded = silero_vad.get_speech_timestamps_from_probs(
            scores, audio_length_samples=total, **{**settings, "speech_pad_ms": 0}
        )
        for region in unpadded:
            for frame in range(region["start"] // FRAME_SAMPLES, region["end"] // FRAME_SAMPLES):
                middle = frame * FRAME_SAMPLES + FRAME_SAMPLES // 2
                if scores[frame] >= tight.threshold:
                    assert any(start <= middle <= end for start, end in covered), frame


def test_a_region_that_goes_quiet_at_the_limit_is_cut_in_that_pause():
    options = VadOptions(max_window_seconds=2.0, min_silence_duration_ms=1000, speech_pad_ms=100)
    segmenter = _Segmenter(options)
    # Speech, a pause too short to end the region that reaches past the 2 s limit, speech, silence.
    scores = [0.9] * 55 + [0.05] * 20 + [0.9] * 30 + [0.0] * 40
    cuts = segmenter.push(np.array(scores)) + segmenter.finish(len(scores) * FRAME_SAMPLES)
    pad = options.speech_pad_ms * SR // 1000
    assert (cuts[0].start, cuts[0].end) == (0, 55 * FRAME_SAMPLES + pad)
    # The region stays open through the cut: the speech after the pause continues it from there.
    assert cuts[1].start == cuts[0].end
    assert cuts[1].regions == [(cuts[0].end, 105 * FRAME_SAMPLES + pad)]


def test_speech_running_into_the_end_of_the_audio():
    options = VadOptions(min_silence_duration_ms=500, speech_pad_ms=200)
    # A pause shorter than min_silence at the very end still ends the region where it went quiet.
    segmenter = _Segmenter(options)
    total = 40 * FRAME_SAMPLES - 100
    cuts = segmenter.push(np.array([0.0] * 10 + [0.9] * 20 + [0.05] * 10)) + segmenter.finish(total)
    assert [cut.regions for cut in cuts] == [[(10 * FRAME_SAMPLES - 3200, 30 * FRAME_SAMPLES + 3200)]]
    # Speech up to the last frame ends with the audio, never past it.
    segmenter = _Segmenter(options)
    cuts = segmenter.push(np.array([0.0] * 10 + [0.9] * 30)) + segmenter.finish(total)
    assert [cut.regions for cut in cuts] == [[(10 * FRAME_SAMPLES - 3200, total)]]


def test_regions_are_where_the_speech_was_placed(paused_speech):
    windows = windows_of(paused_speech, VadOptions(speech_pad_ms=0))
    found = [(region.start, region.end) for region in regions_of(windows)]
    assert len(found) == len(paused_speech.spans) == 2
    for (start, end), (placed_start, placed_end) in zip(found, paused_speech.spans, strict=True):
        assert start == pytest.approx(placed_start, abs=0.15)
        assert end == pytest.approx(placed_end, abs=0.15)


def test_default_windows_pad_the_speech_and_split_at_the_long_pause(paused_speech):
    options = VadOptions()
    windows = windows_of(paused_speech, options)
    assert_well_formed(windows, paused_speech.audio, options.max_window_seconds)
    # The pause between the sentences is longer than merge_gap_seconds: one window each.
    assert PAUSED_LAYOUT[1] > options.merge_gap_seconds
    assert len(windows) == 2
    pad = options.speech_pad_ms / 1000
    for window, (placed_start, placed_end) in zip(windows, paused_speech.spans, strict=True):
        assert window.start == pytest.approx(placed_start - pad, abs=0.15)
        assert window.end == pytest.approx(placed_end + pad, abs=0.15)
        assert window.start < placed_start and window.end > placed_end


def test_neighbours_share_a_window_when_the_pause_is_short_enough(paused_speech):
    windows = windows_of(paused_speech, VadOptions(merge_gap_seconds=PAUSED_LAYOUT[1] + 1))
    assert len(windows) == 1 and len(windows[0].regions) == 2
    assert_well_formed(windows, paused_speech.audio, WINDOW_SECONDS)
    # ...but not when the shared window would exceed the limit.
    span = paused_speech.spans[1][1] - paused_speech.spans[0][0]
    options = VadOptions(merge_gap_seconds=PAUSED_LAYOUT[1] + 1, max_window_seconds=span - 1)
    windows = windows_of(paused_speech, options)
    assert [len(window.regions) for window in windows] == [1, 1]
    assert_well_formed(windows, paused_speech.audio, options.max_window_seconds)


def test_silence_and_noise_yield_no_windows(silence_wav, noise_wav):
    assert list(iter_speech_windows(stream_audio(silence_wav), VadOptions())) == []
    assert list(iter_speech_windows(stream_audio(noise_wav), VadOptions())) == []
    assert list(iter_speech_windows([], VadOptions())) == []


def test_long_continuous_speech_is_split_into_windows_that_fit(long_speech):
    options = VadOptions()
    windows = list(iter_speech_windows(stream_audio(long_speech.path), options))
    assert long_speech.duration > WINDOW_SECONDS and len(windows) >= 2
    assert_well_formed(windows, long_speech.audio, WINDOW_SECONDS)
    # No speech is lost: every placed sentence lies inside the regions found.
    regions = regions_of(windows)
    for placed_start, placed_end in long_speech.spans:
        for moment in np.arange(placed_start + 0.1, placed_end - 0.1, 0.05):
            assert any(region.start <= moment <= region.end for region in regions), moment


def frame_rms(audio: np.ndarray, at: float) -> float:
    centre = round(at * SR)
    return float(np.sqrt(np.mean(audio[max(0, centre - FRAME_SAMPLES // 2) : centre + FRAME_SAMPLES // 2] ** 2)))


def test_a_region_longer_than_a_window_is_split_at_quiet_points(long_speech):
    # A minimum pause longer than any gap makes all the speech a single region.
    options = VadOptions(min_silence_duration_ms=3000, max_window_seconds=6.0)
    windows = windows_of(long_speech, options, block_seconds=2.5)
    assert_well_formed(windows, long_speech.audio, options.max_window_seconds)
    assert len(windows) >= long_speech.duration / options.max_window_seconds
    cuts = [earlier.end for earlier, later in itertools.pairwise(windows) if earlier.end == later.start]
    assert len(cuts) >= len(windows) - 2
    typical = np.median([frame_rms(long_speech.audio, at) for at in np.arange(1, long_speech.duration - 1, FRAME)])
    for cut in cuts:
        assert frame_rms(long_speech.audio, cut) < typical / 4, cut
    # Cuts come in each window's second half, so no window is needlessly short.
    assert all(window.end - window.start >= options.max_window_seconds / 2 for window in windows[:-1])


@pytest.mark.parametrize("speech_name", ["paused_speech", "long_speech"])
def test_block_size_does_not_change_the_windows(request, speech_name):
    speech = request.getfixturevalue(speech_name)
    options = VadOptions(max_window_seconds=10)

    def summary(block_seconds: float) -> list[tuple[float, int, list[SpeechRegion]]]:
        return [(w.start, len(w.samples), w.regions) for w in windows_of(speech, options, block_seconds)]

    whole = summary(len(speech.audio) / SR + 1)
    assert whole == summary(0.5) == summary(3.03)


def test_memory_stays_bounded_on_long_input(long_speech, paused_speech):
    repeats = 4  # about 3.5 minutes of speech and silence, in small blocks
    audio = np.concatenate([long_speech.audio, paused_speech.audio])
    blocks = (block for _ in range(repeats) for block in blocks_of(audio, 1.0))
    options = VadOptions()
    tracemalloc.start()
    try:
        windows = 0
        for window in iter_speech_windows(blocks, options):
            assert window.duration <= options.max_window_seconds
            windows += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    whole = repeats * audio.nbytes
    assert windows >= repeats * 4
    assert peak < 8_000_000 < whole, f"peak {peak / 1e6:.1f} MB while the input is {whole / 1e6:.0f} MB"


@pytest.mark.parametrize("block_seconds", [4.0, 7.3, 45.0])
def test_fixed_windows_cover_the_whole_stream_in_consecutive_30_second_windows(long_speech, block_seconds):
    """--no-vad reads all of a file, as openai-whisper does: windows back to back, each timed where it is."""
    windows = list(iter_fixed_windows(blocks_of(long_speech.audio, block_seconds)))
    size = WINDOW_SECONDS * SAMPLE_RATE
    assert len(windows) == int(np.ceil(len(long_speech.audio) / size)) >= 2
    for index, window in enumerate(windows):
        np.testing.assert_array_equal(window.samples, long_speech.audio[index * size : (index + 1) * size])
        assert window.start == index * WINDOW_SECONDS
        assert window.regions == [SpeechRegion(window.start, window.end)]
    assert windows[-1].end == pytest.approx(long_speech.duration)


def test_fixed_windows_of_a_short_file_hold_all_of_it(paused_speech):
    windows = list(iter_fixed_windows(stream_audio(paused_speech.path, block_seconds=1.0), max_seconds=20))
    assert len(windows) == 1
    np.testing.assert_array_equal(windows[0].samples, paused_speech.audio)
    assert windows[0].regions == [SpeechRegion(0.0, paused_speech.duration)]


@pytest.mark.parametrize(
    "bad",
    [
        {"threshold": 1.5},
        {"max_window_seconds": 0.2},
        {"speech_pad_ms": 5000, "max_window_seconds": 10},
        {"min_silence_duration_ms": -1},
    ],
)
def test_nonsense_options_are_refused(bad):
    with pytest.raises(TinyAudioError):
        VadOptions(**bad)


def test_each_region_carries_silero_s_mean_speech_probability_over_its_speech(paused_speech, reference_scores):
    # silero's own regions without padding are the speech of each (padded) region found here
    cores = silero_vad.get_speech_timestamps_from_probs(
        reference_scores.tolist(), speech_pad_ms=0, audio_length_samples=len(paused_speech.audio)
    )
    regions = regions_of(windows_of(paused_speech, VadOptions(), block_seconds=1.7))
    assert len(regions) == len(cores) >= 2
    for region, core in zip(regions, cores, strict=True):
        frames = reference_scores[core["start"] // FRAME_SAMPLES : -(-core["end"] // FRAME_SAMPLES)]
        assert region.speech_probability == pytest.approx(float(np.mean(frames)), abs=2e-4)
        assert 0.5 < region.speech_probability <= 1.0  # espeak speech: the VAD is sure of it


def test_fixed_windows_measure_no_speech_probability(paused_speech):
    windows = list(iter_fixed_windows(blocks_of(paused_speech.audio, 1.0)))
    assert [region.speech_probability for window in windows for region in window.regions] == [None]
