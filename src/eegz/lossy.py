"""Lossy coding of EEG channels with the neural codec, block by block, as the blocks stream past.

One call each way: `TokenEncoder` takes blocks of digital samples and gives each block's token streams,
`TokenDecoder` takes a block's token streams (and its neighbours') and gives its digital samples.

A block is a run of whole EDF records whose edges fall on codec frames. Each channel is resampled to the
codec rate and each block normalized on its own (offset = median, scale = 16 × a robust standard
deviation, both stored as float32). Up to four consecutive blocks of a channel go through the encoder in
one pass, with `context` frames of the real neighbouring signal at each end of the run; each block keeps
its own frames. On decode a block is run through the decoder with its neighbours' frames as context and
only its own samples are kept, so a time range decodes from the blocks it touches plus one on each side
and gives exactly what a full decode gives. Memory holds a handful of blocks, whatever the length.
From format 4 on, each stream also carries the block's band envelope (envelope.py): the decoder brings
the power of its output above beta to what the input held (format 5: at the channel's own rate). From
format 12 on, a stream also carries the block's stationary tones (tones.py, mains lines): the encoder takes
them out before the codec sees the block, and the decoder adds them back exactly. From format 16 on, it also
carries the block's 30-70 Hz time profile, which the decoder's fast part then follows in time (envelope.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import envelope, tones
from .dsp import alignment_period, rate_ratio, resample, robust_std
from .edf import Signal
from .errors import FormatError
from .neural import ABSENT_CODE
from .runs import NO_EDGES, NO_RUNS, checked, constant_runs, edges, requantized, tones_outside, written
from .tokens import (CHANNEL_RATE_ENVELOPE, NO_PROFILE, NO_TONES, TOKEN_CEILING, TOKEN_FINE_BANDS,
                     TOKEN_HIGH_PROFILE, TOKEN_PROFILE, TOKEN_RUN_EDGES, TOKEN_RUNS, TOKEN_TONES, TokenStream,
                     pack_tokens, token_bands, token_tables, unpack_tokens)

# normalized = (x - median) / (16 σ): about the amplitude the model was trained at (µV / 200 for EEG of
# σ ≈ 12 µV). Measured on held-out eegmat at 3/6/9 codebooks: PRDN 31.7/22.2/19.8 % against 32.9/23.5/20.8
# at 10 σ, 24.5 % (6 codebooks) at 5 σ and 22.6 % at 20 σ, with 1 % fewer bits.
SCALE_FACTOR = 16.0
BLOCK_SECONDS = 16.0  # the length of a lossy block: the unit of normalization (and of training's blocks)
BASE_CONTEXT_FRAMES = 8
MAX_RUN_BLOCKS = 4  # blocks encoded in one pass: 64 s of one channel, about the CPU's fastest size
# Format 14 also resamples the decoded wave to the channel's rate as if it went on along the straight line through
# its ends (scipy's padtype "line") instead of falling to 0 past them: at a recording's first and last samples
# (where no neighbour's context lies beyond) the filter pulled the wave towards 0, and the band envelope, which
# works on the whole block, spread that step's broadband power over the first and last blocks (the example's last
# block: 150-240 Hz at 3.7x the original's power, median over channels; 1.35x along the line)
LINE_PADDING = 14
EXACT_FILL = 14  # the format from which a token stream's filled envelope parts lose the noise's cross term
# Format 14: a block's first BLEND_SECONDS at the codec rate are normalized with values that pass from its left
# neighbour's offset and scale to its own along a raised cosine (where that neighbour holds a token stream for the
# channel). With a jump at each seam, the codec had to rebuild a step that the original does not hold, and the
# decoder's version of it, undone with each block's own values, left a step in the decoded signal
NORMALIZATION_BLEND = 14
BLEND_SECONDS = 0.5
# Format 15 re-quantizes a token stream's samples through spec 8's rail limiter, as transform streams since
# format 11 (runs.requantized): clipping cut corners into a decoded swing that passed a rail, and half the
# invented 80-250 Hz events left on held-out eegmat were those clicks (see runs.LIMITER_SECONDS)
TOKEN_RAIL_LIMITER = 15
# format 20: the band envelope works on the block with half a second of its decoded context on each side, and its
# scaling above envelope.SEAM_LOW_HZ reaches the block's faded ends (spec 6.4, Context and seams; seam_sides)
TOKEN_SEAMS = 20
# format 22: the envelope's skirt below 30 Hz fills only up to a floor, the first band's density faded out
# (spec 6.4, Skirt's floor; envelope._skirt_floor); the streams are laid out as in format 21
SKIRT_FLOOR = 22
# format 23: the high band's short bursts are capped within each profile part before its rescaling (spec 6.8, Burst
# cap; envelope.HIGH_BURST_CREST); the streams are laid out as in format 21
HIGH_BURST_CAP = 23
# format 24: the high band's shaping and rescaling run envelope.HIGH_PROFILE_ROUNDS times (spec 6.8, Rounds); the
# streams are laid out as in format 21
TOKEN_HIGH_ROUNDS = 24
TOKEN_QUARTER_PARTS = 17  # format 17: the envelope's parts and the profile's rescaling parts are 0.25 Hz wide
# (envelope.QUARTER_PART_HZ); the streams are laid out as in format 16

TOKEN_ENVELOPE_RULES = 7  # token streams keep 6.4's envelope in every later format (8.2's and 8.3's are the
# transform streams': on the neural codec's output its fill ramp halved the noise above 30 Hz where the codec
# kept some, and held-out eegmat's 30-70 Hz power came back 4 % short instead of 2 %)
# A token stream carries at most one tone per TONE_SECONDS of its block (2 in a 16-s block; 5-8 bytes each, 2-3 % of
# the bits at 6 codebooks), whatever its codebooks: so that a file recoded to fewer codebooks is still the file
# that compressing at that number gives, and a block keeps its tones under --quality. Bonn 051-070 at 6 codebooks:
# the texture detector's agreement 98.8 / 98.2 / 94.4 / 92.0 / 94.3 % -> 99.6 / 98.7 / 95.4 / 93.5 / 94.1 % in sets
# A-E, PRDN 22.9 / 26.3 -> 22.1 / 24.9 % in A and B, 1 % more bits.
TONE_SECONDS = 8.0



def block_is_codable(digital: np.ndarray, signal: Signal) -> bool:
    """False for flat, clipped or disconnected stretches: those are stored exactly instead."""
    if len(digital) == 0 or robust_std(digital.astype(np.float64)) == 0:
        return False
    rails = np.count_nonzero((digital <= signal.digital_min) | (digital >= signal.digital_max))
    return rails <= 0.01 * len(digital)


def context_frames(signals: list[Signal], codec_rate: int, hop: int) -> int:
    """Context long enough to realign resampling to the channel's own sample grid."""
    period = max((alignment_period(s.sample_rate, codec_rate) for s in signals), default=1)
    return BASE_CONTEXT_FRAMES + math.ceil(period / hop)


