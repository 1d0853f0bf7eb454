"""Constant runs (spec 8.4, 6.7): stretches of one digital value that a lossy stream stores exactly.

A stretch that holds one value (an electrode off, an amplifier at its rail, the padding an EDF writer puts
after a recording's last sample) is what a reader must see as flat. Coded, its step rang over the coder's
window and its broadband power went into the band envelope's noise. So the writer finds the runs, stores
them, and replaces them by a smooth bridge in what it codes and measures; the reader writes them back over
its decoded samples.

The rail limiter (spec 8, format 11's transform streams; format 15's token streams, 6.1) is this module's other
half: a decoded excursion past an end of the digital range shorter than a run is pulled back smoothly before it is
clipped there, a longer one (a saturation, which the writer stored as a run) is only clipped.
"""
from __future__ import annotations

import math

import numpy as np

from .dsp import stretches
from .edf import Signal

RUN_SECONDS, MIN_RUN = 0.1, 8  # the shortest run: 0.1 s and 8 samples
BRIDGE_SECONDS = 0.02  # how far the coded signal goes on in the slope it had where runs end the block
MAX_RUNS = 255  # the run count's u8
NO_RUNS = np.zeros((0, 3), np.int64)
NO_EDGES = np.zeros((0, 2), np.int64)
# Format 18 (token streams): each run also stores the original's samples beside it, and the decoder brings its own
# samples there to them over EDGE_SECONDS. The step into a run (eegmat's padding: from the signal to 0) is broadband,
# and the decoded step, off by the codec's error at that sample, held the recording's largest high-gamma window:
# held-out eegmat at 6 codebooks, high gamma over the recording with and without its last 3 s, 0.092 and 0.050
EDGE_SECONDS = 0.02
# The rail limiter pulls a decoded excursion past a rail back by its peak, fading over LIMITER_SECONDS on each
# side, before clipping: the original reaches its rail at the top of a smooth swing, and the clipped overshoot's
# corners were broadband bursts. Held-out eegmat Subject14-17, transform streams at 251 bit/s (format 11): invented
# ripples 166 -> 123 (10 ms: 127, 50 ms: 123), high gamma over the recording 0.16 -> 0.15 in Subject17, PRDN
# unchanged; token streams at 6 codebooks (format 15): 1.31 -> 0.68 invented events a channel-minute, Subject17_2
# Pz's strongest invented line 2.24 -> 1.32x (the clicks at 81.75 Hz), PRDN unchanged
LIMITER_SECONDS = 0.02  # excursions up to RUN_SECONDS long: a longer one is a saturation, clipped as before


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


def edges(digital: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Format 18 (spec 6.7): per run, the original's sample just before it and just after it, less the run's
    value (0 where that side is the block's edge)."""
    n, out = len(digital), []
    for start, length, value in np.asarray(runs, np.int64).reshape(-1, 3).tolist():
        end = start + length
        out.append((int(digital[start - 1]) - value if start > 0 else 0, int(digital[end]) - value if end < n else 0))
    return np.array(out, np.int64).reshape(-1, 2)


def pinned(values: np.ndarray, runs: np.ndarray, run_edges: np.ndarray, rate: float) -> np.ndarray:
    """Format 18 (spec 6.7): decoded values (digital units, not yet rounded) with the sample beside each run, where
    it lies in the block and outside every run, brought to the stored original one, the change fading out over
    EDGE_SECONDS away from the run along a raised cosine."""
    if not len(runs):
        return values
    values = np.asarray(values, np.float64).copy()
    n, width = len(values), max(1, int(round(EDGE_SECONDS * rate)))
    inside = in_runs(runs, n)
    fade = 0.5 + 0.5 * np.cos(np.pi * np.arange(width) / width)
    for (start, length, value), (before, after) in zip(runs.tolist(), run_edges.tolist()):
        for at, target, step in ((start - 1, value + before, -1), (start + length, value + after, 1)):
            if 0 <= at < n and not inside[at]:
                where = at + step * np.arange(width)
                keep = (where >= 0) & (where < n)
                values[where[keep]] += (target - values[at]) * fade[keep]
    return values


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


def requantized(values: np.ndarray, signal: Signal, runs: np.ndarray, limit: bool,
                run_edges: np.ndarray = NO_EDGES) -> np.ndarray:
    """A lossy stream's decoded values in digital units as the samples it stores (the last step of spec 6.1 and
    8): the samples beside its runs pinned to `run_edges` (token streams from format 18, transform streams from 19),
    through the rail limiter where `limit`, rounded half to even and clipped to the digital range, then each constant
    run's samples set to its value."""
    if len(run_edges):
        values = pinned(values, runs, run_edges, signal.sample_rate)
    return written(signal.requantized(rail_limited(values, signal) if limit else values), runs)


def rail_limited(values: np.ndarray, signal: Signal) -> np.ndarray:
    """Decoded values in digital units, not yet rounded, with each excursion past the signal's digital range of
    at most RUN_SECONDS pulled back smoothly (spec 8's rail limiter); unchanged where none passes it."""
    if not (values.max(initial=signal.digital_min) > signal.digital_max
            or values.min(initial=signal.digital_max) < signal.digital_min):
        return values
    rate = signal.sample_rate
    return _limited(values, signal.digital_min, signal.digital_max, int(round(LIMITER_SECONDS * rate)),
                    int(round(RUN_SECONDS * rate)))


def _limited(x: np.ndarray, low: float, high: float, margin: int, longest: int) -> np.ndarray:
    """x with each excursion past a rail of at most `longest` samples pulled back smoothly (spec 8): by its peak
    excess over the excursion, falling to 0 over `margin` samples on each side as a raised cosine. Excursions
    and peaks are x's own; a longer one (a saturation) is left to the clipping."""
    out = x.copy()
    t = np.arange(len(x))
    for side, rail in ((1.0, high), (-1.0, low)):
        for a, b in zip(*stretches(side * (x - rail) > 0)):
            peak = float(np.max(side * (x[a:b] - rail)))
            if b - a > longest or not math.isfinite(peak):
                continue
            lo, hi = max(0, a - margin), min(len(x), b + margin)
            out[lo:hi] -= side * peak * _flat_top(t[lo:hi], a, b, margin)
    return out


def _flat_top(t: np.ndarray, a: int, b: int, margin: int) -> np.ndarray:
    """1 over [a, b), falling to 0 over `margin` samples on each side as a raised cosine (spec 8)."""
    out = np.ones(len(t))
    if margin > 0:
        before, after = t < a, t >= b
        out[before] = 0.5 * (1 - np.cos(np.pi * (t[before] - a + margin) / margin))
        out[after] = 0.5 * (1 - np.cos(np.pi * (b - 1 + margin - t[after]) / margin))
    return out
