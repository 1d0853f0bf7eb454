"""Stationary tones of transform and token streams (spec 8.5, 6.6): the narrow spectral lines that mains
interference, its harmonics and their aliases draw in a block, found and fitted by the writer and synthesized
by the reader.

A line's energy sits in a few DFT bins; where it is weaker than the transform's step, the quantizer drops
it and the band envelope spreads its power over the line's whole band as noise (Bonn: the 50-Hz line and
the 5th harmonic's alias at 76.4 Hz came back 0.3x as tall, their neighbours 1.4-3.3x); where it is
stronger, a sinusoid that does not fall on a DCT bin costs many coefficients. Three integers code it
exactly enough: its frequency in 1/256 of the block's DFT bin and its cosine and sine amplitudes.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

FREQUENCY_STEPS = 256  # a tone's frequency k means k · f_c / (256 n): 1/256 of the block's DFT bin
# Its amplitudes are in 1/16 of a digital unit: a line is what the recording holds, whatever the EEG beside it
# (in 2^-16 of the stream's scale, eegmat's 1-unit lines at 100 Hz rounded to 2 units and came back 3.6x)
AMPLITUDE_STEPS = 16
MAX_AMPLITUDE = 1 << 28  # a reader's bound on |a|, |b| (spec 8.5)
MAX_SAMPLES = 1 << 27  # a block with tones is shorter: k · t then stays below 2^63
CHUNK = 1 << 16  # the reader synthesizes a tone this many samples at a time
SEARCH_SAMPLES = 1 << 21  # the writer looks for tones in blocks up to this long (70 min at 500 Hz): its fit
# holds 2 columns a tone of the block's length
# The writer's search: a bin is a tone where it is the highest within ±LOCAL bins and PROMINENCE times the
# geometric mean of the bins NEAR to FAR away on both sides (a Hann window's main lobe is ±2 bins wide).
MAX_TONES = 8
PROMINENCE = 40.0
NEAR, FAR, LOCAL = 4, 16, 6
# Lines are looked for from the band envelope's first band up, where the coder drops what the envelope then
# fills. Below it the transform codes the waveform itself, and EEG's own rhythms pass for lines (alpha at
# 10.8 Hz in the example's T4, eye movements at 1.2 Hz in Fp1): taken out of some channels and not of
# others, they cost the rotation what the channels share (the example at 250 bit/s: PRDN +0.5 points).
LOWEST_HZ = 30.0
# A tone holds still: fitted on each quarter of the block, its amplitude stays within STEADY of the whole
# block's. Mains can fade (Bonn S066's 50-Hz line: 0.48, 0.76, 1.22, 0.05 in its quarters); a constant tone
# would invent the line where it is gone.
QUARTERS, STEADY = 4, 2.5
MIN_AMPLITUDE = 0.25  # digital units: a smaller line is under the output's rounding (half a step from peak to peak)


def found(x: np.ndarray, rate: float, most: int = MAX_TONES, known: np.ndarray | None = None) -> list[tuple[int, float, float]]:
    """The block's `most` most prominent stationary tones as (k, cosine amplitude, sine amplitude) in x's
    units, k in ascending order (spec 8.5's frequency steps); none in a block too short or too long for them.
    `known`: where x holds the recording (False where it bridges constant runs, which hold no tone): the
    amplitudes are fitted there only."""
    n = len(x)
    if n < 4 * FAR or n > SEARCH_SAMPLES or most < 1:
        return []
    frequencies = _candidates(x, rate, most)
    if not frequencies:
        return []
    known = np.ones(n, bool) if known is None else known
    weights = _hann(n) * known
    if not np.sum(weights) > 0:
        return []
    frequencies = _refined(x, rate, frequencies, weights)
    k = np.unique(np.rint(np.array(frequencies) * FREQUENCY_STEPS * n / rate).astype(np.int64))
    k = k[(k > 0) & (k < FREQUENCY_STEPS * n // 2)]
    if not len(k):
        return []
    columns = _columns(k, n)
    coefs = _fitted(x, columns, weights)
    steady = _steady(x, columns, coefs, known) & (np.hypot(coefs[0::2], coefs[1::2]) >= MIN_AMPLITUDE)
    if not steady.all():
        k, columns = k[steady], columns[:, np.repeat(steady, 2)]
        coefs = _fitted(x, columns, weights) if len(k) else coefs[:0]
    return [(int(kk), float(a), float(b)) for kk, a, b in zip(k, coefs[0::2], coefs[1::2])]


def _steady(x: np.ndarray, columns: np.ndarray, coefs: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Per tone: whether its amplitude fitted on each quarter of the block stays within STEADY of the whole's."""
    whole = np.hypot(coefs[0::2], coefs[1::2])
    ok = np.ones(len(whole), bool)
    for j in range(QUARTERS):
        part = slice(j * len(x) // QUARTERS, (j + 1) * len(x) // QUARTERS)
        c = _fitted(x[part], columns[part], _hann(part.stop - part.start) * known[part])
        amplitude = np.hypot(c[0::2], c[1::2])
        ok &= (amplitude * STEADY >= whole) & (amplitude <= STEADY * whole)
    return ok


def as_stored(x: np.ndarray, rate: float, most: int, known: np.ndarray | None = None) -> np.ndarray:
    """The block's tones as a stream stores them: rows (k, a, b), amplitudes in 1/AMPLITUDE_STEPS digital
    units (x's units), those that round to nothing dropped (`found`'s arguments)."""
    lines = found(x, rate, min(most, MAX_TONES), known)
    k = np.array([t[0] for t in lines], np.int64)
    q = np.rint(np.array([t[1:] for t in lines], np.float64).reshape(-1, 2) * AMPLITUDE_STEPS)
    q = np.clip(q, -MAX_AMPLITUDE, MAX_AMPLITUDE).astype(np.int64)
    keep = np.any(q != 0, axis=1)
    return np.column_stack([k[keep], q[keep]]).reshape(-1, 3)


def synthesized(rows: np.ndarray, n: int) -> np.ndarray:
    """Stored tones' samples over a block of n samples, in digital units (spec 8.5)."""
    k, a, b = np.asarray(rows, np.int64).reshape(-1, 3).T
    return samples(k, a, b, n) / AMPLITUDE_STEPS


def in_range(rows: np.ndarray, n: int) -> bool:
    """Whether stored tones are what a reader accepts (spec 8.5): frequencies strictly ascending, above 0 and
    below the Nyquist frequency, amplitudes within MAX_AMPLITUDE, a block short enough for exact phases."""
    k, a, b = np.asarray(rows, np.int64).reshape(-1, 3).T
    if not len(k):
        return True
    return bool(n < MAX_SAMPLES and k[0] > 0 and np.all(np.diff(k) > 0) and k[-1] < FREQUENCY_STEPS * n // 2
                and np.all(np.abs(a) <= MAX_AMPLITUDE) and np.all(np.abs(b) <= MAX_AMPLITUDE))


def samples(k: np.ndarray, a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Σ a cos(2π k t / (256 n)) + b sin(...) over t < n, each angle from the exact integer (k t) mod 256 n."""
    out = np.zeros(n)
    for kk, aa, bb in zip(k, a, b):
        for start in range(0, n, CHUNK):  # a part at a time: a few times the block's memory at most
            columns = _columns(np.array([kk], np.int64), n, start, min(n, start + CHUNK))
            out[start:start + CHUNK] += float(aa) * columns[:, 0] + float(bb) * columns[:, 1]
    return out


def _columns(k: np.ndarray, n: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """cos and sin of each tone over samples [start, stop) of the block (columns cos k_0, sin k_0, cos k_1, ...)."""
    period = FREQUENCY_STEPS * n
    t = np.arange(start, n if stop is None else stop, dtype=np.int64)
    angles = 2.0 * np.pi * ((t[:, None] * k[None, :]) % period) / period
    out = np.empty((len(t), 2 * len(k)))
    out[:, 0::2], out[:, 1::2] = np.cos(angles), np.sin(angles)
    return out


def _fitted(x: np.ndarray, columns: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares amplitudes of the columns in x, beside a constant (x's mean is no tone), each sample
    weighted by a Hann window: unweighted, the slow waves leak into a fit over a finite block as into an
    unwindowed spectrum (eegmat Subject15's T3: a 200-Hz line of 0.11 digital units beside waves of
    thousands was fitted at 3, and came back as a tone 60 times its power). `weights`: the window, times 0
    where x is not the recording's."""
    design = np.column_stack([columns, np.ones(len(x))])
    weighted = design * (_hann(len(x)) if weights is None else weights)[:, None]
    try:  # the normal equations: tones a bin or more apart keep them well conditioned
        return np.linalg.solve(weighted.T @ design, weighted.T @ x)[:-1]
    except np.linalg.LinAlgError:
        return np.zeros(columns.shape[1])


def _candidates(x: np.ndarray, rate: float, most: int) -> list[float]:
    """Frequencies (Hz) of the block's most prominent narrow peaks, by parabolic interpolation of the log
    power of the Hann-windowed spectrum around each."""
    n = len(x)
    p = np.abs(np.fft.rfft((x - x.mean()) * _hann(n))) ** 2
    if not p.max() > 0:  # a flat block
        return []
    log_p = np.log(p + 1e-30 * p.max())
    total = np.concatenate(([0.0], np.cumsum(log_p)))

    def mean_between(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # sums over [lo, hi)
        lo, hi = np.clip(lo, 0, len(p)), np.clip(hi, 0, len(p))
        return total[hi] - total[lo], hi - lo
    i = np.arange(max(1, math.ceil(LOWEST_HZ * n / rate)), len(p) - 1)
    below, n_below = mean_between(i - FAR, i - NEAR + 1)
    above, n_above = mean_between(i + NEAR, i + FAR + 1)
    floor = (below + above) / np.maximum(n_below + n_above, 1)
    prominent = log_p[i] - floor > math.log(PROMINENCE)
    chosen, floor = i[prominent], floor[prominent]
    highest = [p[j] >= p[max(0, j - LOCAL):j + LOCAL + 1].max() for j in chosen]  # the highest within ±LOCAL
    chosen, floor = chosen[highest], floor[highest]
    chosen = chosen[np.argsort(floor - log_p[chosen], kind="stable")][:most]
    out = []
    for j in chosen:
        a, b, c = log_p[j - 1:j + 2]
        curve = a - 2 * b + c
        shift = 0.5 * (a - c) / curve if curve < 0 else 0.0
        out.append((j + float(np.clip(shift, -0.5, 0.5))) * rate / n)
    return sorted(out)


@lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    return np.hanning(n)


def _refined(x: np.ndarray, rate: float, frequencies: list[float], window: np.ndarray) -> list[float]:
    """One Gauss-Newton step on each frequency of the joint fit (each moved by at most half a bin)."""
    n = len(x)
    t = np.arange(n) / rate
    omega = 2.0 * np.pi * np.array(frequencies)
    columns = np.empty((n, 2 * len(omega)))
    columns[:, 0::2], columns[:, 1::2] = np.cos(np.outer(t, omega)), np.sin(np.outer(t, omega))
    coefs = _fitted(x, columns, window)
    residual = x - columns @ coefs
    residual -= np.sum(window * residual) / np.sum(window)
    out = []
    for j, (a, b) in enumerate(zip(coefs[0::2], coefs[1::2])):
        slope = t * (b * columns[:, 2 * j] - a * columns[:, 2 * j + 1])  # d(tone)/d(omega)
        energy = float(np.sum(window * slope * slope))
        step = float(np.sum(window * residual * slope)) / energy if energy > 0 else 0.0
        out.append(frequencies[j] + float(np.clip(step / (2 * np.pi), -0.5 * rate / n, 0.5 * rate / n)))
    return out
