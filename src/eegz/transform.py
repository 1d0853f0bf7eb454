"""Transform coding of EEG channels (mode `transform`, spec 8): a classical codec that spends each block's
bits where the block's spectrum has its power, as audio codecs do.

Each block of a channel is normalized as lossy mode normalizes it (median, 16 robust standard deviations),
cut into windows of about WINDOW_SECONDS, and each window's DCT-II (orthonormal) quantized with one step.
The quantized coefficients of each window up to its last significant one are coded, window after window,
with the exact layer's adaptive residual coder (spec 5.3): EEG's power falls with frequency, and the
coder's context follows it, so the few low-frequency coefficients take the bits and the long quiet tail
costs nothing. The step is the finest that keeps the stream within --bitrate (or the coarsest whose block
meets --quality). Each window also carries its error at its two edge samples, faded out by the decoder,
so that windows coded apart meet without a click. What the step zeroes above beta comes back as shaped
noise from the band envelope (spec 6.4). Blocks decode on their own, so any time range decodes from the
blocks it touches and nothing else.

Measured (benchmarks/results/baselines.md, clinical_transform.md): at the bits of 6 codebooks the waveform
error on held-out EEG is about two thirds of the neural codec's, and the detectors agree more often.
"""
from __future__ import annotations

import math
import struct

import numpy as np

from . import _core, envelope
from .edf import Signal
from .errors import FormatError
from .lossy import block_normalization, meets_quality, seed_of

# Measured at 250 bit/s: eegmat Subject14-17 mean PRDN without the envelope / Bonn 051-070's strongest
# invented line with it: one window per block (16 s; Bonn 23.6 s) 14.3 % / 1.71x (set D, 36 Hz), 8-s
# windows 14.5 % / 1.58x, 4-s 14.6 % / 1.59x, 2-s 14.9 % (a coefficient coded alone rings for its whole
# window: shorter windows invent shorter tones, but pay for more edges). Also tried: dropping a ±1 with
# no neighbour within 2 coefficients (line 1.52x, but PRDN +1 point with the envelope, whose noise then
# fills in for it); reconstructing ±1 at ±0.8 steps (line 1.34x, PRDN +1.7 points); noise filling in the
# DCT domain, only where coefficients are 0 (PRDN -0.4 points, but flat noise per band left steps at the
# band edges, lines up to 1.8x, and nothing took down what the edge patches leak into eegmat's empty
# 74-250 Hz: +30 dB there).
WINDOW_SECONDS = 8.0
MAX_WINDOWS = 255  # the header's u8
DEAD_ZONE = 0.15  # a coefficient rounds to ±1 from 0.65 steps on: PRDN 14.9 -> 14.4 % at 250 bit/s (0.3: 14.7)
CUTS = (1, 2)  # trailing coefficients below this magnitude are dropped: the encoder tries both, keeps the better
# Edge patches: each window's error at its first and last sample, in 1/16 of the step, faded out over 50 ms.
# Without them the independent errors of two windows meet in a step, whose click filled 70-250 Hz on
# eegmat with 2x its power (Subject17, 2-s windows: 0.5-Hz band error 1.0 -> 0.24; 1/4 of a step: 0.44;
# a 0.2-s fade: PRDN +0.9 points)
PATCH_STEPS = 16
PATCH_SECONDS = 0.05
STARTS = (0, 16, 256, 4096)  # the residual coder's context starts a stream may name
ENVELOPE_RULES = 6  # the band envelope as spec 6.4 gives it from format 6 on (parts, shape, skirt)
_HEAD = struct.Struct("<fffBBBI")  # offset, scale, step, windows, coder (family + 4 × start), bands, coefficients


def window_count(n: int, rate: float) -> int:
    """How many windows the encoder cuts a block of n samples into (a decoder reads it from the stream)."""
    return max(1, min(MAX_WINDOWS, n, round(n / (WINDOW_SECONDS * rate))))


