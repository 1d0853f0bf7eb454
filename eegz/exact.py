"""The exact layer of format 3: lossless and error-bounded near-lossless coding of digital EDF samples.

The exact streams of one block form a group, coded in signal order. Each stream (spec 5.4):
  1. affine: x = g·z + m, the common step g (BioSemi's wasted bits) and the mean m;
  2. temporal: integer LPC of adaptive order (Levinson-Durbin on a Tukey-windowed block, coefficients of
     19 bits), chosen per stream by estimated cost;
  3. channel references: the LPC residual minus an integer combination of up to 8 residuals of earlier
     streams of the group at the same instant (channels that share a reference electrode share most of
     their residual; measured 4-7 % smaller than predicting samples from samples);
  4. the context-adaptive rANS coder of _core (spec 5.3), in the table family that costs least.
Near-lossless quantizes inside the prediction loop with step 2K+1, as near-lossless JPEG-LS does, so
every decoded sample is within K steps of the original by construction. A stream that does not predict
(noise, byte-shifted files) is kept raw under zstd.

Everything that decides a decoded value is integer arithmetic in _core, so any machine decodes bit-exactly.
"""
from __future__ import annotations

import struct
import threading
from dataclasses import dataclass

import numpy as np
import zstandard

from . import _core
from .errors import FormatError

PREDICTED, RAW = 0, 1
MAX_ORDER = 32
COEF_BITS = 19  # coefficient precision with the sign (spec 5.4: 2..21)
COEF_COST = 24.0  # bits a coefficient is charged in the order choice: above its 19, for decode time
MAX_REFS = _core.MAX_REFS
REF_SHIFT = _core.REF_SHIFT
REF_COST = 48.0  # bits a reference is charged before it is kept (its 32 and a margin)
MIN_REF_SAMPLES = 64
MAX_FRAMES = _core.MAX_FRAMES  # LPC frames a stream may cut its samples into
MIN_FRAME = 512  # samples an LPC frame holds at the least
_HEAD = struct.Struct("<BIIqI")  # method, n, g, m, k
_LOCAL = threading.local()  # one zstd compressor per thread: a compressor is not safe to share


def _zstd(data: bytes) -> bytes:
    if not hasattr(_LOCAL, "zc"):
        _LOCAL.zc = zstandard.ZstdCompressor(level=3)
    return _LOCAL.zc.compress(data)


@dataclass
class ExactItem:
    """One channel of one block: its digital samples and bound."""
    samples: np.ndarray
    max_error: int = 0  # K in digital steps; 0 is lossless
    lo: int = -(1 << 23)  # the sample type's range (decoded values are clipped to it)
    hi: int = (1 << 23) - 1


def affine(x: np.ndarray) -> tuple[int, int]:
    """(g, m) with x = g·z + m exactly: the common step (BioSemi files hold multiples of 4; FLAC calls these
    wasted bits) and the mean, so that a predictor whose coefficients do not sum to one leaves no bias."""
    if len(x) == 0:
        return 1, 0
    g = int(np.gcd.reduce(np.abs(x - x[0])))
    g = g if 0 < g < (1 << 24) else 1
    c = int(x[0]) % g
    return g, c + g * int(round((float(x.mean()) - c) / g))


# ---------------------------------------------------------------- encoding

@dataclass
class _Plan:
    """What the encoder decided for one stream before coding it."""
    z: np.ndarray
    g: int
    m: int
    k: int
    frames: list | None = None  # [(shift, coefficients)] per LPC frame; None: raw
    refs: tuple = ()
    weights: tuple = ()
    residual: np.ndarray | None = None  # lossless LPC residual, for choosing references