def block_normalization(own: np.ndarray) -> tuple[float, float]:
    """(offset, scale), rounded to float32 as stored, so that encoder and decoder use the very same values."""
    offset = float(np.float32(np.median(own)))
    scale = float(np.float32(max(SCALE_FACTOR * robust_std(own), 1e-30)))
    return offset, scale


def blend_samples(codec_rate: float) -> int:
    """Format 14: how many codec samples at a block's start blend its left neighbour's normalization into its own."""
    return int(round(BLEND_SECONDS * codec_rate))


def blend_weights(n: int) -> np.ndarray:
    """Format 14: the weight of a block's own normalization over its first n codec samples (spec 6.1), the rest
    being its left neighbour's: a raised cosine from 0 to 1."""
    return 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)


def normalization(blocks: list, blend: int, before: tuple = (0, None), after: tuple = (0, None)) -> tuple:
    """Per-sample (offsets, scales) over consecutive codec samples (spec 6.1): `before` samples of left context,
    then `blocks` [(samples, (offset, scale))], then `after` samples of right context; each context as
    (samples, the (offset, scale) of the block it lies in, or None where that block holds no token stream: then
    the block next to it lends its own). With `blend` (format 14), each block's first `blend` samples pass from
    the block before's values (the first block's from the left context's, where known) along blend_weights, and
    the right context's from the last block's."""
    pieces = [(before[0], before[1] or blocks[0][1], None)]
    pieces += [(length, norm, blocks[k - 1][1] if k else before[1]) for k, (length, norm) in enumerate(blocks)]
    pieces.append((after[0], after[1] or blocks[-1][1], blocks[-1][1] if after[1] else None))
    offsets, scales = [], []
    for length, (offset, scale), left in pieces:
        o, s = np.full(length, offset), np.full(length, scale)
        m = min(blend, length) if left is not None else 0
        if m:
            w = blend_weights(m)
            o[:m] = (1.0 - w) * left[0] + w * offset
            s[:m] = (1.0 - w) * left[1] + w * scale
        offsets.append(o)
        scales.append(s)
    return np.concatenate(offsets), np.concatenate(scales)


def hop_of(config: dict) -> int:
    """Samples per codec frame of a stored model configuration (the product of its encoder strides)."""
    return math.prod(int(r) for r in config["encoder_rates"])