def window_edges(n: int, w: int) -> list[int]:
    """Window k holds samples [floor(k n / w), floor((k + 1) n / w)), as the exact layer's LPC frames."""
    return [k * n // w for k in range(w + 1)]


# ---------------------------------------------------------------- encoding

def encode_block(digital: np.ndarray, signal: Signal, bitrate: float | None = None, quality: float | None = None,
                 band_envelope: bool = True) -> bytes:
    """One channel-block's transform stream: within `bitrate` bits per second, or the coarsest step whose
    block meets `quality` (lossy.meets_quality)."""
    from scipy.fft import dct
    x = digital.astype(np.float64)
    n, rate = len(x), signal.sample_rate
    offset, scale = block_normalization(x)
    z = (x - offset) / scale
    edges = window_edges(n, window_count(n, rate))
    coefs = [dct(z[a:b], norm="ortho") for a, b in zip(edges, edges[1:])]
    levels = envelope.levels(z, rate, rate / 2, envelope.channel_bands(rate), ENVELOPE_RULES) if band_envelope else b""

    ends = [_edge_rows(b - a) for a, b in zip(edges, edges[1:])]

    def coded(step: float, cut: int, final: bool = False) -> tuple[list, np.ndarray, bytes, int]:
        """(quantized windows, edge patches, words, coder byte) at this float32 step."""
        q = [_quantized(c, step, cut) for c in coefs]
        patches = _edge_patches(z, q, ends, edges, step)
        coder, words = _residuals(_sequence(q, patches, levels), every_start=final)
        return q, patches, words, coder

    def stream(step: float, cut: int) -> bytes:
        q, _, words, coder = coded(step, cut, final=True)
        return _HEAD.pack(offset, scale, step, len(coefs), coder, len(levels), sum(len(v) for v in q)) + words

    if quality is not None:
        def meets(step):
            q, patches, _, _ = coded(step, 1)
            return meets_quality(z, _patched(_inverse(q, edges, step), patches, edges, step, rate), quality, rate)
        return stream(_coarsest(meets, coefs), 1)
    budget = bitrate * n / rate / 8 - _HEAD.size  # bytes the words may take
    best = None
    for cut in CUTS:
        step = _finest(lambda step: len(coded(step, cut)[2]), budget, coefs)
        error = sum(float(np.sum((c - _dequantized(_quantized(c, step, cut), len(c), step)) ** 2)) for c in coefs)
        if best is None or error < best[0]:
            best = (error, step, cut)
    return stream(best[1], best[2])


def _edge_rows(m: int) -> np.ndarray:
    """The orthonormal DCT-III's rows for a window's first and last sample: (2, m)."""
    k = np.arange(m)
    first = np.where(k == 0, np.sqrt(1.0 / m), np.sqrt(2.0 / m)) * np.cos(np.pi * k / (2 * m))
    return np.stack([first, first * np.where(k % 2, -1.0, 1.0)])


def _edge_patches(z: np.ndarray, q: list, ends: list, edges: list, step: float) -> np.ndarray:
    """Each window's error at its first and last sample, in 1/16 of the step: the decoder takes it out with
    a short fade (_patched), so that windows and blocks, coded apart, meet without a step (a click that
    spreads over every band above the coded ones)."""
    out = np.empty(2 * len(q), np.int64)
    for j, (v, rows, a, b) in enumerate(zip(q, ends, edges, edges[1:])):
        y = rows[:, :len(v)] @ (v * step)
        out[2 * j:2 * j + 2] = np.rint((z[[a, b - 1]] - y) * PATCH_STEPS / step)
    return out


def _patched(y: np.ndarray, patches: np.ndarray, edges: list, step: float, rate: float) -> np.ndarray:
    """y with each window's edge patches faded in: p · step / 16 · (1 + cos(π t / L)) / 2 at t samples from
    the edge, t < L = min(round(PATCH_SECONDS × rate), floor(window length / 2))."""
    y = y.copy()
    for k, (a, b) in enumerate(zip(edges, edges[1:])):
        fade = _fade(min(round(PATCH_SECONDS * rate), (b - a) // 2))
        y[a:a + len(fade)] += patches[2 * k] * (step / PATCH_STEPS) * fade
        y[b - len(fade):b] += patches[2 * k + 1] * (step / PATCH_STEPS) * fade[::-1]
    return y


def _fade(length: int) -> np.ndarray:
    return 0.5 * (1.0 + np.cos(np.pi * np.arange(length) / length)) if length > 0 else np.zeros(0)


def _quantized(c: np.ndarray, step: float, cut: int) -> np.ndarray:
    """The window's quantized coefficients up to its last one of magnitude >= cut. A coefficient rounds to
    ±1 only from 0.65 steps on (DEAD_ZONE): a ±1 costs bits that a value so near the middle rarely earns."""
    r = np.abs(c) / step
    q = (np.sign(c) * np.floor(r + 0.5 - DEAD_ZONE * (r < 1.5))).astype(np.int64)
    big = np.flatnonzero(np.abs(q) >= cut)
    return q[:big[-1] + 1] if len(big) else q[:0]


def _dequantized(q: np.ndarray, m: int, step: float) -> np.ndarray:
    out = np.zeros(m)
    out[:len(q)] = q * step
    return out


def _sequence(q: list, patches: np.ndarray, levels: bytes) -> np.ndarray:
    """What the residual coder codes (spec 8): each window's coefficient count, its two edge patches, the
    band envelope (the first level, then each level's change from the one before), then the windows'
    coefficients in order."""
    envelope_part = np.diff(np.frombuffer(levels, np.uint8).astype(np.int64), prepend=0)
    parts = [np.array([len(v) for v in q], np.int64), patches, envelope_part, *q]
    return np.ascontiguousarray(np.concatenate(parts), np.int64)


def _residuals(values: np.ndarray, every_start: bool = True) -> tuple[int, bytes]:
    """(coder byte, words): the values as a residual stream (spec 5.3) of the family that codes them best,
    from the context start that gives the fewest words (or from 0 while the step is searched: the final
    stream is then never larger)."""
    family = int(np.argmin(_core.residual_costs(values))) if len(values) else 0
    starts = enumerate(STARTS if every_start else STARTS[:1])
    return min(((family + 4 * j, _core.encode_residuals(values, family, s0)) for j, s0 in starts), key=lambda t: len(t[1]))


def _f32(v: float) -> float:
    return float(np.float32(v))


def _coarsest_step(coefs: list) -> float:
    """A step at which every coefficient quantizes to 0."""
    return _f32(max((float(np.max(np.abs(c))) for c in coefs if len(c)), default=1.0) * 4 + 1e-6)


def _finest(size, budget: float, coefs: list) -> float:
    """The finest float32 step whose size(step) (bytes, falling as the step grows) is within budget: regula
    falsi on log size against log step (nearly a line), to 1 % of the step."""
    top = _coarsest_step(coefs)
    if budget <= 0:
        return top

    def f(step):
        return math.log(max(size(step), 1)) - math.log(budget)
    # the bracket grows by tenfolds from 1/100 of the coarsest step, where EEG's steps lie at 100-400 bit/s
    # (1/340 to 1/20 on eegmat): a third fewer sizes than a bracket over seven decades
    lo = hi = _f32(top / 100)
    f_lo = f_hi = f(lo)
    while f_lo <= 0 and lo > top * 1e-7:
        hi, f_hi, lo = lo, f_lo, _f32(lo / 10)
        f_lo = f(lo)
    if f_lo <= 0:
        return lo
    while f_hi > 0 and hi < top:
        lo, f_lo, hi = hi, f_hi, min(_f32(hi * 10), top)
        f_hi = f(hi)
    if f_hi > 0:
        return hi  # not even all zeros fit
    side = 0
    while hi / lo > 1.01:
        t = f_lo / (f_lo - f_hi)
        mid = _f32(math.exp(math.log(lo) + min(max(t, 0.05), 0.95) * (math.log(hi) - math.log(lo))))
        if not lo < mid < hi:
            break
        f_mid = f(mid)
        if f_mid > 0:
            lo, f_lo = mid, f_mid
            f_hi, side = (f_hi / 2, -1) if side == -1 else (f_hi, -1)
        else:
            hi, f_hi = mid, f_mid
            f_lo, side = (f_lo / 2, 1) if side == 1 else (f_lo, 1)
    return hi


def _coarsest(meets, coefs: list) -> float:
    """The coarsest float32 step for which meets(step) holds (bisection on the log step)."""
    lo, hi = _f32(_coarsest_step(coefs) * 1e-7), _coarsest_step(coefs)  # lo: meets (or as fine as it gets)
    if meets(hi):
        return hi
    while hi / lo > 1.01:
        mid = _f32(math.sqrt(lo * hi))
        lo, hi = (mid, hi) if meets(mid) else (lo, mid)
    return lo


def _inverse(q: list, edges: list, step: float) -> np.ndarray:
    """The windows' samples from their quantized coefficients (orthonormal DCT-III)."""
    from scipy.fft import idct
    out = np.empty(edges[-1])
    for j, (a, b) in enumerate(zip(edges, edges[1:])):
        out[a:b] = idct(_dequantized(q[j], b - a, step), norm="ortho")  # windows are never empty: w <= n
    return out


# ---------------------------------------------------------------- decoding

def decode_block(data: bytes, signal: Signal, n: int, first_record: int) -> np.ndarray:
    """A channel-block's digital samples from its transform stream (spec 8): n samples from first_record on."""
    if len(data) < _HEAD.size:
        raise FormatError("damaged transform stream (shorter than its header)")
    offset, scale, step, w, coder, n_bands, total = _HEAD.unpack_from(data, 0)
    if not (math.isfinite(offset) and math.isfinite(scale) and math.isfinite(step) and scale > 0 and step > 0):
        raise FormatError("damaged transform stream (normalization or step out of range)")
    bands = envelope.channel_bands(signal.sample_rate)
    if not 1 <= w <= min(MAX_WINDOWS, n) or coder >= 4 * len(STARTS) or n_bands not in (0, len(bands)) or total > n:
        raise FormatError("damaged transform stream (windows, coder, bands or coefficient count)")
    try:
        values = _core.decode_residuals(data[_HEAD.size:], 3 * w + n_bands + total, coder % 4, STARTS[coder // 4])
    except ValueError as e:
        raise FormatError(f"damaged transform stream ({e})") from None
    values = np.frombuffer(values, np.int64)
    counts, patches = values[:w], values[w:3 * w]
    levels = np.cumsum(values[3 * w:3 * w + n_bands])
    edges = window_edges(n, w)
    if np.any(counts < 0) or np.any(counts > np.diff(edges)) or counts.sum() != total \
            or np.any(levels < 0) or np.any(levels > 255):
        raise FormatError("damaged transform stream (window counts or band envelope)")
    values = values[3 * w + n_bands:]
    if np.any(np.abs(patches) > 1 << 40):
        raise FormatError("damaged transform stream (edge patch out of range)")
    rate = signal.sample_rate
    z = _patched(_inverse(np.split(values, np.cumsum(counts)[:-1]), edges, step), patches, edges, step, rate)
    if not np.all(np.isfinite(z)):
        raise FormatError("damaged transform stream (coefficients out of range)")
    if n_bands:  # noise filling and scaling, as lossy mode's (spec 6.4), in the block's digital units
        seed = seed_of(first_record, signal.index, scale)
        z = envelope.apply(z, bytes(levels.astype(np.uint8)), rate, rate / 2, seed, bands, (1.0 / scale) ** 2 / 12.0,
                           version=ENVELOPE_RULES)
    return np.clip(np.rint(offset + scale * z), signal.digital_min, signal.digital_max).astype(np.int32)
