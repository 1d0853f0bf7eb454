"""Lossy coding of EEG channels with the neural codec, block by block, with real-signal context.

Per channel the signal is resampled once to the codec rate. A block is a run of whole EDF records whose
edges fall on codec frames. Each block is normalized on its own (offset = median, scale = 16 × a robust
standard deviation, both stored as float32). Up to four consecutive blocks of a channel go through the
encoder in one pass, with `context` frames of the real neighbouring signal at each end of the run; each
block keeps its own frames. On decode a block is run through the decoder with its neighbours' frames as
context and only its own samples are kept, so a time range decodes from the blocks it touches plus one
on each side, and gives exactly what a full decode gives.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import zstandard

from .dsp import alignment_period, rate_ratio, resample, robust_std
from .edf import Signal
from .entropy import counts_model, pack_bits, unpack_bits

# normalized = (x - median) / (16 σ): about the amplitude the model was trained at (µV / 200 for EEG of
# σ ≈ 12 µV). Measured on held-out eegmat at 3/6/9 codebooks: PRDN 31.7/22.2/19.8 % against 32.9/23.5/20.8
# at 10 σ, 24.5 % (6 codebooks) at 5 σ and 22.6 % at 20 σ, with 1 % fewer bits.
SCALE_FACTOR = 16.0
BLOCK_SECONDS = 16.0  # the length of a lossy block: the unit of normalization (and of training windows' blocks)
BASE_CONTEXT_FRAMES = 8
MAX_RUN_BLOCKS = 4  # blocks encoded in one pass: 64 s of one channel, about the CPU's fastest size
_TOKENS_HEAD = struct.Struct("<ffB")  # offset, scale (float32), flags
_ZSTD = 1  # flag: the packed codes are zstd-compressed
_ANS = 2  # flag: u32 n_frames, then rANS-coded codes with the model's per-codebook usage tables


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


def frame_of_time(seconds: float, codec_rate: int, hop: int) -> int:
    return int(round(seconds * codec_rate / hop))


@dataclass
class ChannelPlan:
    signal: Signal
    codec_signal: np.ndarray  # the whole channel at the codec rate, padded to whole frames
    frame_edges: list[int]  # frame index where each block starts, plus the end


def plan_channel(signal: Signal, physical: np.ndarray, block_starts_s: list[float], codec_rate: int,
                 hop: int) -> ChannelPlan:
    center = float(np.median(physical)) if len(physical) else 0.0
    u = resample(physical - center, signal.sample_rate, codec_rate) + center
    n_frames = max(1, -(-len(u) // hop))
    padded = np.full(n_frames * hop, u[-1] if len(u) else 0.0)
    padded[:len(u)] = u
    edges = [frame_of_time(t, codec_rate, hop) for t in block_starts_s] + [n_frames]
    return ChannelPlan(signal, padded, edges)


@dataclass
class EncodeJob:
    """A run of consecutive blocks of one channel, normalized block by block, with context at its ends."""
    segment: np.ndarray  # normalized codec-rate samples, a whole number of frames
    blocks: list  # (block, offset, scale, slice of the block's own frames in the segment)


def block_normalization(own: np.ndarray) -> tuple[float, float]:
    """(offset, scale), rounded to float32 as stored, so that encoder and decoder use the very same values."""
    offset = float(np.float32(np.median(own)))
    scale = float(np.float32(max(SCALE_FACTOR * robust_std(own), 1e-30)))
    return offset, scale


def block_runs(blocks: list[int], max_run: int) -> list[list[int]]:
    """Consecutive block numbers grouped into runs of at most max_run."""
    runs: list[list[int]] = []
    for b in blocks:
        if runs and runs[-1][-1] == b - 1 and len(runs[-1]) < max_run:
            runs[-1].append(b)
        else:
            runs.append([b])
    return runs


def encode_jobs(plan: ChannelPlan, blocks: list[int], hop: int, context: int,
                max_run: int = MAX_RUN_BLOCKS) -> list[EncodeJob]:
    """Encoder inputs for these blocks of one channel.

    Consecutive blocks are encoded in one pass, each normalized by its own offset and scale, which is
    what the decoder sees too (neighbour tokens carry their own block's normalization); only a run's two
    ends pay for `context` frames of real signal, normalized like the block beside them."""
    jobs = []
    n_frames = len(plan.codec_signal) // hop
    for run in block_runs(blocks, max_run):
        f0, f1 = plan.frame_edges[run[0]], plan.frame_edges[run[-1] + 1]
        s0, s1 = max(0, f0 - context), min(n_frames, f1 + context)
        segment = np.empty((s1 - s0) * hop)
        parts = []
        for k, b in enumerate(run):
            b0, b1 = plan.frame_edges[b], plan.frame_edges[b + 1]
            offset, scale = block_normalization(plan.codec_signal[b0 * hop:b1 * hop])
            lo = s0 if k == 0 else b0  # the run's ends take their context in the edge block's units
            hi = s1 if k == len(run) - 1 else b1
            segment[(lo - s0) * hop:(hi - s0) * hop] = (plan.codec_signal[lo * hop:hi * hop] - offset) / scale
            parts.append((b, offset, scale, slice(b0 - s0, b1 - s0)))
        jobs.append(EncodeJob(segment, parts))
    return jobs


def pack_tokens(codes: np.ndarray, offset: float, scale: float, bits: int,
                token_counts: np.ndarray | None = None) -> bytes:
    """Codes entropy coded with the model's per-codebook tables when it has them, else bit-packed."""
    n_q, n_frames = codes.shape
    if token_counts is not None:
        body = encode_tokens(codes, token_counts)
        return _TOKENS_HEAD.pack(offset, scale, _ANS) + struct.pack("<I", n_frames) + body
    packed = pack_bits(codes.reshape(-1), bits)
    squeezed = zstandard.ZstdCompressor(level=19).compress(packed)
    if len(squeezed) < len(packed):
        return _TOKENS_HEAD.pack(offset, scale, _ZSTD) + squeezed
    return _TOKENS_HEAD.pack(offset, scale, 0) + packed


def unpack_tokens(data: bytes, bits: int, n_codebooks: int,
                  token_counts: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    offset, scale, flags = _TOKENS_HEAD.unpack_from(data, 0)
    body = data[_TOKENS_HEAD.size:]
    if flags & _ANS:
        if token_counts is None:
            raise ValueError("token stream needs the model's token tables")
        (n_frames,) = struct.unpack_from("<I", body, 0)
        return decode_tokens(body[4:], token_counts[:n_codebooks], n_frames), offset, scale
    if flags & _ZSTD:
        body = zstandard.ZstdDecompressor().decompress(body)
    n_frames = 8 * len(body) // (bits * n_codebooks)  # the padding is less than one byte
    codes = unpack_bits(body, bits, n_codebooks * n_frames).reshape(n_codebooks, n_frames).astype(np.uint16)
    return codes, offset, scale


def encode_tokens(codes: np.ndarray, token_counts: np.ndarray) -> bytes:
    import constriction
    coder = constriction.stream.stack.AnsCoder()
    for q in reversed(range(codes.shape[0])):  # a stack: the decoder pops codebook 0 first
        coder.encode_reverse(codes[q].astype(np.int32), token_model(token_counts, q))
    return coder.get_compressed().astype("<u4").tobytes()


def decode_tokens(data: bytes, token_counts: np.ndarray, n_frames: int) -> np.ndarray:
    import constriction
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))
    rows = [coder.decode(token_model(token_counts, q), n_frames) for q in range(len(token_counts))]
    return np.stack(rows).astype(np.uint16) if rows else np.zeros((0, n_frames), np.uint16)