def frame_of(record: int, record_duration: float, rate: int, hop: int) -> int:
    """The codec frame at which a record starts (spec 6.1: round half to even)."""
    return int(round(record * record_duration * rate / hop))


def block_runs(blocks: list[int], max_run: int) -> list[list[int]]:
    """Consecutive block numbers grouped into runs of at most max_run."""
    runs: list[list[int]] = []
    for b in blocks:
        if runs and runs[-1][-1] == b - 1 and len(runs[-1]) < max_run:
            runs[-1].append(b)
        else:
            runs.append([b])
    return runs


# ---------------------------------------------------------------- encoding

def block_tones(digital: np.ndarray, rate: float, seconds: float,
                known: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Format 12: the stationary tones of one channel's block of `seconds` (rows k, a, b as a stream stores
    them; at most one per TONE_SECONDS) and their samples in digital units (None without tones); fitted where
    the samples are `known` (not in a constant run)."""
    most = int(seconds / TONE_SECONDS)
    found = most > 0 and len(digital) < tones.MAX_SAMPLES
    rows = tones.as_stored(np.asarray(digital, np.float64), rate, most, known) if found else NO_TONES
    return rows, tones.synthesized(rows, len(digital)) if len(rows) else None


def block_input(digital: np.ndarray, signal: Signal, seconds: float, version: int) -> tuple:
    """What a token stream stores of one channel's block beside its codes, and what the codec and the envelope
    see: (its tones (format 12), their samples in digital units (None without), its constant runs (format 14),
    its digital samples with the tones taken out and the runs bridged over (None without runs)). As transform
    streams do (spec 8.4, 8.5): tones are fitted outside the runs, and the runs bridged again from what the
    tones leave."""
    if version < TOKEN_TONES:
        return NO_TONES, None, NO_RUNS, None
    rate = signal.sample_rate
    found = constant_runs(digital, signal) if version >= TOKEN_RUNS else NO_RUNS
    rows, samples, rest = tones_outside(digital, found, rate, lambda x, known: block_tones(x, rate, seconds, known))
    return rows, samples, found, rest if len(found) else None


@dataclass
class Block:
    """One block of the recording as the pipelines pass it around."""
    index: int
    first_record: int
    record_count: int
    digital: list  # per signal: int32 samples of the block's records
    _codable: dict = field(default_factory=dict, repr=False)

    def is_codable(self, i: int, signal: Signal) -> bool:
        """block_is_codable for signal i, found once: the encoder asks it of a block in two runs and for
        each mode's streams (two medians of the block each time)."""
        if i not in self._codable:
            self._codable[i] = block_is_codable(self.digital[i], signal)
        return self._codable[i]


