"""Token streams' bytes (spec 6): what one channel-block of the neural codec stores, written and read.

A stream is a fixed header (offset, scale, codebooks, frames), then the fields each format adds (band
envelope, slow-band ceiling, stationary tones, constant runs and their edges, 30-70 Hz and high-band time
profiles), then the codes, rANS-coded with the model's token tables. Packing and unpacking live here, apart from
the coding pipeline (lossy.py): the layout in one place, which the pipeline, the reader (`eegz.open`'s tokens) and
the recoder share without the model; `legacy/tokens.py` reads formats 1 and 2. The constants below name the format
from which each field is there.
"""
from __future__ import annotations

import math
import struct
from typing import NamedTuple

import numpy as np

from . import _core, envelope, residuals, tones
from .container import AUX_TOKENS, NEURAL_TOKENS
from .errors import FormatError
from .runs import NO_EDGES, NO_RUNS, as_gaps, from_gaps

TOKEN_PROB_BITS = 15
_TOKENS_V3 = struct.Struct("<ffBI")  # offset, scale, codebooks, frames (spec 6); formats 4-5: + u8 bands, levels
CHANNEL_RATE_ENVELOPE = 5  # the format from which the band envelope lives at the channel's rate
TOKEN_TONES = 12  # the format from which a token stream carries stationary tones (spec 6.6)
TOKEN_FINE_BANDS = 13  # the format from which token streams' envelope has 8.2's bands (token_bands), 0.5-Hz parts
# and noise in the mains bands (envelope.FINE_PART_HZ)
# format 14: token streams carry the block's constant runs (spec 6.7, runs.py), as transform streams have since
# format 10. Decoded, the padding at a recording's end (1-2 s in every eegmat file) held the codec's own output and
# the last block's noise: over the held-out eegmat recordings Subject14-17 (both runs) at 6 codebooks the strongest
# invented line of 146 of their 160 EEG channels stood above 1.5x and of 35 above 2x, most at 100-250 Hz, where EEG
# is quietest (means over three noise draws; format 14: 42 and 1; benchmarks/results/channel_lines.md)
TOKEN_RUNS = 14
# Format 16: a token stream may carry its block's 30-70 Hz time profile (spec 6.8, envelope.follow_gamma_profile):
# the envelope gives a band its power over the block, and the decoder's content and the fill noise spread it
# evenly, where the original holds it in bursts. About 13 bytes a 16-s block (residual coder, 3.2 bits a value)
TOKEN_PROFILE = 16
NO_PROFILE = np.zeros(0, np.int64)
# format 18, three changes for band power over a whole recording (about 3 bit/s in all):
TOKEN_V18_BANDS = 18  # the envelope in envelope.BANDS_V18 (1-Hz bands from 52 to 58 Hz, [64, 74) split at 70): 4 levels more
TOKEN_CEILING = 18  # the slow-band ceiling (spec 6.9, envelope.under_ceiling): a count and 3 levels
TOKEN_RUN_EDGES = 18  # each constant run's neighbouring original samples (spec 6.7, runs.pinned): 2 varints a run
# format 21: a second time profile, of the band from 70 Hz up (spec 6.8, High band; envelope.follow_high_profile):
# 6.8's coding after the 30-70 Hz profile, about 20 bytes a 16-s block (10 bit/s) where the channel's rate is above
# 148 Hz
TOKEN_HIGH_PROFILE = 21
MAX_VARINT_BYTES = 5  # a tone's values as LEB128 varints (spec 6.6): 35 bits at most
NO_TONES = np.zeros((0, 3), np.int64)


class TokenStream(NamedTuple):
    """One channel-block's tokens as stored: codes (codebooks × frames), normalization, band envelope
    (b"" in formats 1-3), stationary tones (rows k, a, b; none before format 12), constant runs (rows start,
    length, value; none before format 14), 30-70 Hz time profile (none before format 16), time profile from 70 Hz up
    (none before format 21)."""
    codes: np.ndarray
    offset: float
    scale: float
    envelope: bytes = b""
    tones: np.ndarray = NO_TONES
    runs: np.ndarray = NO_RUNS
    profile: np.ndarray = NO_PROFILE
    ceiling: bytes = b""
    run_edges: np.ndarray = NO_EDGES  # format 18: per run, the original samples beside it less its value
    high_profile: np.ndarray = NO_PROFILE


