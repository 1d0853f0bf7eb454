"""The exact layer: lossless and error-bounded near-lossless coding of digital EDF samples.

Each (block, channel) stream is predicted in two integer stages, then entropy coded (entropy.py):
  1. spatial (lossless only): subtract an integer combination of up to MAX_REFS channels of the same
     block that were coded before it (channels sharing a reference electrode share most of their signal);
  2. temporal: integer linear prediction of adaptive order with Q15 coefficients, chosen per stream by
     Levinson-Durbin and a bit-cost estimate.
Near-lossless quantizes the temporal residual in the prediction loop with step 2K+1, as near-lossless
JPEG-LS does, so every decoded sample is within K steps of the original by construction.

Everything that decides a decoded value is integer arithmetic, so any machine decodes bit-exactly. The
recursive parts run as one numpy loop over time for all streams of equal length at once.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import zstandard

from .entropy import decode_residuals, encode_residuals

LOSSLESS_MODE, NEAR_LOSSLESS_MODE, RAW_MODE = 0, 1, 2
MAX_ORDER = 32
COEF_SHIFT = 15
SPATIAL_SHIFT = 10
MAX_REFS = 3
# Bounds that keep every intermediate of the decoder inside int64: spatial residuals stay below
# 2^24 + 3 · 32 · 2^24 < 2^31, and 32 products of those with |a| ≤ 2^24 sum below 2^60.
MAX_COEF = 1 << 24  # |a| ≤ 512 in Q15
MAX_WEIGHT = 1 << 15  # |w| ≤ 32 in Q10
_HEAD = struct.Struct("<BIBB")  # mode, n, order, coef shift
_AFFINE = struct.Struct("<Iq")  # step g and offset m: x = g · z + m


def _affine(x: np.ndarray) -> tuple[int, int]:
    """(g, m) with x = g·z + m exactly: the mean offset (a predictor whose coefficients do not sum to
    one turns a DC offset into a residual bias) and the common step (BioSemi files hold multiples of
    4; FLAC calls these wasted bits)."""
    if len(x) == 0:
        return 1, 0
    g = int(np.gcd.reduce(np.abs(x - x[0])))
    g = g if 0 < g < (1 << 31) else 1
    c = int(x[0]) % g
    m = c + g * int(round((float(x.mean()) - c) / g))
    return g, m


@dataclass
class ExactItem:
    samples: np.ndarray  # digital samples of one channel in one block
    max_error: int = 0  # K in digital steps; 0 is lossless
    group: object = 0  # streams of one group (one block) may predict from each other
    lo: int = -(1 << 31)  # the representable sample range, for clipping near-lossless output
    hi: int = (1 << 31) - 1


def _tukey(n: int, alpha: float = 0.1) -> np.ndarray:
    """Tukey window: without it the block edges bias the autocorrelation of drifting EEG badly."""
    w = np.ones(n)
    edge = int(alpha * (n - 1) / 2)
    if edge > 0:
        ramp = 0.5 * (1 - np.cos(np.pi * np.arange(edge) / edge))
        w[:edge], w[n - edge:] = ramp, ramp[::-1]
    return w


def choose_lpc(y: np.ndarray) -> np.ndarray:
    return choose_lpc_many(np.asarray(y, np.int64)[None, :])[0]


def choose_lpc_many(ys: np.ndarray) -> list[np.ndarray]:
    """Quantized predictor coefficients (Q15 integers) for each row, of the order with the lowest
    estimated cost (residual bits + 24 bits a coefficient); Levinson-Durbin for all rows at once."""
    n_rows, n = ys.shape
    max_order = min(MAX_ORDER, n // 8)
    if max_order < 1:
        return [np.zeros(0, np.int64) for _ in range(n_rows)]
    from scipy import fft
    x = (ys - ys.mean(axis=1, keepdims=True)) * _tukey(n)
    size = fft.next_fast_len(n + max_order + 1, real=True)  # enough zero padding for lags ≤ max_order
    spec = fft.rfft(x, size, axis=1, workers=-1)
    r = fft.irfft(spec.real ** 2 + spec.imag ** 2, size, axis=1, workers=-1)[:, :max_order + 1]
    r[:, 0] *= 1.0 + 1e-9
    alive = r[:, 0] > 0
    err = np.where(alive, r[:, 0], 1.0)
    a = np.zeros((n_rows, max_order))
    best_a = np.zeros((n_rows, max_order))
    best_a[:, 0] = 1.0  # the fixed first-order predictor is the baseline
    best_p = np.ones(n_rows, np.int64)
    d2 = np.mean(np.diff(ys, axis=1).astype(np.float64) ** 2, axis=1)
    best_cost = 0.5 * n * np.log2(np.maximum(d2, 1e-3)) + 24
    for p in range(1, max_order + 1):
        k = (r[:, p] - (a[:, :p - 1] * r[:, p - 1:0:-1]).sum(axis=1)) / err
        a[:, :p - 1] = a[:, :p - 1] - k[:, None] * a[:, :p - 1][:, ::-1]
        a[:, p - 1] = k
        err = err * (1.0 - k * k)
        alive &= err > 0
        cost = 0.5 * n * np.log2(np.maximum(err / n, 1e-3)) + 24 * p
        better = alive & (cost < best_cost)
        best_cost = np.where(better, cost, best_cost)
        best_a[better] = a[better]
        best_p[better] = p
    q = np.clip(np.round(best_a * (1 << COEF_SHIFT)), -MAX_COEF, MAX_COEF).astype(np.int64)
    return [q[i, :best_p[i]] if r[i, 0] > 0 else np.zeros(0, np.int64) for i in range(n_rows)]


def temporal_residual(y: np.ndarray, coefs: np.ndarray) -> np.ndarray:
    """Lossless residual, vectorized: the same predictor the decoder's loop applies."""
    order, y = len(coefs), y.astype(np.int64)
    pred = np.zeros(len(y), np.int64)
    pred[1:order] = y[:order - 1] if order > 1 else pred[1:order]
    if order and len(y) > order:
        acc = np.convolve(y, coefs)[order - 1:len(y) - 1]  # Σ_k a_k · y[t - k] for t ≥ order, in int64
        pred[order:] = (acc + (1 << (COEF_SHIFT - 1))) >> COEF_SHIFT
    return y - pred