def _plan(item: ExactItem) -> _Plan:
    """Affine step, then LPC of one frame or of up to MAX_FRAMES equal frames (_core.lpc_plan)."""
    x = np.asarray(item.samples, np.int64)
    g, m = affine(x)
    plan = _Plan(z=(x - m) // g, g=g, m=m, k=item.max_error // g)
    frames = _core.lpc_plan(plan.z, MAX_ORDER, COEF_BITS, COEF_COST, MAX_FRAMES, MIN_FRAME, 2 * plan.k + 1)
    residual = _core.lpc_residual(plan.z, frames)
    if residual is not None:
        plan.frames, plan.residual = frames, np.frombuffer(residual, np.int64)
    return plan


def _choose_references(plans: list[_Plan]) -> None:
    """For each stream, earlier streams of the same length whose LPC residuals predict its own: the most
    correlated (at most MAX_REFS), with least-squares weights in Q12.

    Weights are fitted on residuals clipped at 4 robust σ (a blink in the frontal channels would
    otherwise choose them), and a reference set is kept only when the coder's own cost estimate of the
    stream drops by more than the references cost (measured: L2 alone made eegmat 8 % larger)."""
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(plans):
        if p.residual is not None and len(p.z) >= MIN_REF_SAMPLES:
            by_length.setdefault(len(p.z), []).append(i)
    for members in by_length.values():
        if len(members) < 2:
            continue
        r = np.stack([plans[i].residual for i in members]).astype(np.float64)
        spread = 4 * 1.4826 * np.median(np.abs(r), axis=1, keepdims=True) + 1.0
        clipped = np.clip(r, -spread, spread)
        gram = clipped @ clipped.T
        norms = np.sqrt(np.maximum(np.diag(gram), 1e-9))
        for row in range(1, len(members)):
            if gram[row, row] <= 0:
                continue
            score = np.abs(gram[row, :row]) / (norms[:row] * norms[row])
            refs = [j for j in np.argsort(score)[::-1][:MAX_REFS] if score[j] > 0.1]
            if not refs:
                continue
            g, rhs = gram[np.ix_(refs, refs)], gram[refs, row]
            try:
                w = np.linalg.solve(g + 1e-9 * np.trace(g) * np.eye(len(refs)), rhs)
            except np.linalg.LinAlgError:
                continue
            weights = tuple(int(v) for v in np.clip(np.round(w * (1 << REF_SHIFT)), -32768, 32767))
            plan = plans[members[row]]
            target = [plans[members[j]].residual for j in refs]
            predicted = np.frombuffer(_core.spatial(target, list(weights), len(plan.z)), np.int64)
            before = _core.residual_costs(plan.residual, 0)
            after = _core.residual_costs(plan.residual - predicted, 0)
            if before - after > REF_COST * len(refs):
                plan.refs = tuple(int(members[j]) for j in refs)
                plan.weights = weights


def _raw_stream(plan: _Plan) -> bytes:
    body = _zstd(plan.z.astype("<i4").tobytes())
    return _HEAD.pack(RAW, len(plan.z), plan.g, plan.m, 0) + body


def encode_group(items: list[ExactItem]) -> list[bytes]:
    """One stream per item; items may reference earlier items (a block's exact channels, in signal order).
    Near-lossless references use the reconstruction the decoder will see."""
    plans = [_plan(it) for it in items]
    _choose_references(plans)
    recon: dict[int, np.ndarray] = {}  # reconstructed LPC residuals, what later streams reference
    out = []
    for i, plan in enumerate(plans):
        coded = None
        if plan.frames is not None:
            result = _core.exact_encode(plan.z, plan.g, plan.m, plan.k, plan.frames, COEF_BITS,
                                        list(plan.refs), list(plan.weights), [recon[j] for j in plan.refs])
            if result is not None:
                coded, recon[i] = result
        if coded is None or len(coded) > 2 * len(plan.z):  # above 16 bits a sample: try keeping it raw
            raw = _raw_stream(plan)
            if coded is None or len(raw) < len(coded):
                coded = raw
                recon.pop(i, None)
                for later in plans[i + 1:]:  # a raw stream has no residual to reference
                    if i in later.refs:
                        later.refs, later.weights = (), ()
        out.append(coded)
    return out


# ---------------------------------------------------------------- decoding

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
    """Digital samples (int32) of each stream of a group, in order; FormatError on anything invalid."""
    out, recon = [], []  # recon[i]: the reconstructed LPC residual of stream i, None for raw streams
    for data, exp in zip(streams, expected):
        if data[:1] == bytes([RAW]):
            out.append(_decode_raw(data, exp))
            recon.append(None)
            continue
        try:
            x, r = _core.exact_decode(data, exp.n, exp.lo, exp.hi, exp.lossless, recon)
        except ValueError as e:
            raise FormatError(str(e)) from None
        out.append(np.frombuffer(x, np.int32))
        recon.append(r)
    return out


def _decode_raw(data: bytes, exp: Expected) -> np.ndarray:
    if len(data) < _HEAD.size:
        raise _damaged("shorter than its header")
    _, n, g, m, k = _HEAD.unpack_from(data, 0)
    if n != exp.n:
        raise _damaged(f"{n} samples where the block holds {exp.n}")
    if not (1 <= g <= exp.hi - exp.lo + 1 and exp.lo - g <= m <= exp.hi + g) or k:
        raise _damaged("step, offset or bound out of range")
    try:
        raw = zstandard.ZstdDecompressor().decompress(data[_HEAD.size:], max_output_size=4 * n)
    except zstandard.ZstdError:
        raise _damaged("not valid zstd data") from None
    if len(raw) != 4 * n:
        raise _damaged("raw samples of the wrong length")
    z = np.frombuffer(raw, "<i4").astype(np.int64)
    return np.clip(g * z + m, exp.lo, exp.hi).astype(np.int32)
