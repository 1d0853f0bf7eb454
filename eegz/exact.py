"""The exact layer: lossless and error-bounded near-lossless coding of digital EDF samples.

Each (block, channel) stream is predicted in two integer stages, then entropy coded (entropy.py):
  1. spatial (lossless only): subtract an integer combination of up to MAX_REFS channels of the same
     block that were coded before it (channels sharing a reference electrode share most of their signal);
  2. temporal: integer linear prediction of adaptive order with Q12 coefficients, chosen per stream by
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
COEF_SHIFT = 12
SPATIAL_SHIFT = 10
MAX_REFS = 3
_HEAD = struct.Struct("<BIBB")  # mode, n, order, coef shift


@dataclass
class ExactItem:
    samples: np.ndarray  # digital samples of one channel in one block
    max_error: int = 0  # K in digital steps; 0 is lossless
    group: object = 0  # streams of one group (one block) may predict from each other
    lo: int = -(1 << 31)  # the representable sample range, for clipping near-lossless output
    hi: int = (1 << 31) - 1


def _autocorr(y: np.ndarray, max_lag: int) -> np.ndarray:
    n = len(y)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spec = np.fft.rfft(y, size)
    return np.fft.irfft(spec * np.conj(spec), size)[:max_lag + 1]


def choose_lpc(y: np.ndarray) -> np.ndarray:
    """Quantized predictor coefficients (Q12 integers) of the order with the lowest estimated cost."""
    n = len(y)
    max_order = min(MAX_ORDER, n // 8)
    if max_order < 1:
        return np.zeros(0, np.int64)
    x = y.astype(np.float64) - y.mean()
    r = _autocorr(x, max_order)
    if r[0] <= 0:
        return np.zeros(0, np.int64)
    r[0] *= 1.0 + 1e-9
    a, err = np.zeros(0), r[0]
    best_cost, best = 0.5 * n * np.log2(max(np.mean(np.diff(y.astype(np.float64)) ** 2), 1e-3)) + 20, np.array([1.0])
    for p in range(1, max_order + 1):
        k = (r[p] - np.dot(a, r[p - 1:0:-1])) / err
        a = np.concatenate([a - k * a[::-1], [k]])
        err *= 1.0 - k * k
        if err <= 0:
            break
        cost = 0.5 * n * np.log2(max(err / n, 1e-3)) + 20 * p
        if cost < best_cost:
            best_cost, best = cost, a.copy()
    return np.clip(np.round(best * (1 << COEF_SHIFT)), -(1 << 20), 1 << 20).astype(np.int64)


def temporal_residual(y: np.ndarray, coefs: np.ndarray) -> np.ndarray:
    """Lossless residual, vectorized: the same predictor the decoder's loop applies."""
    order, y = len(coefs), y.astype(np.int64)
    pred = np.zeros(len(y), np.int64)
    pred[1:order] = y[:order - 1] if order > 1 else pred[1:order]
    if order and len(y) > order:
        acc = np.zeros(len(y) - order, np.int64)
        for k in range(1, order + 1):
            acc += coefs[k - 1] * y[order - k:len(y) - k]
        pred[order:] = (acc + (1 << (COEF_SHIFT - 1))) >> COEF_SHIFT
    return y - pred


