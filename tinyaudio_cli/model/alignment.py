"""Word timing from a Whisper base's own decoder: the method of openai-whisper's timing code.

Every Tiny Audio checkpoint names a Whisper base whose decoder (4 layers for large-v3-turbo, small beside the LM)
and `alignment_heads` make a forced aligner. The text is teacher-forced through that decoder over encoder states
already computed; the cross-attention of the alignment heads, normalised per frame and median-filtered, is a
token × frame similarity, and the monotonic path through it (dynamic time warping) puts each token at the
frames it was said. Token boundaries become word boundaries.

Nothing here imports tinyaudio outside `model/`; the aligner is loaded only when word timing is asked for.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from transformers import PreTrainedTokenizerFast, WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperDecoder

from .errors import TinyAudioError

FRAMES_PER_SECOND = 50  # encoder frames: 1500 for a 30 s window (two mel frames each)
MEDIAN_FILTER_WIDTH = 7  # frames; openai-whisper's choice
SENTENCE_ENDS = ".。!！?？"
MAX_WORD_SECONDS = 1.4  # a word longer than twice the median word (at most 0.7 s) is cut at a sentence edge
# Quiet between neighbours is a pause to put their boundary in if it lasts 100 ms (the closure of a stop, "k" or
# "b", is shorter) and lies within 120 ms of the attention's boundary. Chosen on benchmarks/word_timing.py and
# checked on 36 clips of other sentences (2026-11-30): from 60 ms and 300 ms, words within 200 ms rose from
# 81.8 to 92.4 % on connected speech (the nearest quiet was often a stop a word away) and from 93.0 to 94.2 %
# on words joined by silences (median 8 -> 10 ms).
MIN_PAUSE_FRAMES = 5
MAX_SHIFT_FRAMES = 6
DECODER_PREFIXES = ("model.decoder.", "decoder.", "")
ALIGN_BATCH = 8  # texts per decoder pass


@dataclass(frozen=True)
class WordTiming:
    """A word and when it was said, in seconds from the start of the frames it was aligned in."""

    word: str
    start: float
    end: float
    probability: float  # mean probability the decoder gives the word's tokens


class WhisperAligner:
    """A Whisper decoder, its tokenizer and its alignment heads: `align` times the words of given texts."""

    def __init__(
        self,
        decoder: WhisperDecoder,
        tokenizer: PreTrainedTokenizerFast,
        alignment_heads: list[tuple[int, int]],
        prompt: list[int],
        end_of_text: int,
    ) -> None:
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.alignment_heads = alignment_heads
        self.prompt = prompt  # start of transcript (language and task for a multilingual base), no timestamps
        self.end_of_text = end_of_text

    @property
    def device(self) -> torch.device:
        return self.decoder.embed_tokens.weight.device

    @classmethod
    def load(
        cls, folder: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> WhisperAligner:
        """The decoder of the Whisper model in `folder` (its encoder is not read) and what aligning needs."""
        folder = Path(folder)
        config = WhisperConfig.from_pretrained(folder)
        state = _decoder_weights(folder)
        generation = _read_json(folder / "generation_config.json")
        heads = generation.get("alignment_heads")
        if not heads:
            raise TinyAudioError(
                f"{folder} names no alignment_heads in generation_config.json",
                hint="word timing needs a Whisper base whose generation config lists them",
            )
        with torch.device("meta"):
            decoder = WhisperDecoder._from_config(config, attn_implementation="eager")  # eager: it returns attention
        decoder.load_state_dict(state, strict=False, assign=True)
        missing = [name for name, tensor in decoder.state_dict().items() if tensor.is_meta]
        if missing:
            raise TinyAudioError(f"{folder} lacks the Whisper decoder's weights (e.g. {missing[0]})")
        decoder = decoder.to(device=device, dtype=dtype).eval().requires_grad_(False)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
        start = generation.get("decoder_start_token_id", config.decoder_start_token_id)
        prompt = [start]
        if generation.get("is_multilingual"):
            prompt += [generation["lang_to_id"]["<|en|>"], generation["task_to_id"]["transcribe"]]
        no_timestamps = generation.get("no_timestamps_token_id")
        if no_timestamps is None:
            no_timestamps = tokenizer.convert_tokens_to_ids("<|notimestamps|>")
        prompt.append(no_timestamps)
        end_of_text = generation.get("eos_token_id", config.eos_token_id)
        return cls(decoder, tokenizer, [tuple(head) for head in heads], prompt, end_of_text)

    @torch.inference_mode()
    def align(self, encoder_states: torch.Tensor, texts: list[str], frames: list[int]) -> list[list[WordTiming]]:
        """Words of each text timed against its row of encoder states [batch, 1500, width], of which the
        first `frames[i]` frames hold that text's audio. Times are seconds from the first frame."""
        rows = [states[: max(1, count)] for states, count in zip(encoder_states, frames, strict=True)]
        return self.align_many(list(zip(rows, texts, strict=True)))

    @torch.inference_mode()
    def align_frames(self, states: torch.Tensor, text: str) -> list[WordTiming]:
        """Words of `text` timed against encoder states [frames, width] that hold its audio (a stretch of a
        window: positions stay as the encoder gave them). Times are seconds from the first of these frames."""
        return self.align_many([(states, text)])[0]

    @torch.inference_mode()
    def align_many(
        self, items: Sequence[tuple[torch.Tensor, str]], batch_size: int = ALIGN_BATCH
    ) -> list[list[WordTiming]]:
        """`align_frames` for each (encoder states [frames, width], text), up to `batch_size` texts in one
        decoder pass.

        Token ids are right-padded: the decoder is causal, so what follows a row's end of text never reaches its
        earlier positions. Frame counts differ from row to row and the decoder's cross-attention takes no mask,
        so rows are padded with zero frames and a mask that keeps the padding out of every softmax is handed to
        each cross-attention layer (`_masked_cross_attention`); each row's times are then exactly its own."""
        tokens = [self._text_tokens(text) for _, text in items]
        timed: list[list[WordTiming]] = [[] for _ in items]
        capacity = self.decoder.config.max_target_positions - len(self.prompt) - 1  # the end of text too
        for index, ids in enumerate(tokens):
            if len(ids) > capacity:  # more than the decoder's positions hold: in pieces, each over its share
                timed[index] = self._align_in_pieces(*items[index], capacity)
                tokens[index] = []
        wanted = [index for index, ids in enumerate(tokens) if ids]
        wanted.sort(key=lambda index: len(items[index][0]))  # rows of like length share a batch: less padding
        for start in range(0, len(wanted), batch_size):
            chunk = wanted[start : start + batch_size]
            rows = self._forward([items[index][0] for index in chunk], [tokens[index] for index in chunk])
            for index, row in zip(chunk, rows, strict=True):
                timed[index] = self._words(tokens[index], *row)
        return timed

    def _align_in_pieces(self, states: torch.Tensor, text: str, capacity: int) -> list[WordTiming]:
        """A text too long for the decoder (448 positions for Whisper), cut at words into pieces that fit, each
        aligned over a share of the frames proportional to its tokens: coarse, but every word gets a time."""
        pieces: list[tuple[list[str], int]] = []
        for word in text.split():
            count = len(self._text_tokens(word))
            if pieces and pieces[-1][1] + count <= capacity:
                pieces[-1] = ([*pieces[-1][0], word], pieces[-1][1] + count)
            else:
                pieces.append(([word], count))
        total = sum(count for _, count in pieces)
        bounds = [round(len(states) * done / total) for done in itertools.accumulate([0] + [c for _, c in pieces])]
        timed = []
        for (words, count), first, last in zip(pieces, bounds, bounds[1:], strict=False):
            offset = first / FRAMES_PER_SECOND
            if count > capacity:  # one "word" longer than the decoder holds: its share, unaligned
                timed.append(WordTiming(words[0], offset, max(last, first + 1) / FRAMES_PER_SECOND, 0.0))
                continue
            (aligned,) = self.align_many([(states[first : max(last, first + 1)], " ".join(words))])
            timed += [WordTiming(w.word, w.start + offset, w.end + offset, w.probability) for w in aligned]
        return timed

    def _text_tokens(self, text: str) -> list[int]:
        text = " ".join(text.split())  # a line break inside a segment is a space between two words
        return self.tokenizer.encode(" " + text, add_special_tokens=False) if text else []

    def _forward(
        self, states: list[torch.Tensor], texts: list[list[int]]
    ) -> list[tuple[np.ndarray, torch.Tensor, int]]:
        """One teacher-forced decoder pass over several texts: for each, its tokens' probabilities, the
        alignment heads' cross-attention over its own frames (heads × text tokens and end of text × frames),
        and its frame count."""
        dtype = self.decoder.embed_tokens.weight.dtype
        counts = [len(rows) for rows in states]
        width = max(counts)
        padded = torch.zeros(len(states), width, states[0].shape[-1], dtype=dtype, device=self.device)
        keep = torch.zeros(len(states), width, dtype=torch.bool, device=self.device)
        for row, (frames, count) in enumerate(zip(states, counts, strict=True)):
            padded[row, :count] = frames.to(device=self.device, dtype=dtype)
            keep[row, :count] = True
        sequences = [[*self.prompt, *text, self.end_of_text] for text in texts]
        length = max(len(sequence) for sequence in sequences)
        ids = torch.tensor(
            [sequence + [self.end_of_text] * (length - len(sequence)) for sequence in sequences], device=self.device
        )
        mask = None
        if min(counts) < width:  # [batch, 1, 1, frames]: 0 where a row has frames, the dtype's lowest where not
            mask = torch.zeros(keep.shape, dtype=dtype, device=self.device)
            mask = mask.masked_fill(~keep, torch.finfo(dtype).min)[:, None, None, :]
        with _masked_cross_attention(self.decoder, mask):
            output = self.decoder(input_ids=ids, encoder_hidden_states=padded, output_attentions=True)
        # row p predicts token p + 1: the rows from the last prompt token on predict the text and end of text
        first = len(self.prompt) - 1
        # the text positions of every row through the output projection at once (a tenth of the vocabulary
        # matrix's cost per row): one large product is about twice as fast as one per row
        hidden = torch.cat([output.last_hidden_state[row, first : first + len(text)] for row, text in enumerate(texts)])
        logits = torch.nn.functional.linear(hidden, self.decoder.embed_tokens.weight).float()
        said = torch.tensor([token for text in texts for token in text], device=logits.device)
        chosen = logits.log_softmax(dim=-1).gather(1, said[:, None])[:, 0].exp().cpu().numpy()
        offsets = np.cumsum([0] + [len(text) for text in texts])
        results = []
        for row, (text, count) in enumerate(zip(texts, counts, strict=True)):
            token_probability = chosen[offsets[row] : offsets[row + 1]]
            weights = torch.stack(
                [output.cross_attentions[layer][row, head] for layer, head in self.alignment_heads]
            ).float()  # heads × tokens × frames
            results.append((token_probability, weights[:, first : first + len(text) + 1, :count], count))
        return results

    def _words(
        self, text_tokens: list[int], token_probability: np.ndarray, weights: torch.Tensor, frames: int
    ) -> list[WordTiming]:
        """Words timed from the alignment heads' attention: normalised per frame, median-filtered, and the
        monotonic path through it (DTW) gives each token the frame it begins at."""
        std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
        weights = _median_filter((weights - mean) / (std + 1e-9), MEDIAN_FILTER_WIDTH)
        text_index, frame_index = dtw(-weights.mean(dim=0).cpu().double().numpy())
        jumps = np.pad(np.diff(text_index), (1, 0), constant_values=1).astype(bool)
        jump_seconds = frame_index[jumps] / FRAMES_PER_SECOND  # when each token (and end of text) begins
        words, word_tokens = self.split_words(text_tokens)
        boundaries = np.pad(np.cumsum([len(group) for group in word_tokens]), (1, 0))
        timed = [
            WordTiming(
                word,
                float(jump_seconds[boundaries[i]]),
                float(jump_seconds[boundaries[i + 1]]),
                float(np.mean(token_probability[boundaries[i] : boundaries[i + 1]])),
            )
            for i, word in enumerate(words)
        ]
        return _tidy(timed, frames / FRAMES_PER_SECOND)

    @torch.inference_mode()
    def transcribe_frames(self, states: torch.Tensor, max_tokens: int = 224) -> str:
        """Whisper's own greedy transcript of a window's encoder states [1500, width] (the whole window, as the
        decoder was trained): a rough anchor for spreading a given text over speech regions (`tinyaudio align`),
        not an output. Keys and values of past tokens are cached, so each step costs one token."""
        states = states[None].to(self.decoder.embed_tokens.weight.dtype)
        cache_name = "cache" if "cache" in inspect.signature(self.decoder.forward).parameters else "past_key_values"
        step_ids, cache, said = list(self.prompt), None, []
        for _ in range(max_tokens):
            ids = torch.tensor([step_ids], device=self.device)
            output = self.decoder(input_ids=ids, encoder_hidden_states=states, use_cache=True, **{cache_name: cache})
            # not .get(): its default would read the deprecated name (and warn) on every step
            cache = output[cache_name] if cache_name in output else output.past_key_values  # noqa: SIM401
            logits = output.last_hidden_state[0, -1].float() @ self.decoder.embed_tokens.weight.float().T
            logits[self.end_of_text + 1 :] = -torch.inf  # special tokens and timestamps are never text
            token = int(logits.argmax())
            if token == self.end_of_text:
                break
            said.append(token)
            step_ids = [token]
        return self.tokenizer.decode(said).strip()

    def split_words(self, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
        """Tokens grouped into words as `text.split()` splits them: a word starts at a token that begins with a
        space, so punctuation stays on its word ("dog." is one word); pieces of one multi-byte character stay
        together. (Languages written without spaces would need openai-whisper's split on characters.)"""
        words: list[str] = []
        word_tokens: list[list[int]] = []
        pending: list[int] = []
        for token in tokens:
            pending.append(token)
            piece = self.tokenizer.decode(pending)
            if "\ufffd" in piece:  # part of a character; wait for the rest
                continue
            if piece.startswith(" ") or not words:
                words.append(piece)
                word_tokens.append(pending)
            else:
                words[-1] += piece
                word_tokens[-1].extend(pending)
            pending = []
        return words, word_tokens


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The monotonic path of least total cost through `cost` (tokens × frames), from the first cell to the
    last: (token index, frame index) per step. Cells on one anti-diagonal depend only on earlier ones, so each
    anti-diagonal is filled at once."""
    rows, columns = cost.shape
    total = np.full((rows + 1, columns + 1), np.inf)
    total[0, 0] = 0.0
    trace = np.zeros((rows + 1, columns + 1), dtype=np.int8)  # 0: diagonal, 1: from the row above, 2: from the left
    for diagonal in range(2, rows + columns + 1):
        i = np.arange(max(1, diagonal - columns), min(rows, diagonal - 1) + 1)
        j = diagonal - i
        choices = np.stack([total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]])
        step = choices.argmin(axis=0)
        total[i, j] = cost[i - 1, j - 1] + choices[step, np.arange(len(i))]
        trace[i, j] = step
    trace[0, :], trace[:, 0] = 2, 1
    i, j, path = rows, columns, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    steps = np.array(path[::-1])
    return steps[:, 0], steps[:, 1]


@contextlib.contextmanager
def _masked_cross_attention(decoder: WhisperDecoder, mask: torch.Tensor | None) -> Iterator[None]:
    """While open, every cross-attention layer of `decoder` adds `mask` to its scores: transformers'
    WhisperDecoder passes its layers no encoder mask, so it is handed to each `encoder_attn` on its way in."""
    if mask is None:
        yield
        return

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, "attention_mask": mask}

    handles = [layer.encoder_attn.register_forward_pre_hook(hook, with_kwargs=True) for layer in decoder.layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _median_filter(weights: torch.Tensor, width: int) -> torch.Tensor:
    """Median over `width` frames along the last axis, edges reflected."""
    if weights.shape[-1] <= width // 2:
        return weights
    padded = torch.nn.functional.pad(weights[None], (width // 2, width // 2, 0, 0), mode="reflect")[0]
    return padded.unfold(-1, width, 1).median(dim=-1).values


def _tidy(words: list[WordTiming], seconds: float) -> list[WordTiming]:
    """Words inside [0, seconds], starts never decreasing, and a word that runs across a long pause at a
    sentence edge cut back (the attention of a word next to silence tends to spread into it)."""
    durations = [w.end - w.start for w in words if w.end > w.start]
    longest = min(MAX_WORD_SECONDS, 2 * float(np.median(durations))) if durations else MAX_WORD_SECONDS
    tidy: list[WordTiming] = []
    for index, word in enumerate(words):
        start, end = min(max(word.start, 0.0), seconds), min(max(word.end, 0.0), seconds)
        if tidy:
            start = max(start, tidy[-1].start)
        if end - start > longest:
            if word.word.strip()[-1:] in SENTENCE_ENDS:
                end = start + longest
            elif index > 0 and words[index - 1].word.strip()[-1:] in SENTENCE_ENDS:
                start = end - longest
        tidy.append(WordTiming(word.word, round(start, 3), round(max(end, start), 3), word.probability))
    return tidy


def snap_to_sound(words: list[WordTiming], samples: np.ndarray, sample_rate: int = 16_000) -> list[WordTiming]:
    """Move each word's start forward and its end back to where there is sound.

    Attention puts a token boundary somewhere in the pause between two words, so a word after a pause starts
    early and the one before it ends late. Frames of 20 ms whose level is over a threshold (a tenth of the loud
    frames' level, and well over the quiet floor) count as sound; a word with no such frame keeps its times."""
    hop = sample_rate // FRAMES_PER_SECOND
    count = len(samples) // hop
    if not words or count < 3:
        return words
    level = np.sqrt(np.mean(samples[: count * hop].reshape(count, hop).astype(np.float64) ** 2, axis=1))
    floor, loud = np.percentile(level, 10), np.percentile(level, 95)
    threshold = max(0.1 * loud, 3 * floor)
    if loud <= threshold:  # no contrast to go by (all speech, or all noise)
        return words
    sound = level > threshold
    frames = [[int(w.start * FRAMES_PER_SECOND), int(np.ceil(w.end * FRAMES_PER_SECOND))] for w in words]
    # the pause nearest the attention's boundary between two neighbours (sound on both sides of it, within
    # MAX_SHIFT_FRAMES) is where one ends and the next begins: stops inside a word are quiet too, but further
    for left, right in itertools.pairwise(frames):
        low, high = left[0], min(right[1], count)
        pause = _nearest_pause(sound[low:high], right[0] - low)
        if pause is not None:
            left[1], right[0] = low + pause[0], low + pause[1]
    snapped = []
    for word, (first, last) in zip(words, frames, strict=True):
        inside = np.flatnonzero(sound[first : min(last, count)])
        if len(inside):
            first, last = first + int(inside[0]), first + int(inside[-1]) + 1
        start, end = first / FRAMES_PER_SECOND, last / FRAMES_PER_SECOND
        snapped.append(WordTiming(word.word, round(start, 3), round(max(end, start), 3), word.probability))
    return snapped


def _nearest_pause(sound: np.ndarray, boundary: int) -> tuple[int, int] | None:
    """[first, past-the-end) of the quiet run of at least MIN_PAUSE_FRAMES, with sound before and after it,
    nearest to frame `boundary` (and at most MAX_SHIFT_FRAMES from it); None if there is none."""
    loud = np.flatnonzero(sound)
    if len(loud) < 2:
        return None
    best, best_distance = None, MAX_SHIFT_FRAMES + 1
    for before, after in itertools.pairwise(loud):
        if after - before - 1 >= MIN_PAUSE_FRAMES:
            run = (int(before) + 1, int(after))
            distance = 0 if run[0] <= boundary <= run[1] else min(abs(boundary - run[0]), abs(boundary - run[1]))
            if distance < best_distance:
                best, best_distance = run, distance
    return best


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _decoder_weights(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise TinyAudioError(f"no safetensors weights in {folder}", hint="word timing reads the Whisper base's weights")
    keys: dict[str, Path] = {}
    for file in files:
        with safe_open(file, "pt") as handle:
            keys.update(dict.fromkeys(handle.keys(), file))
    prefix = next((p for p in DECODER_PREFIXES if f"{p}embed_tokens.weight" in keys), None)
    if prefix is None:
        raise TinyAudioError(f"{folder} holds no Whisper decoder weights", hint="an encoder-only folder cannot align")
    state = {}
    for key, file in keys.items():
        if key.startswith(prefix) and not (prefix == "" and key.startswith(("encoder.", "model."))):
            with safe_open(file, "pt") as handle:
                state[key[len(prefix) :]] = handle.get_tensor(key)
    return state
