"""The exact layer of format 3: lossless and error-bounded near-lossless coding of digital EDF samples.

The exact streams of one block form a group, coded in signal order by _core in one call (spec 5.4):
  1. affine: x = g·z + m, the common step g (BioSemi's wasted bits) and the mean m;
  2. temporal: integer LPC of adaptive order with 19-bit coefficients, one predictor for the block or
     up to eight for equal parts of it when its level or spectrum changes (an artifact, a disconnection);
  3. channel references: the LPC residual minus an integer combination of up to 8 residuals of earlier
     streams of the group at the same instant (channels that share a reference electrode share most of
     their residual; measured 4-7 % smaller than predicting samples from samples);
  4. the context-adaptive rANS coder (spec 5.3), in the table family that costs least.
Near-lossless quantizes inside the prediction loop with step 2K+1, as near-lossless JPEG-LS does, so
every decoded sample is within K steps of the original by construction. A stream that does not predict
(noise, byte-shifted files) is kept raw under zstd.

Everything that decides a decoded value is integer arithmetic in _core, so any machine decodes bit-exactly.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from . import _core
from .container import unzstd, zstd
from .errors import FormatError

PREDICTED, RAW = 0, 1
_HEAD = struct.Struct("<BIIqI")  # method, n, g, m, k
RAW_LEVEL = 3  # zstd level of raw streams (noise: a higher level finds nothing more)


@dataclass
class ExactItem:
    """One channel of one block: its digital samples and bound."""
    samples: np.ndarray
    max_error: int = 0  # K in digital steps; 0 is lossless
    lo: int = -(1 << 23)  # the sample type's range (decoded values are clipped to it)
    hi: int = (1 << 23) - 1


def _raw_stream(x: np.ndarray) -> bytes:
    """Values kept as they are (zstd), with the affine step of spec 5.4 left at g = 1, m = 0."""
    return _HEAD.pack(RAW, len(x), 1, 0, 0) + zstd(np.asarray(x, "<i4").tobytes(), RAW_LEVEL)


def encode_group(items: list[ExactItem], features: int = _core.USE_ALL) -> list[bytes]:
    """One stream per item of a group (a block's exact channels, in signal order). A stream above 16 bits a
    sample is kept raw when that is smaller; the group is then coded again without it, because the
    others may have chosen it as a reference. `features` (_core.USE_*) turns encoder tools off for the
    ablation benchmark; every choice decodes the same way."""
    samples = [np.ascontiguousarray(it.samples, np.int64) for it in items]
    bounds = [int(min(it.max_error, it.hi - it.lo)) for it in items]
    force_raw = [False] * len(items)
    while True:
        coded = _core.exact_encode_group(samples, bounds, force_raw, features)
        changed = False
        for i, (data, x) in enumerate(zip(coded, samples)):
            if data is None or (len(data) > 2 * len(x) and not force_raw[i]):
                raw = _raw_stream(x)
                if data is None or len(raw) < len(data):
                    coded[i] = raw
                    changed |= not force_raw[i] and data is not None
                    force_raw[i] = True
        if not changed:
            return coded


@dataclass
class Expected:
    """What the container says a stream must hold (validated before it is trusted)."""
    n: int
    lo: int
    hi: int
    lossless: bool


def _damaged(why: str) -> FormatError:
    return FormatError(f"damaged exact stream ({why})")


def decode_group(streams: list[bytes], expected: list[Expected]) -> list[np.ndarray]:
    """Digital samples (int32) of each stream of a group, in order; FormatError on anything invalid.
    Raw streams decode here; the predicted ones all at once in _core (which rejects references to raw ones)."""
    raw = [data[:1] == bytes([RAW]) for data in streams]
    try:
        decoded = _core.exact_decode_group([None if r else d for r, d in zip(raw, streams)], [e.n for e in expected],
                                           expected[0].lo if expected else 0, expected[0].hi if expected else 0,
                                           [e.lossless for e in expected])
    except ValueError as e:
        raise FormatError(str(e)) from None
    return [_decode_raw(d, e) if r else np.frombuffer(x, np.int32) for r, d, e, x in zip(raw, streams, expected, decoded)]


def _decode_raw(data: bytes, exp: Expected) -> np.ndarray:
    if len(data) < _HEAD.size:
        raise _damaged("shorter than its header")
    _, n, g, m, k = _HEAD.unpack_from(data, 0)
    if n != exp.n:
        raise _damaged(f"{n} samples where the block holds {exp.n}")
    if not (1 <= g <= exp.hi - exp.lo + 1 and exp.lo - g <= m <= exp.hi + g) or k:
        raise _damaged("step, offset or bound out of range")
    raw = unzstd(data[_HEAD.size:], 4 * n, "exact stream")
    if len(raw) != 4 * n:
        raise _damaged("raw samples of the wrong length")
    z = np.frombuffer(raw, "<i4").astype(np.int64)
    return np.clip(g * z + m, exp.lo, exp.hi).astype(np.int32)