class TokenEncoder:
    """Blocks in, token streams out: push() each block in order, then finish(). A block's streams come out
    once the block after it (its right context) has arrived, in runs of up to MAX_RUN_BLOCKS blocks."""

    def __init__(self, codec, signals: list[Signal], neural: list[int], n_codebooks: int, record_duration: float,
                 version: int, band_envelope: bool = True, quality: float | None = None):
        self.codec, self.signals, self.neural, self.n_codebooks = codec, signals, neural, n_codebooks
        self.version, self.band_envelope, self.quality = version, band_envelope, quality
        self.rate, self.hop = codec.config.sample_rate, codec.config.hop
        self.context = context_frames([signals[i] for i in neural], self.rate, self.hop)
        self.record_duration = record_duration
        self.tables = token_tables(codec.token_counts)
        self.left: Block | None = None  # the block before the pending run: left context
        self.pending: list[Block] = []
        # (block, signal): its block_input (tones, their samples, constant runs, bridged samples), while the
        # block is in a span
        self.found: dict[tuple[int, int], tuple] = {}
        self.norms: dict[tuple[int, int], tuple[float, float]] = {}  # (block, signal): its stored offset and scale

    def push(self, block: Block) -> list[tuple[int, dict]]:
        self.pending.append(block)
        if len(self.pending) <= MAX_RUN_BLOCKS:
            return []
        run, lookahead = self.pending[:MAX_RUN_BLOCKS], self.pending[MAX_RUN_BLOCKS]
        out = self._encode(run, lookahead)
        self.left, self.pending = run[-1], self.pending[MAX_RUN_BLOCKS:]
        return out

    def finish(self) -> list[tuple[int, dict]]:
        out = self._encode(self.pending, None) if self.pending else []
        self.pending = []
        return out

    def _encode(self, run: list[Block], right: Block | None) -> list[tuple[int, dict]]:
        """Token streams of a run of consecutive blocks, {block index: {signal: stream}}."""
        jobs = [job for i in self.neural for job in self._signal_jobs(run, right, i)]
        codes = self.codec.encode([segment for _, segment, _ in jobs], self.n_codebooks)
        kept = self._fewest_codebooks(jobs, codes) if self.quality is not None else None
        out: dict[int, dict] = {b.index: {} for b in run}
        digital = {b.index: b.digital for b in run}
        for j, ((i, _, parts), c) in enumerate(zip(jobs, codes)):
            for k, (block, offset, scale, own, levels, time_profile, slow, high) in enumerate(parts):
                n = kept[j][k] if kept else self.n_codebooks
                lines, _, found, _ = self.found[block, i]
                beside = edges(digital[block][i], found) if self.version >= TOKEN_RUN_EDGES else NO_EDGES
                stream = TokenStream(c[:n, own], offset, scale, levels, lines, found, time_profile, slow, beside,
                                     high)
                out[block][i] = pack_tokens(stream, self.tables, self.version)
        first = run[-1].index  # the next span starts at this run's last block
        self.found = {key: entry for key, entry in self.found.items() if key[0] >= first}
        self.norms = {key: entry for key, entry in self.norms.items() if key[0] >= first}
        return list(out.items())

    def _signal_jobs(self, run: list[Block], right: Block | None, i: int) -> list[tuple]:
        """Signal i's encoder inputs for a run: (signal, segment, [(block, offset, scale, own frames, band
        envelope, time profile, slow-band ceiling, high-band time profile)]) for each stretch of its codable
        blocks."""
        s = self.signals[i]
        codable = [b for b in run if b.is_codable(i, s)]
        if not codable:
            return []
        span = [self.left] if self.left is not None else []
        span += run + ([right] if right is not None else [])
        x = np.concatenate([self._physical_input(b, i) for b in span])
        center = float(np.median(x))
        u = resample(x - center, s.sample_rate, self.rate) + center
        start_frame = self._frame(span[0].first_record)
        jobs = []
        for part in block_runs([b.index for b in codable], MAX_RUN_BLOCKS):
            segment, parts = self._job(u, start_frame, [b for b in run if b.index in part], i, right)
            jobs.append((i, segment, [(*p, *self._envelope(run, p[0], s, i, p[1], p[2])) for p in parts]))
        return jobs

    def _input(self, block: Block, i: int) -> tuple:
        """Signal i's block_input: its tones, their samples, its constant runs and its samples without them,
        found once."""
        key = (block.index, i)
        if key not in self.found:
            # every block, coded or kept exactly: one stored exactly is a coded neighbour's context, and its
            # lines are taken out there as its own (whether it is codable costs a median to find out)
            self.found[key] = block_input(block.digital[i], self.signals[i],
                                          block.record_count * self.record_duration, self.version)
        return self.found[key]

    def _physical_input(self, block: Block, i: int) -> np.ndarray:
        """Signal i's physical samples in a block, its tones taken out and its constant runs bridged (what the
        codec and the envelope see)."""
        s, (_, lines, _, smooth) = self.signals[i], self._input(block, i)
        if smooth is not None:
            return s.to_physical(smooth)
        return s.to_physical(block.digital[i]) - (0.0 if lines is None else s.gain * lines)

    def _frame(self, record: int) -> int:
        return frame_of(record, self.record_duration, self.rate, self.hop)

    def _envelope(self, run: list[Block], index: int, signal: Signal, i: int, offset: float,
                  scale: float) -> tuple[bytes, np.ndarray, bytes, np.ndarray]:
        """The band envelope of block `index` of signal i (spec 6.4), from format 16 its 30-70 Hz time profile
        (6.8, where it has one), from format 18 its slow-band ceiling (6.9) and from format 21 its time profile
        from 70 Hz up (6.8): of its own samples at the channel's rate, in the block's normalization."""
        if not self.band_envelope:
            return b"", NO_PROFILE, b"", NO_PROFILE
        block = next(b for b in run if b.index == index)
        rate = signal.sample_rate
        x = (self._physical_input(block, i) - offset) / scale
        squared = envelope.power_spectrum(x, rate)  # the envelope's and the ceiling's
        return (envelope.levels(x, rate, rate / 2, token_bands(rate, self.version), squared=squared),
                envelope.gamma_profile(x, rate) if self.version >= TOKEN_PROFILE else NO_PROFILE,
                envelope.ceiling(x, rate, squared) if self.version >= TOKEN_CEILING else b"",
                envelope.high_profile(x, rate) if self.version >= TOKEN_HIGH_PROFILE else NO_PROFILE)

    def _fewest_codebooks(self, jobs: list, codes: list[np.ndarray]) -> list[list[int]]:
        """--quality: for each job's blocks, the fewest codebooks from MIN_QUALITY_CODEBOOKS up whose decoded
        block meets the target (meets_quality), else all of them. Candidates are decoded with the run's
        context at the same number of codebooks, as a decoder does when the neighbours keep as many."""
        kept: list[list[int | None]] = [[None] * len(parts) for _, _, parts in jobs]
        for n in range(min(MIN_QUALITY_CODEBOOKS, self.n_codebooks), self.n_codebooks):
            open_jobs = [j for j, row in enumerate(kept) if None in row]
            if not open_jobs:
                break
            waves = self.codec.decode([codes[j][:n] for j in open_jobs])
            for j, wave in zip(open_jobs, waves):
                segment, parts = jobs[j][1], jobs[j][2]
                for k, part in enumerate(parts):
                    own = slice(part[3].start * self.hop, part[3].stop * self.hop)
                    if kept[j][k] is None and meets_quality(segment[own], wave[own], self.quality, self.rate):
                        kept[j][k] = n
        return [[self.n_codebooks if n is None else n for n in row] for row in kept]

    def _job(self, u: np.ndarray, start_frame: int, blocks: list[Block], i: int, right: Block | None):
        """The normalized encoder input of consecutive blocks of signal i, with `context` frames of the signal
        beside them normalized like the blocks there (or, where those hold no token stream, like the block next to
        them); from format 14 each block's first BLEND_SECONDS pass from its left neighbour's values to its own
        (normalization). And where each block's own frames lie in it."""
        hop, n_frames = self.hop, len(u) // self.hop
        edges = [self._frame(b.first_record) - start_frame for b in blocks]
        edges.append(self._frame(blocks[-1].first_record + blocks[-1].record_count) - start_frame)
        s0, s1 = max(0, edges[0] - self.context), min(n_frames, edges[-1] + self.context)
        blend = blend_samples(self.rate) if self.version >= NORMALIZATION_BLEND else 0
        norms = [block_normalization(self._own(u, b0, b1)) for b0, b1 in zip(edges[:-1], edges[1:])]
        left = self.norms.get((blocks[0].index - 1, i)) if blend else None
        after = None
        if blend and right is not None and right.index == blocks[-1].index + 1 \
                and right.is_codable(i, self.signals[i]):  # an estimate: its own span decides
            r0 = self._frame(right.first_record) - start_frame
            after = block_normalization(self._own(u, r0, self._frame(right.first_record + right.record_count) - start_frame))
        offsets, scales = normalization([((b1 - b0) * hop, norm) for b0, b1, norm in zip(edges[:-1], edges[1:], norms)],
                                        blend, ((edges[0] - s0) * hop, left), ((s1 - edges[-1]) * hop, after))
        segment = (self._own(u, s0, s1) - offsets) / scales
        parts = []
        for b, b0, b1, (offset, scale) in zip(blocks, edges[:-1], edges[1:], norms):
            self.norms[b.index, i] = (offset, scale)
            parts.append((b.index, offset, scale, slice(b0 - s0, b1 - s0)))
        return segment, parts

    def _own(self, u: np.ndarray, f0: int, f1: int) -> np.ndarray:
        """u's samples of frames [f0, f1), holding its last value where the recording ends before them."""
        part = u[f0 * self.hop:f1 * self.hop]
        missing = (f1 - f0) * self.hop - len(part)
        return np.concatenate([part, np.full(missing, part[-1] if len(part) else 0.0)]) if missing > 0 else part