def token_tables(token_counts: np.ndarray) -> tuple[bytes, int, int]:
    """The model's usage counts + 1 per codebook as integer frequencies summing to 2^15 (the spec's
    integer rule), prepared for _core: (tables, codebooks, codebook size)."""
    counts = np.asarray(token_counts, np.int64) + 1
    rows, size = counts.shape
    total = 1 << TOKEN_PROB_BITS
    freqs = np.maximum(1, (counts << TOKEN_PROB_BITS) // counts.sum(axis=1, keepdims=True))
    for q in range(rows):
        f = freqs[q]
        while f.sum() > total:  # only with many floors: take from the largest (lowest index on ties)
            f[int(np.argmax(f))] -= 1
        f[int(np.argmax(f))] += total - f.sum()
    return _core.symbol_tables(freqs.astype(np.uint32), rows, size, TOKEN_PROB_BITS), rows, size

def token_bands(rate: float, version: int) -> tuple:
    """The bands of a token stream's envelope at a channel rate (spec 6.4): from format 13 on 8.2's, with 2-Hz
    bands from 43 to 64 Hz (and parts of 0.5 Hz, envelope.FINE_PART_HZ; 6.4's rules stay). 6.4's [43, 49.75) and
    [50.25, 56) spread their power into the gap of a 50-Hz notch filter, and let the decoder's own 50- and 60-Hz
    humps (it learned mains from its training data) stand: the example's 48-52 Hz came back at 136x the
    original's power. From format 18, envelope.BANDS_V18: 1-Hz bands from 52 to 58 Hz and [64, 74) split at 70 Hz."""
    if version >= TOKEN_V18_BANDS:
        return envelope.channel_bands(rate, TOKEN_V18_BANDS)
    return envelope.channel_bands(rate, 8 if version >= TOKEN_FINE_BANDS else 5)


def pack_tokens(stream: TokenStream, tables: tuple, version: int) -> bytes:
    """A block's token stream (spec 6): header, band envelope (format 4), slow-band ceiling (format 18), tones
    (format 12), constant runs (format 14), time profiles (formats 16 and 21), codes rANS-coded with the model's
    tables."""
    table, rows, size = tables
    n_q, n_frames = stream.codes.shape
    body = _core.encode_symbols(np.ascontiguousarray(stream.codes, np.uint16), n_q, table, rows, size, TOKEN_PROB_BITS)
    head = _TOKENS_V3.pack(stream.offset, stream.scale, n_q, n_frames)
    if version >= 4:
        head += bytes([len(stream.envelope)]) + stream.envelope
    if version >= TOKEN_CEILING:
        head += bytes([len(stream.ceiling)]) + stream.ceiling
    if version >= TOKEN_TONES:
        head += bytes([len(stream.tones)]) + _tone_bytes(stream.tones)
    if version >= TOKEN_RUNS:
        beside = stream.run_edges if version >= TOKEN_RUN_EDGES else None
        head += bytes([len(stream.runs)]) + _run_bytes(stream.runs, beside)
    if version >= TOKEN_PROFILE:
        head += _profile_bytes(stream.profile)
    if version >= TOKEN_HIGH_PROFILE:
        head += _profile_bytes(stream.high_profile)
    return head + body


def unpack_tokens(data: bytes, tables: tuple, n_frames: int, max_codebooks: int, version: int,
                  seconds: float = 0.0) -> TokenStream:
    """A format 3 or later token stream that must hold n_frames frames (and, from format 16, a time profile
    that a block of this many seconds can hold; from format 21 two)."""
    table, rows, size = tables
    if len(data) < _TOKENS_V3.size + (version >= 4):
        raise FormatError("damaged token stream (shorter than its header)")
    offset, scale, n_q, frames = _TOKENS_V3.unpack_from(data, 0)
    # a scale of 0 (no writer stores one) left the envelope 0 / 0 and the samples to a cast of NaN
    if frames != n_frames or not 1 <= n_q <= min(rows, max_codebooks) or not (math.isfinite(offset) and math.isfinite(scale)) \
            or not scale > 0:
        raise FormatError("damaged token stream (frames, codebooks or normalization out of range)")
    start, levels = _TOKENS_V3.size, b""
    if version >= 4:
        n_bands = data[start]
        if version >= CHANNEL_RATE_ENVELOPE:
            allowed = n_bands <= len(token_bands(math.inf, version))
        else:
            allowed = n_bands in (0, len(envelope.BANDS_V4))
        if not allowed or len(data) < start + 1 + n_bands:
            raise FormatError("damaged token stream (band envelope)")
        levels, start = bytes(data[start + 1:start + 1 + n_bands]), start + 1 + n_bands
    slow = b""
    if version >= TOKEN_CEILING:
        count = data[start] if len(data) > start else -1
        if count not in (0, len(envelope.SLOW_BANDS_HZ)) or len(data) < start + 1 + count:
            raise FormatError("damaged token stream (slow-band ceiling)")
        slow, start = bytes(data[start + 1:start + 1 + count]), start + 1 + count
    lines, found = NO_TONES, NO_RUNS
    if version >= TOKEN_TONES:
        lines, start = _unpacked_tones(data, start)
    run_edges = NO_EDGES
    if version >= TOKEN_RUNS:
        found, run_edges, start = _unpacked_runs(data, start, version)
    time_profile, high_profile, most = NO_PROFILE, NO_PROFILE, math.ceil(seconds / envelope.PROFILE_SECONDS) + 1
    if version >= TOKEN_PROFILE:
        time_profile, start = _unpacked_profile(data, start, most)
    if version >= TOKEN_HIGH_PROFILE:
        high_profile, start = _unpacked_profile(data, start, most)
    if (len(time_profile) or len(high_profile)) and not levels:
        raise FormatError("damaged token stream (a time profile without a band envelope)")
    try:
        codes = _core.decode_symbols(data[start:], n_q, frames, table, rows, size, TOKEN_PROB_BITS)
    except ValueError as e:
        raise FormatError(str(e)) from None
    return TokenStream(np.frombuffer(codes, np.uint16).reshape(n_q, frames), offset, scale, levels, lines, found,
                       time_profile, slow, run_edges, high_profile)


def _zigzag(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


def _varint_bytes(values) -> bytes:
    """Unsigned LEB128 varints."""
    out = bytearray()
    for value in values:
        while value >= 0x80:
            out.append(0x80 | (value & 0x7F))
            value >>= 7
        out.append(value)
    return bytes(out)


def _tone_bytes(rows: np.ndarray) -> bytes:
    """Tones as spec 6.6 stores them: per tone the step from the previous frequency index (from 0) as an
    unsigned LEB128 varint, then both amplitudes zigzag-mapped (v >= 0: 2v, else -2v - 1) as such varints."""
    values, previous = [], 0
    for k, a, b in np.asarray(rows, np.int64).tolist():
        values += [k - previous, _zigzag(a), _zigzag(b)]
        previous = k
    return _varint_bytes(values)


def _run_bytes(rows: np.ndarray, run_edges: np.ndarray | None = None) -> bytes:
    """Constant runs as spec 6.7 stores them: per run its gap from the previous run's end (the block's start
    for the first) and its length less 1 as unsigned LEB128 varints, then its digital value zigzag-mapped; from
    format 18 (`run_edges` given) then the original samples beside it less its value, zigzag-mapped."""
    gaps = as_gaps(rows).tolist()
    if run_edges is None:
        return _varint_bytes(v for gap, length, value in gaps for v in (gap, length, _zigzag(value)))
    return _varint_bytes(v for (gap, length, value), (before, after) in zip(gaps, np.asarray(run_edges).tolist())
                         for v in (gap, length, _zigzag(value), _zigzag(before), _zigzag(after)))


def _profile_bytes(values: np.ndarray) -> bytes:
    """A time profile as spec 6.8 stores it: 0 for none, else 1 + the residual coder byte, the value count and
    the words' length as unsigned LEB128 varints, then the words."""
    if not len(values):
        return b"\0"
    coder, words = residuals.encoded(values)
    return bytes([1 + coder]) + _varint_bytes([len(values), len(words)]) + words


def _varints(data: bytes, start: int, what: str, width: int = 3) -> tuple[np.ndarray, int]:
    """A count byte at `start` and width × count LEB128 varints after it: (count rows of `width` values, where the
    next field begins)."""
    if len(data) < start + 1:
        raise FormatError(f"damaged token stream ({what})")
    count, at = data[start], start + 1
    values = []
    for _ in range(width * count):
        value, at = _varint(data, at, what)
        values.append(value)
    return np.array(values, np.int64).reshape(-1, width), at


def _varint(data: bytes, at: int, what: str) -> tuple[int, int]:
    """The unsigned LEB128 varint at `at` (at most MAX_VARINT_BYTES) and where the next field begins."""
    value, shift = 0, 0
    while True:
        if at >= len(data) or shift >= 7 * MAX_VARINT_BYTES:
            raise FormatError(f"damaged token stream ({what})")
        byte, at = data[at], at + 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _unzigzag(v: np.ndarray) -> np.ndarray:
    return (v >> 1) ^ -(v & 1)


def _unpacked_tones(data: bytes, start: int) -> tuple[np.ndarray, int]:
    """Format 12's tones at `start` (spec 6.6) and where the next field begins; the bound that the block's
    length sets is checked where it is known (TokenDecoder)."""
    values, at = _varints(data, start, "tones")
    steps, a, b = values.T
    rows = np.column_stack([np.cumsum(steps), _unzigzag(a), _unzigzag(b)])
    if not tones.in_range(rows, tones.MAX_SAMPLES - 1):  # steps of 0 leave the indices not ascending
        raise FormatError("damaged token stream (a tone's frequency or amplitude out of range)")
    return rows, at


def _unpacked_profile(data: bytes, start: int, most: int) -> tuple[np.ndarray, int]:
    """Format 16's time profile at `start` (spec 6.8), of at most `most` values, and where the words begin; its
    count against the channel's samples is checked where those are known (TokenDecoder)."""
    if len(data) < start + 1 or data[start] > residuals.CODERS:
        raise FormatError("damaged token stream (time profile)")
    if not data[start]:
        return NO_PROFILE, start + 1
    count, at = _varint(data, start + 1, "time profile")
    size, at = _varint(data, at, "time profile")
    if not 2 <= count <= most or at + size > len(data):
        raise FormatError("damaged token stream (time profile)")
    try:
        values = residuals.decoded(data[at:at + size], count, data[start] - 1)
    except ValueError as e:
        raise FormatError(f"damaged token stream (time profile: {e})") from None
    if np.any(np.abs(values) > envelope.PROFILE_MAX):
        raise FormatError("damaged token stream (a time profile value out of range)")
    return values, at + size


def _unpacked_runs(data: bytes, start: int, version: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Format 14's constant runs at `start` (spec 6.7), rows (start, length, value), from format 18 their edges
    (rows: the original samples before and after less the value), and where the next field begins; the block's
    length and the digital range are checked where they are known (TokenDecoder)."""
    with_edges = version >= TOKEN_RUN_EDGES
    values, at = _varints(data, start, "constant runs", 5 if with_edges else 3)
    runs = from_gaps(values[:, 0], values[:, 1], _unzigzag(values[:, 2]))
    return runs, _unzigzag(values[:, 3:5]) if with_edges else NO_EDGES, at


def codebook_counts(streams, version: int) -> dict[int, int]:
    """How many token streams (primary, kind 3) hold each number of codebooks (format 3 and later)."""
    counts: dict[int, int] = {}
    if version >= 3:
        for s in streams:
            if s.kind == NEURAL_TOKENS and not s.flags & AUX_TOKENS and len(s.data) >= _TOKENS_V3.size:
                n_q = _TOKENS_V3.unpack_from(s.data, 0)[2]
                counts[n_q] = counts.get(n_q, 0) + 1
    return dict(sorted(counts.items()))
