"""Formats 1 and 2: the exact layer, decoding only (format 3 codes exact streams with exact.py and _core).

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
from ..container import unzstd

from .entropy import decode_residuals

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



def _spatial_prediction(ref_signals: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    acc = sum(w * r.astype(np.int64) for w, r in zip(weights, ref_signals))
    return (acc + (1 << (SPATIAL_SHIFT - 1))) >> SPATIAL_SHIFT








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
        raw = unzstd(stream[pos:], 4 * n, "exact stream")
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
