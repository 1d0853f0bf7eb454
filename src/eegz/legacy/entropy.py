"""Formats 1 and 2: the residual entropy coder (rANS through the `constriction` package).

Kept to decode files of those versions (spec appendix A); format 3 codes residuals with _core's integer
coder. The DCT baseline (benchmarks/baselines.py) still codes with this one so that its numbers compare
across releases.


Residuals are cut into segments of SEGMENT samples; each segment gets a scale class c (scale
2^(c/4 - 2)) from its mean magnitude, and each stream picks the Laplace or the Gaussian shape, whichever
its segments say costs fewer bits. The residuals of one class share one fixed categorical table, so the
coder runs as a handful of vectorized calls per stream. Large scales are split: the high part is
entropy coded, the low `shift` bits are stored verbatim (they are close to uniform there).

Tables are built from integer counts summing to 2^24, so coder and decoder see bit-identical models.
"""
from __future__ import annotations

import math
import struct
from functools import lru_cache

import numpy as np
import zstandard

from ..container import unzstd

SEGMENT = 256
N_CLASSES = 112
LAPLACE, GAUSSIAN, EMPIRICAL = 0, 1, 2
MAX_EMPIRICAL_SYMBOLS = 4096
TABLE_BITS = 24
MAX_HI_SCALE = 64.0  # the entropy-coded high part never has a scale above this
# One (de)compressor each, reused: building a zstd context costs more than the few bytes it squeezes.
_ZC = zstandard.ZstdCompressor(level=9)


def class_scale(c: int) -> float:
    return 2.0 ** (c / 4.0 - 2.0)


def class_shift(c: int) -> int:
    return max(0, math.ceil(math.log2(class_scale(c) / MAX_HI_SCALE)))


def _cdf(family: int, x: float, scale: float) -> float:
    if family == LAPLACE:
        return 0.5 * math.exp(x / scale) if x < 0 else 1.0 - 0.5 * math.exp(-x / scale)
    return 0.5 * (1.0 + math.erf(x / (scale * math.sqrt(2.0))))


@lru_cache(maxsize=None)
def class_model(family: int, c: int):
    """(constriction model, M): symbols -M..M of the high part, then an escape symbol."""
    import constriction
    scale, step = class_scale(c), 2 ** class_shift(c)
    m = int(math.ceil(10.0 * scale / step)) + 2
    edges = [_cdf(family, k * step - 0.5, scale) for k in range(-m, m + 2)]
    probs = np.diff(np.array(edges))
    escape = max(1.0 - (edges[-1] - edges[0]), 0.0)
    counts = np.maximum(1, np.round(np.append(probs, escape) * (1 << TABLE_BITS))).astype(np.int64)
    counts[np.argmax(counts)] += (1 << TABLE_BITS) - counts.sum()
    model = constriction.stream.model.Categorical(counts / float(1 << TABLE_BITS), perfect=False)
    return model, m


def pack_bits(values: np.ndarray, width: int) -> bytes:
    """Fixed-width little-endian bit packing of non-negative integers."""
    if width == 0 or len(values) == 0:
        return b""
    bits = (np.asarray(values, np.uint64)[:, None] >> np.arange(width, dtype=np.uint64)) & np.uint64(1)
    return np.packbits(bits.astype(np.uint8).reshape(-1), bitorder="little").tobytes()


def unpack_bits(data: bytes, width: int, count: int) -> np.ndarray:
    if width == 0 or count == 0:
        return np.zeros(count, np.int64)
    bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")[:count * width]
    return (bits.reshape(count, width).astype(np.int64) << np.arange(width, dtype=np.int64)).sum(axis=1)


def counts_model(counts: np.ndarray):
    """A categorical model from integer counts, normalized to 2^24 with integer arithmetic only."""
    import constriction
    if len(counts) < 2:  # constriction needs two symbols; the extra one is never coded
        counts = np.append(counts, 0)
    total = int(counts.sum())
    scaled = np.maximum(1, (counts.astype(np.int64) << TABLE_BITS) // max(total, 1))
    scaled[np.argmax(scaled)] += (1 << TABLE_BITS) - int(scaled.sum())
    return constriction.stream.model.Categorical(scaled / float(1 << TABLE_BITS), perfect=False)


def _empirical_stream(e: np.ndarray, parametric_bits: float) -> bytes | None:
    """Residuals with few distinct values (trigger lines, synthetic waves) coded with their own histogram."""
    import constriction
    lo, hi = int(e.min()), int(e.max())
    if hi - lo >= MAX_EMPIRICAL_SYMBOLS:
        return None
    counts = np.bincount(e - lo, minlength=hi - lo + 1)
    p = counts[counts > 0] / len(e)
    table = _ZC.compress(counts.astype("<u4").tobytes())
    if len(e) * float(-(p * np.log2(p)).sum()) + 8 * len(table) + 64 >= parametric_bits:
        return None
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse((e - lo).astype(np.int32), counts_model(counts))
    words = coder.get_compressed().astype("<u4").tobytes()
    return struct.pack("<BqI", EMPIRICAL, lo, len(table)) + table + words


def _decode_empirical(data: bytes, n: int) -> np.ndarray:
    import constriction
    _, lo, n_table = struct.unpack_from("<BqI", data, 0)
    pos = struct.calcsize("<BqI")
    counts = np.frombuffer(unzstd(data[pos:pos + n_table], 4 << 20, "entropy table"), "<u4")
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(data[pos + n_table:], "<u4").astype(np.uint32))
    return coder.decode(counts_model(counts), n).astype(np.int64) + lo