def predictive_loop(values: np.ndarray, coefs: np.ndarray, orders: np.ndarray, k: np.ndarray,
                    lo: np.ndarray, hi: np.ndarray, encode: bool) -> np.ndarray:
    """Run the temporal predictor over (streams, time), all streams at once.

    encode=True: values are samples; returns quantized residual indices (near-lossless encoder).
    encode=False: values are residual indices; returns reconstructed samples (decoder).
    """
    n_streams, n = values.shape
    p = coefs.shape[1]
    history = np.zeros((n_streams, n + p), np.int64)
    reversed_coefs = coefs[:, ::-1].copy()
    step = 2 * k + 1
    half = np.int64(1 << (COEF_SHIFT - 1))
    out = np.empty((n_streams, n), np.int64)
    clip = bool((k > 0).any())
    for t in range(n):
        if p:
            pred = (np.einsum("ij,ij->i", history[:, t:t + p], reversed_coefs) + half) >> COEF_SHIFT
        else:
            pred = np.zeros(n_streams, np.int64)
        warm = t < orders
        if warm.any():
            pred = np.where(warm, history[:, p + t - 1] if t else 0, pred)
        if encode:
            r = values[:, t] - pred
            q = np.sign(r) * ((np.abs(r) + k) // step)
            out[:, t] = q
        else:
            q = values[:, t]
        y = pred + q * step
        if clip:
            y = np.clip(y, lo, hi)
        history[:, p + t] = y
        if not encode:
            out[:, t] = y
    return out


def _stack_coefs(coef_list: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    p = max((len(c) for c in coef_list), default=0)
    coefs = np.zeros((len(coef_list), p), np.int64)
    for i, c in enumerate(coef_list):
        coefs[i, :len(c)] = c
    return coefs, np.array([len(c) for c in coef_list], np.int64)


def _spatial_plan(items: list[ExactItem]) -> list[tuple[list[int], np.ndarray]]:
    """For each lossless item, earlier items of its group to subtract, with Q10 weights."""
    plans: list = [([], np.zeros(0, np.int64))] * len(items)
    by_group: dict = {}
    for i, it in enumerate(items):
        by_group.setdefault(it.group, []).append(i)
    for members in by_group.values():
        diffs = {i: np.diff(items[i].samples.astype(np.float64)) for i in members}
        for pos, i in enumerate(members):
            it = items[i]
            cands = [j for j in members[:pos] if items[j].max_error == 0 and len(items[j].samples) == len(it.samples)]
            if it.max_error or not cands or len(it.samples) < 64:
                continue
            d = diffs[i]
            energy = float(d @ d)
            if energy == 0:
                continue
            score = [abs(float(d @ diffs[j])) / np.sqrt(max(float(diffs[j] @ diffs[j]), 1e-9)) for j in cands]
            refs = [cands[j] for j in np.argsort(score)[::-1][:MAX_REFS]]
            basis = np.stack([diffs[j] for j in refs], axis=1)
            w, *_ = np.linalg.lstsq(basis, d, rcond=None)
            resid = d - basis @ w
            if float(resid @ resid) < 0.8 * energy:
                q = np.clip(np.round(w * (1 << SPATIAL_SHIFT)), -(1 << 20), 1 << 20).astype(np.int64)
                plans[i] = ([members.index(j) for j in refs], q)
    return plans


def _spatial_prediction(ref_signals: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    acc = sum(w * r.astype(np.int64) for w, r in zip(weights, ref_signals))
    return (acc + (1 << (SPATIAL_SHIFT - 1))) >> SPATIAL_SHIFT


def encode_items(items: list[ExactItem]) -> list[bytes]:
    plans = _spatial_plan(items)
    group_members: dict = {}
    for i, it in enumerate(items):
        group_members.setdefault(it.group, []).append(i)
    out: list[bytes | None] = [None] * len(items)
    near: list[int] = []
    for i, it in enumerate(items):
        x = it.samples.astype(np.int64)
        if it.max_error:
            near.append(i)
            continue
        refs, weights = plans[i]
        members = group_members[it.group]
        y = x - _spatial_prediction([items[members[r]].samples for r in refs], weights) if refs else x
        coefs = choose_lpc(y)
        head = _HEAD.pack(LOSSLESS_MODE, len(x), len(coefs), COEF_SHIFT) + coefs.astype("<i4").tobytes()
        head += struct.pack("<BB", len(refs), SPATIAL_SHIFT)
        head += b"".join(struct.pack("<Hi", r, int(w)) for r, w in zip(refs, weights))
        out[i] = _smaller(head + encode_residuals(temporal_residual(y, coefs)), x)
    for n, idx in _by_length(items, near).items():
        coef_list = [choose_lpc(items[i].samples.astype(np.int64)) for i in idx]
        coefs, orders = _stack_coefs(coef_list)
        x = np.stack([items[i].samples.astype(np.int64) for i in idx])
        k = np.array([items[i].max_error for i in idx], np.int64)
        lo = np.array([items[i].lo for i in idx], np.int64)
        hi = np.array([items[i].hi for i in idx], np.int64)
        q = predictive_loop(x, coefs, orders, k, lo, hi, encode=True)
        for row, i in enumerate(idx):
            it, c = items[i], coef_list[row]
            head = _HEAD.pack(NEAR_LOSSLESS_MODE, n, len(c), COEF_SHIFT) + c.astype("<i4").tobytes()
            head += struct.pack("<Iqq", it.max_error, it.lo, it.hi)
            out[i] = _smaller(head + encode_residuals(q[row]), it.samples)
    return out


def _raw_stream(samples: np.ndarray) -> bytes:
    """Samples kept as they are (zstd): for noise that no predictor can shrink."""
    body = zstandard.ZstdCompressor(level=3).compress(samples.astype("<i4").tobytes())
    return _HEAD.pack(RAW_MODE, len(samples), 0, COEF_SHIFT) + body


def _smaller(coded: bytes, samples: np.ndarray) -> bytes:
    if len(coded) <= 2 * len(samples):  # below 16 bits a sample: prediction has paid off
        return coded
    raw = _raw_stream(samples)
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


def _parse(stream: bytes) -> _Parsed:
    mode, n, order, shift = _HEAD.unpack_from(stream, 0)
    if shift != COEF_SHIFT:
        raise ValueError("unsupported coefficient precision")
    pos = _HEAD.size
    if mode == RAW_MODE:
        raw = zstandard.ZstdDecompressor().decompress(stream[pos:])
        return _Parsed(mode, n, np.zeros(0, np.int64), [], np.zeros(0, np.int64), 0, 0, 0,
                       np.frombuffer(raw, "<i4").astype(np.int64))
    coefs = np.frombuffer(stream, "<i4", order, pos).astype(np.int64)
    pos += 4 * order
    refs, weights, k, lo, hi = [], np.zeros(0, np.int64), 0, 0, 0
    if mode == LOSSLESS_MODE:
        n_refs, _ = struct.unpack_from("<BB", stream, pos)
        pos += 2
        pairs = [struct.unpack_from("<Hi", stream, pos + 6 * j) for j in range(n_refs)]
        pos += 6 * n_refs
        refs, weights = [r for r, _ in pairs], np.array([w for _, w in pairs], np.int64)
    else:
        k, lo, hi = struct.unpack_from("<Iqq", stream, pos)
        pos += 20
    return _Parsed(mode, n, coefs, refs, weights, k, lo, hi, decode_residuals(stream[pos:], n))


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
        lo = np.array([parsed[i].lo for i in idx], np.int64)
        hi = np.array([parsed[i].hi for i in idx], np.int64)
        y = predictive_loop(values, coefs, orders, k, lo, hi, encode=False)
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
    return out
