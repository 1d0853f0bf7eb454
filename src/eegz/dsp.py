"""Signal helpers shared by the codec and training: units, resampling, robust scaling."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

# Factor from a channel's physical dimension to microvolts; None for non-voltage units.
_VOLT_FACTORS = {"uv": 1.0, "µv": 1.0, "μv": 1.0, "mv": 1e3, "v": 1e6, "nv": 1e-3}


def part_edges(n: int, count: int) -> list[int]:
    """n samples cut into `count` parts: part k holds [floor(k n / count), floor((k + 1) n / count)), as the exact
    layer's LPC frames, the transform codec's windows and the envelope's time profile (spec 8, 8.3) cut them."""
    return [k * n // count for k in range(count + 1)]


def straight_line(y: np.ndarray) -> np.ndarray:
    """The straight line from a signal's first sample to its last: taken out before an FFT over it, whose jump
    from the last sample to the first would otherwise leak into the quiet high bands (spec 6.4's ramp)."""
    return y[0] + (y[-1] - y[0]) * np.arange(len(y)) / max(len(y) - 1, 1)


def stretches(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the maximal stretches [start, end) where mask holds."""
    edges = np.diff(np.concatenate(([0], np.asarray(mask, np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def microvolt_factor(physical_dimension: str) -> float | None:
    return _VOLT_FACTORS.get(physical_dimension.strip().lower())


@lru_cache(maxsize=64)
def rate_ratio(from_rate: float, to_rate: float) -> tuple[int, int]:
    """(up, down) with up/down == to_rate/from_rate, exact for the rates EDF headers produce."""
    from fractions import Fraction  # imports decimal: kept off the start-up path of the exact modes
    ratio = Fraction(to_rate).limit_denominator(1_000_000) / Fraction(from_rate).limit_denominator(1_000_000)
    ratio = ratio.limit_denominator(4096)
    return ratio.numerator, ratio.denominator


def resample(x: np.ndarray, from_rate: float, to_rate: float, padtype: str = "constant") -> np.ndarray:
    """Polyphase resampling along the last axis; the identity when the rates are equal. `padtype`: what the
    filter assumes beyond the ends (scipy's: "constant" is zeros, "line" the straight line through the first
    and last samples)."""
    up, down = rate_ratio(from_rate, to_rate)
    if up == down:
        return np.asarray(x, dtype=np.float64)
    from scipy.signal import resample_poly
    return resample_poly(np.asarray(x, dtype=np.float64), up, down, axis=-1, window=_polyphase_filter(up, down),
                         padtype=padtype)


@lru_cache(maxsize=16)
def _polyphase_filter(up: int, down: int) -> np.ndarray:
    """resample_poly's own low-pass filter for up/down (a Kaiser-windowed sinc, beta 5, cut at 1 / max(up, down) of
    Nyquist, 10 max(up, down) taps each side), designed once: resample_poly would design it again on every call,
    6 % of a lossy decode. The samples are the same (resample_poly copies it before scaling it by up)."""
    from scipy.signal import firwin
    most = max(up, down)
    taps = firwin(2 * 10 * most + 1, 1.0 / most, window=("kaiser", 5.0))
    taps.setflags(write=False)
    return taps


def alignment_period(channel_rate: float, codec_rate: float) -> int:
    """Smallest codec-rate sample count that is also a whole number of channel-rate samples."""
    return rate_ratio(codec_rate, channel_rate)[1]  # channel/codec = up/down: multiples of down align


def robust_std(x: np.ndarray) -> float:
    """Standard deviation estimated from the median absolute deviation (one artifact cannot inflate it)."""
    if x.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(x - np.median(x))))