def predictive_loop(values: np.ndarray, coefs: np.ndarray, orders: np.ndarray, k: np.ndarray,
                    encode: bool) -> tuple[np.ndarray, np.ndarray]:
    """Run the temporal predictor over (streams, time), all streams at once; returns (indices, values).

    encode=True: values are samples; gives the quantized residual indices and the reconstruction.
    encode=False: values are residual indices; gives them back and the reconstruction (decoder).
    Integer arithmetic throughout (int64 cannot overflow, see MAX_COEF); time-major layout so that
    each step reads contiguous rows.
    """
    n_streams, n = values.shape
    p = coefs.shape[1]
    history = np.zeros((n + p, n_streams), np.int64)  # time-major: one contiguous row per time step
    weights = np.ascontiguousarray(coefs.T[::-1])  # row j multiplies history[t + j] = y[t - p + j]
    vals = np.ascontiguousarray(values.T)
    step = 2 * k + 1
    half = np.int64(1 << (COEF_SHIFT - 1))
    out = np.empty((n, n_streams), np.int64)
    warm_until = int(orders.max(initial=0))
    for t in range(n):
        if p:
            pred = (np.einsum("ij,ij->j", history[t:t + p], weights) + half) >> COEF_SHIFT
        else:
            pred = np.zeros(n_streams, np.int64)
        if t < warm_until:
            pred = np.where(t < orders, history[p + t - 1] if t else 0, pred)
        if encode:
            r = vals[t] - pred
            q = np.sign(r) * ((np.abs(r) + k) // step)
            out[t] = q
        else:
            q = vals[t]
        history[p + t] = pred + q * step
    indices = out if encode else vals
    return np.ascontiguousarray(indices.T), np.ascontiguousarray(history[p:].T)


def _stack_coefs(coef_list: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    p = max((len(c) for c in coef_list), default=0)
    coefs = np.zeros((len(coef_list), p), np.int64)
    for i, c in enumerate(coef_list):
        coefs[i, :len(c)] = c
    return coefs, np.array([len(c) for c in coef_list], np.int64)


def _spatial_plan(items: list[ExactItem]) -> list[tuple[list[int], np.ndarray]]:
    """For each item, earlier items of its group to subtract, with Q10 weights.

    Chosen on first differences (close to what the temporal stage leaves): the references whose
    differences correlate most, weights by least squares, kept only if they remove 20 % of the energy.
    """
    plans: list = [([], np.zeros(0, np.int64))] * len(items)
    by_group: dict = {}
    for i, it in enumerate(items):
        by_group.setdefault(it.group, []).append(i)
    for members in by_group.values():
        by_len: dict = {}  # references share the target's length and error bound
        for pos, i in enumerate(members):
            if len(items[i].samples) >= 64:
                by_len.setdefault((len(items[i].samples), items[i].max_error), []).append(pos)
        for positions in by_len.values():
            if len(positions) < 2:
                continue
            diffs = np.stack([np.diff(items[members[pos]].samples.astype(np.float64)) for pos in positions])
            gram = diffs @ diffs.T
            for row in range(1, len(positions)):
                energy = gram[row, row]
                if energy <= 0:
                    continue
                score = np.abs(gram[row, :row]) / np.sqrt(np.maximum(np.diag(gram)[:row], 1e-9))
                refs = list(np.argsort(score)[::-1][:MAX_REFS])
                g = gram[np.ix_(refs, refs)]
                rhs = gram[refs, row]
                try:
                    w = np.linalg.solve(g + 1e-9 * np.trace(g) * np.eye(len(refs)), rhs)
                except np.linalg.LinAlgError:
                    continue
                if energy - w @ rhs < 0.8 * energy:
                    q = np.clip(np.round(w * (1 << SPATIAL_SHIFT)), -MAX_WEIGHT, MAX_WEIGHT).astype(np.int64)
                    plans[members[positions[row]]] = ([positions[r] for r in refs], q)
    return plans


def _spatial_prediction(ref_signals: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    acc = sum(w * r.astype(np.int64) for w, r in zip(weights, ref_signals))
    return (acc + (1 << (SPATIAL_SHIFT - 1))) >> SPATIAL_SHIFT


def encode_items(items: list[ExactItem]) -> list[bytes]:
    """One stream per item. Items of one group may reference earlier items of the group with the same
    length and bound; near-lossless references use the reconstruction the decoder will see."""
    affine = [_affine(it.samples.astype(np.int64)) for it in items]
    # from here on z = (x - m) / g, with the bound in steps of g: |x - x'| = g·|z - z'| ≤ g·(K // g) ≤ K
    items = [ExactItem((it.samples.astype(np.int64) - m) // g, it.max_error // g, it.group, it.lo, it.hi)
             for it, (g, m) in zip(items, affine)]
    plans = _spatial_plan(items)
    members_of: dict = {}
    for i, it in enumerate(items):
        members_of.setdefault(it.group, []).append(i)
    position = {i: pos for members in members_of.values() for pos, i in enumerate(members)}
    recon: dict[int, np.ndarray] = {}
    out: list[bytes | None] = [None] * len(items)

    def spatial_residual(i):
        refs, weights = plans[i]
        x = items[i].samples.astype(np.int64)
        if not refs:
            return x, np.zeros(len(x), np.int64)
        members = members_of[items[i].group]
        pred = _spatial_prediction([recon[members[r]] for r in refs], weights)
        return x - pred, pred

    # Lossless items: references are exact, so all items are independent once the plan is made.
    lossless = [i for i, it in enumerate(items) if not it.max_error]
    for i in lossless:
        recon[i] = items[i].samples.astype(np.int64)
    spatial = {i: spatial_residual(i)[0] for i in lossless}
    for n, idx in _by_length(items, lossless).items():
        for i, coefs in zip(idx, choose_lpc_many(np.stack([spatial[i] for i in idx]))):
            coded = _stream_head(LOSSLESS_MODE, items[i], coefs, plans[i], affine[i]) + \
                encode_residuals(temporal_residual(spatial[i], coefs))
            if plans[i][0] or len(coefs):
                coded = min(coded, _unpredicted(items[i].samples, affine[i]), key=len)
            out[i] = _smaller(coded, items[i].samples, affine[i])

    # Near-lossless items: one vectorized pass per position in the group, so that every reference
    # is reconstructed before the items that predict from it.
    near = sorted((i for i, it in enumerate(items) if it.max_error), key=lambda i: position[i])
    for pos in sorted({position[i] for i in near}):
        for n, idx in _by_length(items, [i for i in near if position[i] == pos]).items():
            residual = {i: spatial_residual(i) for i in idx}
            y = np.stack([residual[i][0] for i in idx])
            coef_list = choose_lpc_many(y)
            coefs, orders = _stack_coefs(coef_list)
            k = np.array([items[i].max_error for i in idx], np.int64)
            q, y_rec = predictive_loop(y, coefs, orders, k, encode=True)
            for row, i in enumerate(idx):
                recon[i] = y_rec[row] + residual[i][1]
                coded = _stream_head(NEAR_LOSSLESS_MODE, items[i], coef_list[row], plans[i], affine[i])
                out[i] = _smaller(coded + encode_residuals(q[row]), items[i].samples, affine[i])
                if out[i][0] == RAW_MODE:
                    recon[i] = items[i].samples.astype(np.int64)
    return out


def _stream_head(mode: int, item: ExactItem, coefs: np.ndarray, plan, affine: tuple[int, int]) -> bytes:
    refs, weights = plan
    head = _HEAD.pack(mode, len(item.samples), len(coefs), COEF_SHIFT) + _AFFINE.pack(*affine)
    head += coefs.astype("<i4").tobytes()
    if mode == NEAR_LOSSLESS_MODE:
        head += struct.pack("<Iqq", item.max_error, item.lo, item.hi)
    head += struct.pack("<BB", len(refs), SPATIAL_SHIFT)
    return head + b"".join(struct.pack("<Hi", r, int(w)) for r, w in zip(refs, weights))


def _unpredicted(x: np.ndarray, affine: tuple[int, int]) -> bytes:
    """Order 0, no references: best for signals of a few levels (triggers, square waves)."""
    x = np.asarray(x, np.int64)
    if len(x) == 0 or np.ptp(x) >= 4096 or np.count_nonzero(np.bincount(x - x.min())) > 64:
        return b"\xff" * (8 * len(x) + 64)  # not a candidate
    return _stream_head(LOSSLESS_MODE, ExactItem(x), np.zeros(0, np.int64), ([], []), affine) + encode_residuals(x)


def _raw_stream(z: np.ndarray, affine: tuple[int, int]) -> bytes:
    """Values kept as they are (zstd): for noise that no predictor can shrink."""
    body = zstandard.ZstdCompressor(level=3).compress(z.astype("<i4").tobytes())
    return _HEAD.pack(RAW_MODE, len(z), 0, COEF_SHIFT) + _AFFINE.pack(*affine) + body


def _smaller(coded: bytes, z: np.ndarray, affine: tuple[int, int]) -> bytes:
    if len(coded) <= 2 * len(z):  # below 16 bits a sample: prediction has paid off
        return coded
    raw = _raw_stream(z, affine)
    return raw if len(raw) < len(coded) else coded


def _by_length(items, indices) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i in indices:
        groups.setdefault(len(items[i].samples), []).append(i)
    return groups


@dataclass
class _Parsed:
    mode: int
    n: int
    coefs: np.ndarray
    refs: list
    weights: np.ndarray
    k: int
    lo: int
    hi: int
    residual: np.ndarray
    g: int = 1
    m: int = 0


def _parse(stream: bytes) -> _Parsed:
    mode, n, order, shift = _HEAD.unpack_from(stream, 0)
    if shift != COEF_SHIFT:
        raise ValueError("unsupported coefficient precision")
    pos = _HEAD.size
    g, m = _AFFINE.unpack_from(stream, pos)
    pos += _AFFINE.size
    if mode == RAW_MODE:
        raw = zstandard.ZstdDecompressor().decompress(stream[pos:])
        return _Parsed(mode, n, np.zeros(0, np.int64), [], np.zeros(0, np.int64), 0, 0, 0,
                       np.frombuffer(raw, "<i4").astype(np.int64), g, m)
    coefs = np.frombuffer(stream, "<i4", order, pos).astype(np.int64)
    pos += 4 * order
    k, lo, hi = 0, 0, 0
    if mode == NEAR_LOSSLESS_MODE:
        k, lo, hi = struct.unpack_from("<Iqq", stream, pos)
        pos += 20
    n_refs, _ = struct.unpack_from("<BB", stream, pos)
    pos += 2
    pairs = [struct.unpack_from("<Hi", stream, pos + 6 * j) for j in range(n_refs)]
    pos += 6 * n_refs
    refs, weights = [r for r, _ in pairs], np.array([w for _, w in pairs], np.int64)
    return _Parsed(mode, n, coefs, refs, weights, k, lo, hi, decode_residuals(stream[pos:], n), g, m)


def decode_items(streams: list[bytes], groups: list) -> list[np.ndarray]:
    """Inverse of encode_items; `groups` must repeat the group of each stream in the same order."""
    parsed = [_parse(s) for s in streams]
    temporal: list[np.ndarray | None] = [None] * len(parsed)
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(parsed):
        if p.mode == RAW_MODE:
            temporal[i] = p.residual
        else:
            by_len.setdefault(p.n, []).append(i)
    for n, idx in by_len.items():
        coefs, orders = _stack_coefs([parsed[i].coefs for i in idx])
        values = np.stack([parsed[i].residual for i in idx]) if n else np.zeros((len(idx), 0), np.int64)
        k = np.array([parsed[i].k for i in idx], np.int64)
        _, y = predictive_loop(values, coefs, orders, k, encode=False)
        for row, i in enumerate(idx):
            temporal[i] = y[row]
    members: dict = {}
    out: list[np.ndarray] = []
    for i, p in enumerate(parsed):
        group = members.setdefault(groups[i], [])
        x = temporal[i]
        if p.refs:
            x = x + _spatial_prediction([out[group[r]] for r in p.refs], p.weights)
        group.append(i)
        out.append(x)
    out = [p.g * x + p.m for x, p in zip(out, parsed)]
    # near-lossless values may overshoot the sample range by up to K; clipping only brings them closer
    return [np.clip(x, p.lo, p.hi) if p.mode == NEAR_LOSSLESS_MODE else x for x, p in zip(out, parsed)]