MIN_QUALITY_CODEBOOKS = 3
QUALITY_BANDS = ((0.5, 4.0), (4.0, 8.0), (8.0, 13.0), (13.0, 30.0))  # delta..beta; faster: the band envelope


def meets_quality(x: np.ndarray, y: np.ndarray, quality: float, rate: float) -> bool:
    """--quality Q: a block meets Q when its PRDN is at most Q % and the power of each band from delta to
    beta is within Q % of the input's (or of 1 % of its total power, if more), on normalized codec-rate
    samples before the band envelope."""
    centred = x - x.mean()
    norm = float(np.linalg.norm(centred))
    if norm == 0.0:
        return True
    if 100.0 * float(np.linalg.norm(x - y)) / norm > quality:
        return False
    f = np.fft.rfftfreq(len(x), 1.0 / rate)
    window = np.hanning(len(x))
    px = np.abs(np.fft.rfft(centred * window)) ** 2
    py = np.abs(np.fft.rfft((y - y.mean()) * window)) ** 2
    floor = 0.01 * px.sum()  # a band holding under 1 % of the power counts as holding 1 %: noise is no target
    for lo, hi in QUALITY_BANDS:
        sel = (f >= lo) & (f < hi)
        want = px[sel].sum()
        if abs(py[sel].sum() - want) > quality / 100.0 * max(want, floor):
            return False
    return True


