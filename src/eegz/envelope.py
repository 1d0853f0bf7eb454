"""Band envelope of a neural block (spec 6.4): what the decoder cannot rebuild, carried as energy.

The codec smooths fast activity away and invents a little of its own. The encoder stores, per block and
channel, the power of the normalized input in a few bands above beta (one byte each, 0.5 dB steps); the
decoder scales each band of its output down to that power, or fills the missing power with noise of
random phase, as audio codecs do (noise filling). The noise comes from a specified integer generator
(SplitMix64), so that every decoder adds the same noise.

Format 5 measures and applies the envelope at the channel's own rate, after the decoder's output is
resampled to it, with bands up to the channel's Nyquist frequency: so it also carries what lies above the
codec's Nyquist frequency (128-250 Hz of a 500-Hz channel) and what the resampling filters attenuate
just below the channel's. Format 4 did it at the codec rate, with the first ten bands.
"""
from __future__ import annotations

import numpy as np

BANDS_HZ = ((30.0, 34.0), (34.0, 38.0), (38.0, 43.0), (43.0, 49.75), (49.75, 50.25), (50.25, 56.0),
            (56.0, 59.75), (59.75, 60.25), (60.25, 64.0), (64.0, 74.0), (74.0, 86.0), (86.0, 100.0), (100.0, 128.0),
            (128.0, 160.0), (160.0, 200.0), (200.0, 256.0), (256.0, 320.0), (320.0, 400.0), (400.0, 512.0))
# narrow, because EEG's spectrum falls steeply; 49.75-50.25 and 59.75-60.25 Hz hold the mains lines of most
# recordings, which a wider band's flat noise would smear into a hump (an invented line beside the real one)
BANDS_V4 = ((30.0, 34.0), (34.0, 38.0), (38.0, 43.0), (43.0, 49.0), (49.0, 56.0), (56.0, 64.0), (64.0, 74.0),
            (74.0, 86.0), (86.0, 100.0), (100.0, 128.0))  # format 4 (read only): ten bands at the codec rate
LEVEL_OFFSET = 255  # level = round(20 log10 P) + 255 (0.5 dB steps); 0: no correction for the band
SUB_BAND_HZ = 1.0  # format 5 brings each 1-Hz part of a band to its share of the band's power
SKIRT_HZ = 4.0  # format 6: the first 1-Hz part's noise filling continues below 30 Hz, fading out over 26-30 Hz
EDGE_SECONDS = 0.25  # the fade of the change at each end of the block (one frame at 256 Hz, hop 64)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def channel_bands(channel_rate: float) -> tuple:
    """Format 5: the bands a channel of this rate stores (those that start below its Nyquist frequency)."""
    return tuple((lo, hi) for lo, hi in BANDS_HZ if lo < channel_rate / 2)


def _band_bins(f: np.ndarray, rate: float, limit: float, bands: tuple) -> list[np.ndarray]:
    """Each band's rfft bins (`f`: the bins' frequencies), below `limit` (the channel's own Nyquist
    frequency: what lies above it is gone once the output is at the channel's rate)."""
    top = min(rate / 2, limit)
    return [np.flatnonzero((f >= lo) & (f < min(hi, top)) & (f > 0)) for lo, hi in bands]


def _power(spectrum: np.ndarray, n: int) -> float:
    """Mean power per sample that rfft bins (neither DC nor Nyquist) contribute to a signal of n samples."""
    return float(2.0 * np.sum(np.abs(spectrum) ** 2) / (n * n))


def _windowed(x: np.ndarray, rate: float, tapered: bool) -> np.ndarray:
    """The spectrum of x under a window that goes to 0 at both ends, scaled to keep power: without one, the
    jump between a block's last and first sample leaks into the high bands more power than quiet EEG holds.
    Format 5 (`tapered`): 1 but for a raised cosine over EDGE_SECONDS at each end, so that a burst near a
    block's edge counts in full; format 4: a periodic Hann window (which all but ignores a block's ends)."""
    n = len(x)
    w = _edge_taper(n, _edge(n, rate)) if tapered else np.sin(np.pi * np.arange(n) / n) ** 2
    return np.fft.rfft(np.asarray(x, np.float64) * w) / np.sqrt(np.mean(w * w))