def token_model(token_counts: np.ndarray, q: int):
    """The categorical model of codebook q: usage counts + 1, normalized with integer arithmetic."""
    key = (id(token_counts), q)
    if key not in _TOKEN_MODELS:
        _TOKEN_MODELS[key] = (token_counts, counts_model(np.asarray(token_counts[q], np.int64) + 1))
    return _TOKEN_MODELS[key][1]


_TOKEN_MODELS: dict = {}


def with_context(codes: np.ndarray, left: np.ndarray | None, right: np.ndarray | None,
                 context: int) -> tuple[np.ndarray, int]:
    """A block's codes with up to `context` neighbour frames on each side, and how many are on the left."""
    empty = np.zeros((codes.shape[0], 0), np.uint16)
    left = left[:, -context:] if left is not None and context else empty
    right = right[:, :context] if right is not None and context else empty
    return np.concatenate([left, codes, right], axis=1), left.shape[1]


def to_channel_samples(wave: np.ndarray, n_left: int, offset: float, scale: float, first_frame: int,
                       signal: Signal, first_sample: int, n_samples: int, codec_rate: int,
                       hop: int) -> np.ndarray:
    """Physical samples [first_sample, first_sample + n_samples) of one channel from a decoded block."""
    wave = wave * scale + offset
    start_codec = (first_frame - n_left) * hop  # absolute codec-rate index of wave[0]
    period = alignment_period(signal.sample_rate, codec_rate)
    aligned = -(-start_codec // period) * period
    up, down = rate_ratio(codec_rate, signal.sample_rate)
    channel = resample(wave[aligned - start_codec:], codec_rate, signal.sample_rate)
    begin = first_sample - aligned * up // down
    out = channel[begin:begin + n_samples]
    if len(out) < n_samples:  # the very end of a recording: hold the last value
        out = np.concatenate([out, np.full(n_samples - len(out), out[-1] if len(out) else offset)])
    return out