# ---------------------------------------------------------------- decoding

def with_context(codes: np.ndarray, left: np.ndarray | None, right: np.ndarray | None,
                 context: int, partial: bool = True) -> tuple[np.ndarray, int]:
    """A block's codes with up to `context` neighbour frames on each side, and how many are on the left.
    Neighbours coded with more codebooks than the block give only the block's number. One coded with fewer
    gives the ones it has, the others marked ABSENT_CODE (format 5); before format 5 (`partial` False) it gave
    no context at all, and a block then decoded with an edge where its neighbour should be (a click at
    the seam between blocks of different codebook counts, which --quality makes)."""
    n_q = codes.shape[0]

    def side(neighbour, frames):
        if neighbour is None or not context or not (partial or neighbour.shape[0] >= n_q):
            return np.zeros((n_q, 0), np.uint16)
        part = neighbour[:n_q, frames]
        if part.shape[0] < n_q:
            part = np.concatenate([part, np.full((n_q - part.shape[0], part.shape[1]), ABSENT_CODE, np.uint16)])
        return part

    left_part, right_part = side(left, slice(-context, None)), side(right, slice(None, context))
    return np.concatenate([left_part, codes, right_part], axis=1), left_part.shape[1]


def resampled_channel(wave: np.ndarray, n_left: int, offset, scale, first_frame: int, signal: Signal,
                      codec_rate: int, hop: int, padtype: str = "constant") -> tuple[np.ndarray, int]:
    """A decoded block's wave (context included) as physical samples at the channel's rate, and the recording's
    sample index of the first (spec 6.1): `offset` and `scale` undo its normalization (per sample from format 14);
    `padtype` (dsp.resample): "line" from format 14 (see LINE_PADDING)."""
    wave = wave * scale + offset
    start_codec = (first_frame - n_left) * hop  # absolute codec-rate index of wave[0]
    period = alignment_period(signal.sample_rate, codec_rate)
    aligned = -(-start_codec // period) * period
    up, down = rate_ratio(codec_rate, signal.sample_rate)
    return resample(wave[aligned - start_codec:], codec_rate, signal.sample_rate, padtype), aligned * up // down


def channel_samples(channel: np.ndarray, first: int, first_sample: int, n_samples: int, offset) -> np.ndarray:
    """Samples [first_sample, first_sample + n_samples) of a resampled_channel whose first sample is `first` (past
    its end the last value, or the last `offset` where it holds none of them)."""
    begin = first_sample - first
    out = channel[begin:begin + n_samples]
    if len(out) < n_samples:  # the very end of a recording: hold the last value
        out = np.concatenate([out, np.full(n_samples - len(out), out[-1] if len(out) else np.ravel(offset)[-1])])
    return out


def seam_sides(channel: np.ndarray, first: int, first_sample: int, n_samples: int, rate: float) -> tuple[int, int]:
    """Format 20 (spec 6.4, Context and seams): how many samples of decoded context before and after a block's own
    the band envelope reads: SEAM_SECONDS of the channel's on a side where the resampled wave holds twice that."""
    side = round(rate * envelope.SEAM_SECONDS)
    held = (first_sample - first, first + len(channel) - first_sample - n_samples)
    return tuple(side if count >= 2 * side else 0 for count in held)


SCALE_SEED = 7  # the format from which the noise seed also takes the stream's scale


def seed_of(first_record: int, signal: int, scale: float | None = None) -> int:
    """The noise generator's seed of a channel-block (spec 6.4). From format 7 (scale given) it also takes
    the bits of the stream's float32 scale, so that two recordings' blocks at the same place get different
    noise: with the same noise in every file, a spectrum averaged over files kept one noise's ripples,
    which read as invented lines (Bonn set D through the transform codec, 20 one-block files: 1.86x at
    40 Hz with one seed for all, 1.48x with the scale in it)."""
    seed = (first_record << 16) | signal
    if scale is not None:
        seed += int(np.array(scale, "<f4").view("<u4")) << 32
    return seed & 0xFFFFFFFFFFFFFFFF


class TokenDecoder:
    """Token streams in, samples out: decode(block's streams, its neighbours' streams) per block."""

    def __init__(self, codec, codec_meta: dict, signals: list[Signal], styles: list, record_duration: float,
                 version: int, codebooks: int | None = None):
        self.codec, self.signals, self.styles = codec, signals, styles
        self.rate, self.hop = codec.config.sample_rate, codec.config.hop
        self.context = codec_meta["context_frames"]
        self.n_codebooks = codec_meta["n_codebooks"]
        self.record_duration = record_duration
        self.version = version
        self.tables = token_tables(codec.token_counts) if version >= 3 else None
        self.keep = codebooks  # decode from the first `keep` codebooks only (a quick preview); None: all

    def _kept(self, unpacked: TokenStream) -> TokenStream:
        return unpacked._replace(codes=unpacked.codes[:self.keep]) if self.keep else unpacked

    def frames(self, first_record: int, record_count: int) -> int:
        return (frame_of(first_record + record_count, self.record_duration, self.rate, self.hop)
                - frame_of(first_record, self.record_duration, self.rate, self.hop))

    def unpack(self, data: bytes, first_record: int, record_count: int) -> TokenStream:
        """One channel-block's token stream."""
        frames = self.frames(first_record, record_count)
        if self.version >= 3:
            return self._kept(unpack_tokens(data, self.tables, frames, self.n_codebooks, self.version,
                                            record_count * self.record_duration))
        from .legacy.tokens import unpack_tokens_v1
        return self._kept(TokenStream(*unpack_tokens_v1(data, self.codec.config.bits_per_code, self.n_codebooks,
                                                        self.codec.token_counts, frames)))

    def decode(self, first_record: int, record_count: int, own: dict, left: dict, right: dict) -> dict:
        """{signal: digital samples} of a block from its unpacked token streams {signal: TokenStream} and
        its neighbours' (empty dicts where a neighbour is missing or not neural)."""
        return self.finish(self.waves(first_record, record_count, own, left, right))

    def waves(self, first_record: int, record_count: int, own: dict, left: dict, right: dict) -> tuple:
        """decode's first half, the model's: the block's decoded waves with what finish needs besides. A caller
        may run the block's finish beside the next block's waves (numpy's work beside torch's)."""
        jobs = []
        for i, t in own.items():
            l, r = left.get(i), right.get(i)
            full, n_left = with_context(t.codes, l.codes if l else None, r.codes if r else None, self.context,
                                        partial=self.version >= CHANNEL_RATE_ENVELOPE)
            jobs.append((i, full, n_left, t, l, r))
        waves = self.codec.decode_block([(c, n_left, self.styles[i] or 0) for i, c, n_left, *_ in jobs])
        return first_record, record_count, jobs, waves

    def finish(self, decoded: tuple) -> dict:
        """decode's second half: {signal: digital samples} from what waves gave (spec 6.1 after the decoder)."""
        first_record, record_count, jobs, waves = decoded
        first_frame = frame_of(first_record, self.record_duration, self.rate, self.hop)
        n_frames = self.frames(first_record, record_count)
        out = {}
        for (i, full, n_left, t, l, r), wave in zip(jobs, waves):
            s = self.signals[i]
            if t.envelope and self.version < CHANNEL_RATE_ENVELOPE:
                wave = self._codec_rate_envelope(wave, n_left, n_frames, t, s, self._seed(first_record, i, t))
            spr = s.samples_per_record
            offset, scale = self._normalization(len(wave), n_left, n_frames, t, l, r)
            channel, first = resampled_channel(wave, n_left, offset, scale, first_frame, s, self.rate, self.hop,
                                               "line" if self.version >= LINE_PADDING else "constant")
            start, count = first_record * spr, record_count * spr
            before, after = (seam_sides(channel, first, start, count, s.sample_rate)
                             if self.version >= TOKEN_SEAMS and t.envelope else (0, 0))
            phys = channel_samples(channel, first, start - before, count + before + after, offset)
            if (t.envelope or t.ceiling) and self.version >= CHANNEL_RATE_ENVELOPE:
                phys = self._channel_rate_envelope(phys, t, s, self._seed(first_record, i, t), before, after)
            if len(t.tones):  # format 12 (spec 6.6): in digital units, before re-quantizing
                if not tones.in_range(t.tones, len(phys)):
                    raise FormatError("damaged token stream (a tone at or above the Nyquist frequency)")
                phys = phys + s.gain * tones.synthesized(t.tones, len(phys))
            if not checked(t.runs, len(phys), s):  # format 14 (spec 6.7)
                raise FormatError("damaged token stream (a constant run outside the block or the digital range)")
            out[i] = self._requantized(phys, s, t.runs, t.run_edges)
        return out

    def _normalization(self, n: int, n_left: int, n_frames: int, t: TokenStream, l: TokenStream | None,
                       r: TokenStream | None) -> tuple:
        """The offset and scale that undo the encoder's normalization of a decoded wave of n samples (spec 6.1):
        the block's own; from format 14 per sample, the context frames with their own block's values and each
        block's first BLEND_SECONDS blended from its left neighbour's (normalization)."""
        if self.version < NORMALIZATION_BLEND:
            return t.offset, t.scale
        own = n_frames * self.hop
        return normalization([(own, (t.offset, t.scale))], blend_samples(self.rate),
                             (n_left * self.hop, (l.offset, l.scale) if l is not None else None),
                             (n - n_left * self.hop - own, (r.offset, r.scale) if r is not None else None))

    def _requantized(self, phys: np.ndarray, s: Signal, runs: np.ndarray, run_edges: np.ndarray) -> np.ndarray:
        """The channel's digital samples (spec 6.1's last step): from format 18 the samples beside the constant
        runs pinned to the original's, from format 15 through the rail limiter, then the constant runs (format
        14), exactly."""
        if s.gain == 0.0:
            return written(s.to_digital(phys), runs)
        return requantized(s.digital_values(phys), s, runs, self.version >= TOKEN_RAIL_LIMITER, run_edges)

    def _seed(self, first_record: int, signal: int, t: TokenStream) -> int:
        return seed_of(first_record, signal, t.scale if self.version >= SCALE_SEED else None)

    def _channel_rate_envelope(self, decoded: np.ndarray, t: TokenStream, s: Signal, seed: int, before: int = 0,
                               after: int = 0) -> np.ndarray:
        """Formats 5 and later (spec 6.4): the block's own samples at the channel's rate (`decoded` less its `before`
        and `after` samples of context, format 20) brought to the stored band powers, in the block's normalization;
        from format 16 their 30-70 Hz part then follows the stored time profile (6.8), from format 21 their part
        from 70 Hz up its own (6.8, High band; from format 23 with its bursts capped, from 24 in rounds). From format
        18 the slow-band ceiling (6.9) comes first; from format 22 the envelope's skirt fills only up to its floor
        (6.4)."""
        rate, fine = s.sample_rate, self.version >= TOKEN_FINE_BANDS
        bands, part_hz = token_bands(rate, self.version), _part_hz(self.version)
        normalized = (decoded - t.offset) / t.scale
        y = normalized[before:len(normalized) - after]
        context = (normalized, before) if before or after else None
        if t.ceiling:
            y = envelope.under_ceiling(y, t.ceiling, rate)
        if not t.envelope:
            return y * t.scale + t.offset
        if len(t.envelope) != len(bands):
            raise FormatError("damaged token stream (band envelope)")
        y = envelope.apply(y, t.envelope, rate, rate / 2, seed, bands, _rounding(s, t),
                           version=min(self.version, TOKEN_ENVELOPE_RULES),
                           part_hz=part_hz, mains_noise=fine,
                           exact_fill=self.version >= EXACT_FILL, context=context,
                           skirt_floor=self.version >= SKIRT_FLOOR)
        if len(t.profile):  # format 16 (spec 6.8)
            if len(t.profile) != envelope.profile_count(len(y), rate):
                raise FormatError("damaged token stream (time profile count)")
            y = envelope.follow_gamma_profile(y, t.profile, rate, seed, part_hz)
        if len(t.high_profile):  # format 21 (spec 6.8, High band)
            if len(t.high_profile) != envelope.profile_count(len(y), rate) or not envelope.has_high_band(rate):
                raise FormatError("damaged token stream (high-band time profile)")
            y = envelope.follow_high_profile(y, t.high_profile, rate, part_hz,
                                             burst_cap=self.version >= HIGH_BURST_CAP,
                                             rounds=envelope.HIGH_PROFILE_ROUNDS
                                             if self.version >= TOKEN_HIGH_ROUNDS else 1)
        return y * t.scale + t.offset

    def _codec_rate_envelope(self, wave: np.ndarray, n_left: int, n_frames: int, t: TokenStream, s: Signal,
                             seed: int) -> np.ndarray:
        """Format 4: the block's own frames of the decoded wave brought to the stored band powers."""
        own_part = slice(n_left * self.hop, (n_left + n_frames) * self.hop)
        wave = wave.copy()
        wave[own_part] = envelope.apply(wave[own_part], t.envelope, self.rate, s.sample_rate / 2, seed,
                                        envelope.BANDS_V4, _rounding(s, t), version=4)
        return wave


def _part_hz(version: int) -> float:
    """The width of a token stream's envelope parts (spec 6.4), and from format 16 of its profile's rescaling (6.8)."""
    if version >= TOKEN_QUARTER_PARTS:
        return envelope.QUARTER_PART_HZ
    return envelope.FINE_PART_HZ if version >= TOKEN_FINE_BANDS else envelope.SUB_BAND_HZ


def _rounding(s: Signal, t: TokenStream) -> float:
    """The power of re-quantizing to the channel's digital steps (step² / 12) in the block's normalized units (a
    stream with an envelope is format 4 or later, whose scale unpack_tokens has found positive)."""
    return (s.gain / t.scale) ** 2 / 12.0
