"""Constant runs (spec 8.4, 6.7): stretches of one digital value that a lossy stream stores exactly.

A stretch that holds one value (an electrode off, an amplifier at its rail, the padding an EDF writer puts
after a recording's last sample) is what a reader must see as flat. Coded, its step rang over the coder's
window and its broadband power went into the band envelope's noise. So the writer finds the runs, stores
them, and replaces them by a smooth bridge in what it codes and measures; the reader writes them back over
its decoded samples.
"""
from __future__ import annotations

import numpy as np

from .dsp import stretches
from .edf import Signal

RUN_SECONDS, MIN_RUN = 0.1, 8  # the shortest run: 0.1 s and 8 samples
BRIDGE_SECONDS = 0.02  # how far the coded signal goes on in the slope it had where runs end the block
MAX_RUNS = 255  # the run count's u8
NO_RUNS = np.zeros((0, 3), np.int64)


def constant_runs(digital: np.ndarray, signal: Signal) -> np.ndarray:
    """The block's stretches of one digital value (within the signal's digital range) of at least RUN_SECONDS
    and MIN_RUN samples, in order: rows (start, length, value), the first MAX_RUNS of them."""
    n = len(digital)
    starts = np.concatenate(([0], np.flatnonzero(digital[1:] != digital[:-1]) + 1)) if n else np.zeros(0, np.int64)
    lengths = np.diff(np.append(starts, n))
    values = digital[starts]
    keep = np.flatnonzero((lengths >= max(MIN_RUN, round(RUN_SECONDS * signal.sample_rate)))
                          & (values >= signal.digital_min) & (values <= signal.digital_max))[:MAX_RUNS]
    return np.column_stack([starts[keep], lengths[keep], values[keep]]).astype(np.int64).reshape(-1, 3)


def bridged(digital: np.ndarray, runs: np.ndarray, rate: float) -> np.ndarray:
    """The block's samples with each stretch of runs replaced by a smooth bridge from the samples around it
    (_bridge): what a coder codes, since the decoder writes the runs back exactly. Without the runs' steps, the
    coder spends nothing on them and the envelope does not count their broadband power."""
    x = np.asarray(digital, np.float64).copy()
    inside = in_runs(runs, len(x))
    if not inside.any() or inside.all():
        return x
    for a, b in zip(*stretches(inside)):  # each stretch [a, b) of runs side by side
        x[a:b] = _bridge(x, a, b, rate)
    return x


def in_runs(runs: np.ndarray, n: int) -> np.ndarray:
    """Whether each of the block's n samples lies in one of its constant runs."""
    inside = np.zeros(n, bool)
    for start, length, _ in runs:
        inside[start:start + length] = True
    return inside


def tones_outside(digital: np.ndarray, runs: np.ndarray, rate: float, fit) -> tuple:
    """A block's stationary tones fitted around its runs (spec 8.4, 8.5; 6.6, 6.7): fit(samples with the runs
    bridged, where they are known) gives (tones, their samples in digital units or None); returns (tones, their
    samples, the block's samples with the tones taken out and the runs bridged again from what they leave)."""
    smooth = bridged(digital, runs, rate)
    found, samples = fit(smooth, ~in_runs(runs, len(smooth)))
    return found, samples, smooth if samples is None else bridged(digital - samples, runs, rate)


def as_gaps(runs: np.ndarray) -> np.ndarray:
    """Runs (start, length, value) as streams code them: rows (gap from the previous run's end, from the
    block's start for the first; length less 1; value)."""
    runs = np.asarray(runs, np.int64).reshape(-1, 3)
    ends = runs[:, 0] + runs[:, 1]
    return np.column_stack([runs[:, 0] - np.concatenate(([0], ends[:-1])), runs[:, 1] - 1, runs[:, 2]])


def from_gaps(gaps: np.ndarray, lengths_less_1: np.ndarray, values: np.ndarray) -> np.ndarray:
    """as_gaps undone: rows (start, length, value)."""
    lengths = lengths_less_1 + 1
    starts = np.cumsum(gaps + np.concatenate(([0], lengths[:-1]))) if len(gaps) else gaps
    return np.column_stack([starts, lengths, values]).reshape(-1, 3)


def written(digital: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Decoded digital samples with each run's samples set to its value."""
    for start, length, value in runs:
        digital[start:start + length] = value
    return digital


def checked(runs: np.ndarray, n: int, signal: Signal) -> bool:
    """Whether runs (start, length, value) lie in order inside a block of n samples and the digital range."""
    if not len(runs):
        return True
    starts, lengths, values = runs.T
    ends = starts + lengths
    return bool(np.all(lengths >= 1) and starts[0] >= 0 and np.all(starts[1:] >= ends[:-1]) and ends[-1] <= n
                and np.all(values >= signal.digital_min) and np.all(values <= signal.digital_max))


def _bridge(x: np.ndarray, a: int, b: int, rate: float) -> np.ndarray:
    """Samples for [a, b) that continue x's value and slope from both sides (a cubic Hermite curve), or from
    the one side there is, the slope fading out over BRIDGE_SECONDS: a bend there would add broadband power
    of its own, which the envelope would count."""
    def slope(i, j):
        return x[i] - x[j] if 0 <= j < len(x) and 0 <= i < len(x) else 0.0
    t = np.arange(1, b - a + 1, dtype=np.float64)
    if a > 0 and b < len(x):
        u, span = t / (b - a + 1), float(b - a + 1)
        d0, d1 = slope(a - 1, a - 2) * span, slope(b + 1, b) * span
        return ((2 * u ** 3 - 3 * u ** 2 + 1) * x[a - 1] + (u ** 3 - 2 * u ** 2 + u) * d0
                + (-2 * u ** 3 + 3 * u ** 2) * x[b] + (u ** 3 - u ** 2) * d1)
    tau = BRIDGE_SECONDS * rate
    if a > 0:  # the block ends in runs
        return x[a - 1] + slope(a - 1, a - 2) * tau * (1.0 - np.exp(-t / tau))
    return (x[b] - slope(b + 1, b) * tau * (1.0 - np.exp(-t / tau)))[::-1]  # the block starts with runs