def _edge(n: int, rate: float) -> int:
    """The length of the fades (and of format 5's window edges) in samples."""
    return min(int(round(EDGE_SECONDS * rate)), n // 2)


def levels(x: np.ndarray, rate: float, limit: float, bands: tuple, version: int = 5) -> bytes:
    """One byte per band: the band's power in x (the block's own normalized samples at `rate`) below
    `limit` Hz."""
    spectrum = _windowed(x, rate, version >= 5)
    out = []
    for bins in _band_bins(np.fft.rfftfreq(len(x), 1.0 / rate), rate, limit, bands):
        p = _power(spectrum[bins], len(x)) if len(bins) else 0.0
        out.append(0 if p <= 0 else int(np.clip(np.rint(20.0 * np.log10(p)) + LEVEL_OFFSET, 1, 255)))
    return bytes(out)


def splitmix64(seed: int, count: int) -> np.ndarray:
    """The first `count` outputs of SplitMix64 started at `seed` (state += golden ratio, then the mix)."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + _GOLDEN * np.arange(1, count + 1, dtype=np.uint64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def apply(y: np.ndarray, stored: bytes, rate: float, limit: float, seed: int, bands: tuple, rounding: float = 0.0,
          version: int = 5) -> np.ndarray:
    """y (the block's own decoded normalized samples at `rate`) with each band brought to its stored power:
    scaled down where it holds more, topped up with random-phase noise where it holds less. `rounding` is
    the power of the white noise that re-quantizing to the file's digital steps adds later (step² / 12, in
    normalized units, spread over 0 .. limit): each band's target leaves room for its share of it.
    Format 5 follows the stored spectrum inside a band: the bands' power densities, interpolated in log
    between their centres, share each band's target among its 1-Hz parts, and each part is scaled or
    filled (with noise of that shape) on its own. Format 4 treated a band as one: flat noise on a steep
    slope (EEG recorded through a 40 Hz low-pass), or a whole band scaled down for a bump in one corner,
    left a step at the band's edge that the line measure reads as an invented line. Format 6 continues the
    first 1-Hz part's noise filling below the first band, fading out over SKIRT_HZ: where the decoder's beta
    falls short, filling that began abruptly at 30 Hz left a step there that the line measure read as the
    strongest line at 3 codebooks. A first part scaled down is left to end at 30 Hz: what the decoder made
    too strong there is mostly a line of its own (Bonn set D: its copy of 1-Hz delta at 31 Hz), and taking
    its neighbours below 30 Hz down with it would only make it stand out more."""
    n = len(y)
    if n < 2 or not any(stored):
        return y
    y = np.asarray(y, np.float64)
    # the block is modified in the FFT's periodic world: without its end-to-start jump (a straight line from
    # the first sample to the last, put back afterwards), whose leakage would swamp the quiet high bands
    ramp = y[0] + (y[-1] - y[0]) * np.arange(n) / (n - 1)
    spectrum, measured = np.fft.rfft(y - ramp), _windowed(y, rate, version >= 5)
    f = np.fft.rfftfreq(n, 1.0 / rate)
    bins_of = _band_bins(f, rate, limit, bands)
    counted = sum(len(b) for b in bins_of)
    skirt = np.flatnonzero((f >= bands[0][0] - SKIRT_HZ) & (f < bands[0][0]) & (f > 0)) if version >= 6 else []
    phases = _angles(splitmix64(seed, counted + len(skirt)))
    targets = _targets(stored, bands, bins_of, rate, limit, rounding)
    shape = _spectral_shape(targets, bands, rate, limit, f) if version >= 5 else np.ones(len(f))
    used, skirt_density = 0, None
    for bins, level, target, (lo, _) in zip(bins_of, stored, targets, bands):
        if len(bins) and level:
            parts = _sub_bands(bins, f, lo) if version >= 5 else [bins]
            total = shape[bins].sum()
            for part in parts:  # each part gets the band's target in proportion to the shape over it
                have = _power(measured[part], n)
                want = target * shape[part].sum() / total
                filled = 0.0  # the noise density (per unit of shape) added to the part
                if have > want:
                    spectrum[part] *= np.sqrt(want / have) if have > 0 else 0.0
                else:
                    k0 = used + int(np.searchsorted(bins, part[0]))
                    amplitude = n * np.sqrt((want - have) * shape[part] / shape[part].sum() / 2.0)
                    spectrum[part] += amplitude * np.exp(1j * phases[k0:k0 + len(part)])
                    filled = (want - have) / shape[part].sum()
                if skirt_density is None and lo == bands[0][0]:
                    # a first part brought down is mostly a line the decoder made: nothing to continue
                    skirt_density = filled
        used += len(bins)
    if len(skirt) and skirt_density:  # format 6: the first part's noise filling continues below 30 Hz, fading out
        weight = 0.5 + 0.5 * np.cos(np.pi * (bands[0][0] - f[skirt]) / SKIRT_HZ)
        spectrum[skirt] += weight * n * np.sqrt(skirt_density * shape[skirt] / 2.0) * np.exp(1j * phases[counted:])
    # the change fades in and out over one frame at each end of the block: an FFT over the block treats
    # it as periodic, and a change that stops abruptly at the block's edge would add a broadband click
    change = np.fft.irfft(spectrum, n) + ramp - y
    return y + change * _edge_taper(n, _edge(n, rate))


def _angles(outputs: np.ndarray) -> np.ndarray:
    """Phases 2π (z >> 11) / 2^53 from SplitMix64 outputs z."""
    return 2.0 * np.pi * (outputs >> np.uint64(11)).astype(np.float64) / 2.0 ** 53


def _targets(stored: bytes, bands: tuple, bins_of: list, rate: float, limit: float, rounding: float) -> list[float]:
    """Each band's target power: its stored power less its share of the rounding noise (0 for level 0)."""
    out = []
    for bins, level, (lo, hi) in zip(bins_of, stored, bands):
        share = (min(hi, limit, rate / 2) - lo) / limit  # the rounding noise spreads up to the channel's Nyquist
        out.append(max(10.0 ** ((level - LEVEL_OFFSET) / 20.0) - rounding * share, 0.0) if level and len(bins) else 0.0)
    return out


def _sub_bands(bins: np.ndarray, f: np.ndarray, lo: float) -> list[np.ndarray]:
    """A band's bins in runs of SUB_BAND_HZ from its lower edge."""
    index = np.floor((f[bins] - lo) / SUB_BAND_HZ).astype(np.int64)
    return [bins[index == j] for j in np.unique(index)]


def _spectral_shape(targets: list[float], bands: tuple, rate: float, limit: float, f: np.ndarray) -> np.ndarray:
    """Per rfft bin, the power density that the bands' targets describe: log density interpolated linearly
    between the centres of the bands with a positive target, constant beyond the first and last."""
    top = min(rate / 2, limit)
    centres, logs = [], []
    for target, (lo, hi) in zip(targets, bands):
        width = min(hi, top) - lo
        if target > 0 and width >= SUB_BAND_HZ:  # not the mains bands: a line is no density to spread
            centres.append(lo + width / 2)
            logs.append(np.log(target / width))
    if not centres:
        return np.ones(len(f))
    return np.exp(np.interp(f, centres, logs))


def _edge_taper(n: int, ramp: int) -> np.ndarray:
    """1 inside, a raised cosine over `ramp` samples at each end (0 at the first and last sample)."""
    taper = np.ones(n)
    if ramp > 0:
        rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        taper[:ramp], taper[n - ramp:] = rise, rise[::-1]
    return taper