def segment_classes(e: np.ndarray) -> tuple[int, np.ndarray, float]:
    """The stream's shape family, each segment's scale class, and the estimated bits."""
    n_seg = -(-len(e) // SEGMENT)
    pad = np.zeros(n_seg * SEGMENT, np.float64)
    pad[:len(e)] = e
    seg = pad.reshape(n_seg, SEGMENT)
    counts = np.full(n_seg, SEGMENT, np.float64)
    counts[-1] = len(e) - (n_seg - 1) * SEGMENT
    mean_abs = np.maximum(np.abs(seg).sum(1) / counts, 0.3)
    rms = np.maximum(np.sqrt((seg ** 2).sum(1) / counts), 0.3)
    laplace_bits = (counts * np.log2(2 * np.e * mean_abs)).sum()
    gauss_bits = (counts * np.log2(np.sqrt(2 * np.pi * np.e) * rms)).sum()
    family, scale = (LAPLACE, mean_abs) if laplace_bits <= gauss_bits else (GAUSSIAN, rms)
    classes = np.clip(np.round(4 * np.log2(scale) + 8), 0, N_CLASSES - 1).astype(np.uint8)
    return family, classes, min(laplace_bits, gauss_bits) + 4 * n_seg


def _class_positions(classes: np.ndarray, n: int) -> np.ndarray:
    """The scale class of every sample."""
    return np.repeat(classes, SEGMENT)[:n]


def encode_residuals(e: np.ndarray) -> bytes:
    import constriction
    e = np.asarray(e, np.int64)
    if len(e) == 0:
        return b""
    family, classes, estimate = segment_classes(e)
    empirical = _empirical_stream(e, estimate)
    if empirical is not None:
        return empirical
    per_sample = _class_positions(classes, len(e))
    symbol_groups, low_parts, escapes = [], [], []
    for c in np.unique(classes):
        vals = e[per_sample == c]
        shift = class_shift(int(c))
        hi, lo = vals >> shift, vals & ((1 << shift) - 1)
        _, m = class_model(family, int(c))
        idx = hi + m
        esc = (hi < -m) | (hi > m)
        idx[esc] = 2 * m + 1
        escapes.append(hi[esc])
        symbol_groups.append((int(c), idx.astype(np.int32)))
        low_parts.append(pack_bits(lo, shift))
    coder = constriction.stream.stack.AnsCoder()
    for c, idx in reversed(symbol_groups):  # a stack: encode backwards, decode forwards
        coder.encode_reverse(idx, class_model(family, c)[0])
    words = coder.get_compressed().astype("<u4").tobytes()
    esc = np.concatenate(escapes) if escapes else np.zeros(0, np.int64)
    class_bytes = _ZC.compress(classes.tobytes())
    esc_bytes = _ZC.compress(esc.astype("<i8").tobytes()) if len(esc) else b""
    low = b"".join(struct.pack("<I", len(p)) + p for p in low_parts)
    head = struct.pack("<BIII", family, len(class_bytes), len(esc_bytes), len(low))
    return head + class_bytes + esc_bytes + low + words


def decode_residuals(data: bytes, n: int) -> np.ndarray:
    import constriction
    if n == 0:
        return np.zeros(0, np.int64)
    if data[0] == EMPIRICAL:
        return _decode_empirical(data, n)
    family, n_class, n_esc, n_low = struct.unpack_from("<BIII", data, 0)
    pos = 13
    classes = np.frombuffer(unzstd(data[pos:pos + n_class], n // SEGMENT + 1, "segment classes"), np.uint8)
    pos += n_class
    esc = np.frombuffer(unzstd(data[pos:pos + n_esc], 8 * n, "escapes"), "<i8").astype(np.int64) if n_esc else np.zeros(0, np.int64)
    pos += n_esc
    low_blob, pos = data[pos:pos + n_low], pos + n_low
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(data[pos:], "<u4").astype(np.uint32))
    per_sample = _class_positions(classes, n)
    out = np.empty(n, np.int64)
    lpos, epos = 0, 0
    for c in np.unique(classes):
        where = per_sample == c
        count = int(where.sum())
        model, m = class_model(family, int(c))
        hi = coder.decode(model, count).astype(np.int64) - m
        is_esc = hi == m + 1
        n_e = int(is_esc.sum())
        hi[is_esc] = esc[epos:epos + n_e]
        epos += n_e
        (length,) = struct.unpack_from("<I", low_blob, lpos)
        shift = class_shift(int(c))
        lo = unpack_bits(low_blob[lpos + 4:lpos + 4 + length], shift, count)
        lpos += 4 + length
        out[where] = (hi << shift) | lo
    return out
