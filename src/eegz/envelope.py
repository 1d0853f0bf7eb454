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

from functools import lru_cache

import numpy as np

from .dsp import part_edges, straight_line

BANDS_HZ = ((30.0, 34.0), (34.0, 38.0), (38.0, 43.0), (43.0, 49.75), (49.75, 50.25), (50.25, 56.0),
            (56.0, 59.75), (59.75, 60.25), (60.25, 64.0), (64.0, 74.0), (74.0, 86.0), (86.0, 100.0), (100.0, 128.0),
            (128.0, 160.0), (160.0, 200.0), (200.0, 256.0), (256.0, 320.0), (320.0, 400.0), (400.0, 512.0))
# narrow, because EEG's spectrum falls steeply; 49.75-50.25 and 59.75-60.25 Hz hold the mains lines of most
# recordings, which a wider band's flat noise would smear into a hump (an invented line beside the real one)
# format 8 (transform streams): 2-Hz bands from 43 to 64 Hz, so that the noise follows a notch filter's gap
# around 50 or 60 Hz (eegmat's 47.5-52 Hz lies 60x below its neighbours: a 6-Hz band's shape filled it to 30-160x
# its power) and a bump beside it (one band spread its power towards 50 Hz and the next read as a line)
BANDS_V8 = BANDS_HZ[:3] + ((43.0, 46.0), (46.0, 48.0), (48.0, 49.75), (49.75, 50.25), (50.25, 52.0), (52.0, 54.0),
                           (54.0, 56.0), (56.0, 58.0), (58.0, 59.75), (59.75, 60.25), (60.25, 62.0), (62.0, 64.0)) \
    + BANDS_HZ[9:]
# format 18 (token streams): 8.2's bands with two changes. [64, 74) split at 70 Hz, where the gamma and high-gamma
# bands meet and where a clinical recorder's high-frequency filter usually sits: through such a filter the power
# falls about 100x over 66-74 Hz (held-out eegmat), and the shape interpolated between the centres of [64, 74) and
# [74, 86) gave 70-74 Hz 1.7-2.6x the original's power (high gamma over the recording up to 2x). And 1-Hz bands from
# 52 to 58 Hz: beside a 50-Hz notch the original holds a shoulder peak and a dip, the decoder a bump of its own at
# 55 Hz, and the shape of [54, 56) peaked at its centre. Held-out eegmat's 160 channels at 6 codebooks, three noise
# draws: channels whose strongest invented line stands above 1.5x 28 / 30 / 32 -> 20 / 24 / 24 (1-Hz bands over
# 50-60 Hz: 23, over 43-64 Hz: 25, draw 0)
BANDS_V18 = (BANDS_V8[:8] + tuple((float(f), f + 1.0) for f in range(52, 58)) + BANDS_V8[11:15]
             + ((64.0, 70.0), (70.0, 74.0)) + BANDS_V8[16:])  # BANDS_V8[8:11]: 52-58 Hz; BANDS_V8[15]: [64, 74)
BANDS_V4 = ((30.0, 34.0), (34.0, 38.0), (38.0, 43.0), (43.0, 49.0), (49.0, 56.0), (56.0, 64.0), (64.0, 74.0),
            (74.0, 86.0), (86.0, 100.0), (100.0, 128.0))  # format 4 (read only): ten bands at the codec rate
LEVEL_OFFSET = 255  # level = round(20 log10 P) + 255 (0.5 dB steps); 0: no correction for the band
SUB_BAND_HZ = 1.0  # format 5 brings each 1-Hz part of a band to its share of the band's power
# format 13 (token streams, with 8.2's bands): parts of 0.5 Hz. What the decoder makes of its own inside a part
# (a hump beside 50 Hz that it learned from mains) survives the part's scaling; halving the parts took the
# strongest line of Bonn set E at 6 codebooks from 1.63x to 1.48x and held-out eegmat's worst channel from 2.51x
# to 2.42x (0.25-Hz parts: no better then, with format 13's other rules)
FINE_PART_HZ = 0.5
# format 17 (token streams): parts of 0.25 Hz, in the envelope and in the time profile's rescaling (6.8). What the
# decoder makes of its own inside a 0.5-Hz part (a bump at 55 Hz that it learned from its eegmat training data's
# notch filter, one at 44.5 Hz) kept its shape there, and the line measure's 0.25-Hz bins read it. Held-out eegmat
# Subject14-17 (160 channels, two noise draws), format 16 against 17 at 3 / 6 / 9 codebooks: channels whose strongest
# line stands above 1.5x 49.5 / 44.5 / 44.5 -> 38.5 / 35.5 / 34.0, the worst 1.97 / 2.04 / 2.17 -> 1.93 / 1.92 /
# 2.03x, PRDN +0.01-0.10 points (benchmarks/results/channel_lines_16_17.md); Bonn 051-070 at 6 codebooks over four
# draws: set D's line 1.47 (at most 1.57) -> 1.38 (1.48)x. Parts of 0.125 Hz (two bins of a 16-s block): 35 channels
# above 1.5x at 6 codebooks (one draw), PRDN +0.2
QUARTER_PART_HZ = 0.25
# format 13 (token streams) also drops what the decoder puts in the two mains bands: it is its own (a hump at
# 49.6-50.3 Hz that it learned from mains; on Bonn set E 5-13x the original's power there), and the band's stored
# power comes back as noise. Bonn at 6 codebooks, over 4 noise draws: set E's strongest line 1.59x -> 1.42x,
# texture agreement 95.7 -> 96.1 %
# format 14 (token streams): noise of random phase added to what the decoder left in a part gives the part
# that power plus a cross term, which moved a filled part's power by ±40 % in a block; the line measure, on a
# minute of EEG (four blocks), read those bumps as lines. Each filled part is scaled to lose the cross term:
# held-out eegmat Subject14-17 at 6 codebooks (with format 14's runs and line padding), channels whose strongest
# line is above 1.5x: 58 -> 40 of 168, the worst 1.98 -> 1.88x, median 1.44 -> 1.40x (means over four noise draws)
SKIRT_HZ = 4.0  # format 6: the first 1-Hz part's noise filling continues below 30 Hz, fading out over 26-30 Hz
# format 22 (token streams): the skirt fills each 0.25-Hz part only up to a floor, the first band's density faded out
# over the same 4 Hz (_skirt_floor). Format 6's continued filling was added to what the decoder held there: where its
# beta was whole, a line. Frame-start model, Bonn set D over four draws, 3 / 6 codebooks: 1.50 / 1.58x -> 1.41 / 1.41x;
# default model, held-out eegmat's 160 channels above 1.5x at 3 / 6 / 9 codebooks: 34.5 / 24 / 19 -> 34.5 / 18.5 / 15.5
# format 8 (transform streams): a part holding a share r of its power gets noise for what it lacks times
# min(1, (1 - r) / (1 - FILL_RAMP)): noise added to a part that is mostly there adds its power to the error and
# little to the band, and a hard threshold (none above 70 %) left dips beside filled parts that read as lines
# (Bonn D at 337 bit/s: 1.65x at 36 Hz). Held-out eegmat at 250 bit/s, mean PRDN / worst gamma power error:
# full filling 11.8 % / 0.02, a ramp from 0.7 11.6 / 0.03, from 0.5 11.3 / 0.07, from 0.3 11.0 / 0.10
FILL_RAMP = 0.5
EDGE_SECONDS = 0.25  # the fade of the change at each end of the block (one frame at 256 Hz, hop 64)
# format 9 (transform streams): the block's fast part follows the original's in time. A muscle burst or an
# artifact holds a 16-s block's power above 30 Hz in a second or two, and a coded transient's error rings over
# its whole window; noise and scaling even over the block put that power into the quiet rest. The profile: the
# original's power from PROFILE_LOW_HZ up in each PROFILE_SECONDS of the block, relative to the block's, in
# PROFILE_DB steps within ±PROFILE_MAX (eegmat Subject14 / 17 at 251 bit/s: 30-70 Hz error on 0.5-s windows at
# the 90th percentile 0.43 -> 0.28 and 0.33 -> 0.22; 1-s parts 0.36 / 0.30; 3-dB steps 0.31 / 0.27; parts only
# brought down, never up, 0.35 / 0.28; from 40 Hz up 0.41 / 0.32 and lines up to 3.3x)
PROFILE_SECONDS = 0.5
PROFILE_DB = 1.5
PROFILE_MAX = 40
PROFILE_LOW_HZ = 30.0
PROFILE_CROSSOVER_HZ = 4.0
MAX_PROFILE_GAIN = 4.0  # a part brought up at most 12 dB: what the decoder holds there may be little but noise
# format 16 (token streams): the block's 30-70 Hz part follows the original's in time (spec 6.8). Gains above 1
# on the decoder's own content amplified its stationary lines (format 9's rules in token streams, stop 21: worst
# eegmat channels 2.9x), so a part is only ever scaled down; what a part lacks comes as fresh noise of the block's
# own 30-70 Hz spectrum, and each 0.5-Hz part of 26-74 Hz is then brought back to the block power the envelope
# gave it, so the block's spectrum stays the envelope's. Held-out eegmat Subject14-17 and Bonn 051-070 at 6
# codebooks: 30-70 Hz power error on 0.5-s windows at the 90th percentile 1.24 -> 0.90 and 0.71-1.96 (from
# 0.99-3.53); the same change not faded at the block's ends put a click at a quarter of the seams
GAMMA_PROFILE_HZ = (30.0, 70.0)
# format 18 (token streams): the slow-band ceiling (spec 6.9). Below 30 Hz the decoder rebuilds the waveform, and
# its error there is mostly added to it: a band comes back with the input's power plus the error's (held-out eegmat
# Subject17 at 6 codebooks: beta 14 % too strong). Each block stores its power in theta, alpha and beta, and the
# decoder takes a band that holds more down to it, which lowers the error too. Only down: raised, a band holding
# the decoder's smoothed version of the input gained error (eegmat at 3 codebooks, 0.5-s beta p90 0.72 -> 0.95)
SLOW_BANDS_HZ = ((4.0, 8.0), (8.0, 13.0), (13.0, 30.0))
CEILING_RAMP_HZ = 1.0  # the gain passes from one band's value to the next's (or to 1) over ± this at each edge
# format 20 (token streams): the envelope works on the block with its decoded context (spec 6.4, Context and seams).
# The block alone is not periodic, and the FFT's corner where its end meets its start leaks into every bin: a part's
# factor scaled that leakage too, and where a filled part sat between scaled ones the difference rang on as a narrow
# line near both ends (a model started as a frame quantizer on eegmat Subject17_2's P3: 5.45x at 149.5 Hz at 3
# codebooks, 1.67x at 44 Hz with the context). And the change fades out over EDGE_SECONDS at each end, so the quarter
# second before a seam kept the decoder's own output; where that holds far more than the original (the same model's
# white error above a recorder's 70-Hz filter, ~10^4x), each seam read 100-1500x the original's 70-250 Hz power and the
# recording's high gamma +172 % (+3 % with the seams' scaling). There each band's scaling above SEAM_LOW_HZ, smooth
# across bands, is also applied: both sides of a seam scale the same decoded samples, so no step is cut there
SEAM_LOW_HZ = 64.0
SEAM_RAMP_HZ = 2.0  # the weight rises from 0 to 1 over SEAM_LOW_HZ ± this
SEAM_SECONDS = 0.5  # how much of the decoded context on each side takes part
# format 21 (token streams): the band from HIGH_PROFILE_LOW_HZ up follows the original's in time too (spec 6.8, High
# band). What a decoder makes there is spread over the block where the original holds it in bursts, and a model whose
# error is white (a frame quantizer's) puts it in bursts of its own where the signal is large: held-out eegmat
# Subject15_2 / 16_2 at 6 codebooks, high gamma's 0.5-s power error at the 90th percentile 4.07 / 4.43 -> 3.33 / 3.48
# (frame-start model) and 2.05 / 3.61 -> 1.95 / 2.69 (default), invented 80-250 Hz events 2.67 / 2.76 -> 2.12 / 1.61 a
# channel-minute (frame start; default 0.74 / 0.18 -> 0.92 / 0.18), strongest lines unchanged (all 160 held-out
# channels, default: p90 3.09-3.11 -> 2.59-2.63 at 3 / 6 / 9 codebooks, 2.98-3.00 -> 2.76-2.78 on windows across
# two parts). Parts are only scaled down, with no noise for what a part lacks: noise bursts 0.5 s long where the
# original had a short event crossed a ripple detector's threshold elsewhere than the event (the default's invented
# events 0.74 / 0.18 -> 1.89 / 0.55)
HIGH_PROFILE_LOW_HZ = 70.0
HIGH_PROFILE_EXTENSION_SECONDS = 0.5  # the block's odd extension at each end, over which the band is found
# Format 23 (spec 6.8, Burst cap): within each high-band profile part, what stands above HIGH_BURST_CREST x the part's
# RMS on the band's HIGH_BURST_SECONDS moving-average power is scaled down to it before the rescaling. The rescaling
# brings each 0.25-Hz part back to its power, and what the profile took from a loud part the decoder's short bursts
# got back: on held-out eegmat the frame-start model invented 1.27 / 1.05 / 1.52 ripple-band events a channel-minute at
# 3 / 6 / 9 codebooks (default model 0.67 / 0.59 / 0.60)
HIGH_BURST_CREST = 1.4
HIGH_BURST_SECONDS = 0.05
# Format 24 (spec 6.8, Rounds): the high band's shaping and rescaling run HIGH_PROFILE_ROUNDS times, each on the last
# one's result. The rescaling's factors, one per 0.25-Hz part of a noise-like band, vary from part to part as a
# periodogram does and spread each part's change over seconds: after one round the parts of held-out eegmat's blocks
# stood at their share within a factor 2.3 (90th percentile, frame-start model), after three within 1.6
HIGH_PROFILE_ROUNDS = 3
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def channel_bands(channel_rate: float, version: int = 5) -> tuple:
    """Format 5: the bands a channel of this rate stores (those that start below its Nyquist frequency); 8.2's
    from `version` 8, format 18's from 18."""
    table = BANDS_V18 if version >= 18 else BANDS_V8 if version >= 8 else BANDS_HZ
    return tuple((lo, hi) for lo, hi in table if lo < channel_rate / 2)


@lru_cache(maxsize=32)
def _band_bins(n: int, rate: float, limit: float, bands: tuple) -> tuple[range, ...]:
    """Each band's rfft bins of an n-sample block, below `limit` (the channel's own Nyquist frequency: what
    lies above it is gone once the output is at the channel's rate). Runs of bins, found once per block
    length: every block of a recording but its last has the same."""
    f = np.fft.rfftfreq(n, 1.0 / rate)
    top = min(rate / 2, limit)
    out = []
    for lo, hi in bands:
        bins = np.flatnonzero((f >= lo) & (f < min(hi, top)) & (f > 0))
        out.append(range(int(bins[0]), int(bins[-1]) + 1) if len(bins) else range(0))
    return tuple(out)


def _windowed(x: np.ndarray, rate: float, tapered: bool) -> np.ndarray:
    """The spectrum of x under a window that goes to 0 at both ends, scaled to keep power: without one, the
    jump between a block's last and first sample leaks into the high bands more power than quiet EEG holds.
    Format 5 (`tapered`): 1 but for a raised cosine over EDGE_SECONDS at each end, so that a burst near a
    block's edge counts in full; format 4: a periodic Hann window (which all but ignores a block's ends)."""
    w, norm = _window(len(x), rate, tapered)
    return np.fft.rfft(np.asarray(x, np.float64) * w) / norm


def _tapered_and_plain(y: np.ndarray, ramp: np.ndarray, rate: float, tapered: bool = True) -> tuple:
    """(_windowed(y), the rfft of y less its straight line `ramp`), transformed together: numpy transforms the rows
    of one length in one call, two for about 60 % of the time that two calls take."""
    w, norm = _window(len(y), rate, tapered)
    both = np.fft.rfft(np.stack([y * w, y - ramp]))
    return both[0] / norm, both[1]


@lru_cache(maxsize=16)
def _window(n: int, rate: float, tapered: bool) -> tuple[np.ndarray, float]:
    """_windowed's window of n samples and its RMS (found once: every block but a recording's last has the same)."""
    w = _edge_taper(n, _edge(n, rate)) if tapered else np.sin(np.pi * np.arange(n) / n) ** 2
    return w, float(np.sqrt(np.mean(w * w)))


def _edge(n: int, rate: float) -> int:
    """The length of the fades (and of format 5's window edges) in samples."""
    return min(int(round(EDGE_SECONDS * rate)), n // 2)


def power_spectrum(x: np.ndarray, rate: float) -> np.ndarray:
    """|_windowed(x)|² under format 5's taper: what levels reads, for a caller that reads two sets of bands."""
    return np.abs(_windowed(x, rate, True)) ** 2


def levels(x: np.ndarray, rate: float, limit: float, bands: tuple, version: int = 5,
           squared: np.ndarray | None = None) -> bytes:
    """One byte per band: the band's power in x (the block's own normalized samples at `rate`) below
    `limit` Hz (`squared`: power_spectrum(x) where the caller has it already; format 5 and later)."""
    n = len(x)
    if squared is None:
        squared = np.abs(_windowed(x, rate, version >= 5)) ** 2
    out = []
    for bins in _band_bins(n, rate, limit, bands):
        p = _band_power(squared, bins, n)
        out.append(0 if p <= 0 else min(max(int(np.rint(20.0 * np.log10(p))) + LEVEL_OFFSET, 1), 255))
    return bytes(out)


def _band_power(squared: np.ndarray, bins: range, n: int) -> float:
    """The mean power per sample that a band's bins (neither DC nor Nyquist) of |spectrum|² give a signal of n
    samples (0 for a band without bins)."""
    return float(2.0 * np.sum(squared[bins.start:bins.stop]) / (n * n)) if len(bins) else 0.0


def _level_power(level: int) -> float:
    """The power a stored level stands for (0.5-dB steps from LEVEL_OFFSET)."""
    return 10.0 ** ((level - LEVEL_OFFSET) / 20.0)


def ceiling(x: np.ndarray, rate: float, squared: np.ndarray | None = None) -> bytes:
    """Format 18 (spec 6.9): x's power in theta, alpha and beta (SLOW_BANDS_HZ), one byte each as the envelope's
    levels (`squared`: as levels')."""
    return levels(x, rate, rate / 2, SLOW_BANDS_HZ, squared=squared)


def under_ceiling(y: np.ndarray, stored: bytes, rate: float) -> np.ndarray:
    """Format 18 (spec 6.9): y (a block's decoded normalized samples at `rate`) with each slow band that holds more
    than its stored power brought down to it: one gain per band, linear over CEILING_RAMP_HZ either side of each
    band edge (from and to 1 outside the bands), the change faded in and out at the block's ends as the envelope's."""
    n = len(y)
    if n < 2 or not any(stored):
        return y
    y = np.asarray(y, np.float64)
    ramp = straight_line(y)
    windowed, spectrum = _tapered_and_plain(y, ramp, rate)  # the second is used only where a band is too strong
    squared = np.abs(windowed) ** 2
    gains = []
    for bins, level in zip(_band_bins(n, rate, rate / 2, SLOW_BANDS_HZ), stored):
        have = _band_power(squared, bins, n)
        want = _level_power(level) if level else have
        gains.append(min(1.0, np.sqrt(want / have)) if have > 0 else 1.0)
    if min(gains) == 1.0:  # every band at or under its ceiling: G = 1, no change
        return y
    edges = [lo for lo, _ in SLOW_BANDS_HZ] + [SLOW_BANDS_HZ[-1][1]]
    points = [(edge + side * CEILING_RAMP_HZ, gain) for edge, below, above in zip(edges, [1.0] + gains, gains + [1.0])
              for side, gain in ((-1, below), (1, above))]
    gain = np.interp(_frequencies(n, rate), *zip(*points))
    return _faded(y, np.fft.irfft(spectrum * gain, n) + ramp, rate)


def profile_count(n: int, rate: float) -> int:
    """Format 9: how many parts of the block its time profile describes."""
    return max(1, min(n, round(n / (PROFILE_SECONDS * rate))))


def profile(x: np.ndarray, rate: float) -> np.ndarray:
    """Format 9: the block's power from PROFILE_LOW_HZ up in each of its profile_count parts, relative to
    the block's own, in PROFILE_DB steps (int64, within ±PROFILE_MAX; all 0 where the block holds none)."""
    return _relative_part_power(_fast(x, rate), profile_count(len(x), rate))


def _relative_part_power(fast: np.ndarray, count: int) -> np.ndarray:
    """Each of `count` parts' mean power of `fast` relative to its whole, in PROFILE_DB steps within
    ±PROFILE_MAX (all 0 where it holds none)."""
    parts = _part_power(fast, np.array(part_edges(len(fast), count)))
    mean = float(np.mean(fast ** 2))
    if not mean > 0:
        return np.zeros(len(parts), np.int64)
    steps = 10.0 * np.log10(np.maximum(parts / mean, 1e-30)) / PROFILE_DB
    return np.clip(np.rint(steps), -PROFILE_MAX, PROFILE_MAX).astype(np.int64)


def gamma_profile(x: np.ndarray, rate: float) -> np.ndarray:
    """Format 16: the block's 30-70 Hz power in each of its profile_count parts, relative to the block's own,
    in PROFILE_DB steps within ±PROFILE_MAX; empty where there is nothing to shape (fewer than two parts, or no
    power in the band)."""
    count, band = profile_count(len(x), rate), _fast(x, rate, GAMMA_PROFILE_HZ[1])
    if count < 2 or not np.mean(band ** 2) > 0:
        return np.zeros(0, np.int64)
    return _relative_part_power(band, count)


def follow_gamma_profile(y: np.ndarray, time_profile: np.ndarray, rate: float, seed: int,
                         part_hz: float = FINE_PART_HZ) -> np.ndarray:
    """Format 16 (spec 6.8): y (a block's normalized samples after the envelope) with its 30-70 Hz part shaped in
    time by the profile: parts above their share scaled down, parts below it given fresh noise of the band's
    own block spectrum for what they lack; then each `part_hz` part of the band's bins (format 17: QUARTER_PART_HZ)
    brought back to y's block power there, and the change faded in and out at the block's ends as the envelope's."""
    n = len(y)
    y = np.asarray(y, np.float64)
    before = _spectrum(y)
    spectrum = before * _band_mask(n, rate, GAMMA_PROFILE_HZ[1])
    magnitude = np.abs(spectrum)  # |rfft(band)|: the band's own spectrum, whose Nyquist bin is real
    if n % 2 == 0:
        magnitude[-1] = abs(spectrum[-1].real)
    used = _mask_bins(n, rate, GAMMA_PROFILE_HZ[1])  # the noise's phases matter only where the band has bins
    phased = np.zeros(len(spectrum), complex)
    phased[used] = magnitude[used] * np.exp(1j * _angles(splitmix64(_profile_seed(seed), used)))
    band, noise = np.fft.irfft(np.stack([spectrum, phased]), n)  # together: see _tapered_and_plain
    edges, have, target = _part_targets(band, time_profile)
    if not np.sum(have) > 0:
        return y
    power = float(np.mean(noise ** 2))
    lack = np.sqrt(np.maximum(target - have, 0.0) / power) if power > 0 else np.zeros_like(have)
    shaped = y + band * (_along(edges, _gains(target, have, 1.0)) - 1.0) + noise * _along(edges, lack)
    return _faded(y, _band_powers_kept(before, shaped, rate, part_hz), rate)


def _profile_seed(seed: int) -> int:
    """Format 16: the profile's noise has a SplitMix64 stream of its own, 2^62 from the envelope's seed."""
    return (seed + (1 << 62)) & 0xFFFFFFFFFFFFFFFF


def high_profile(x: np.ndarray, rate: float) -> np.ndarray:
    """Format 21: the block's power from HIGH_PROFILE_LOW_HZ up (found on its odd extension, _high_band) in each of
    its profile_count parts, relative to the block's own, in PROFILE_DB steps within ±PROFILE_MAX; empty where there
    is nothing to shape (fewer than two parts, no power in the band, or a Nyquist frequency not above the band's
    crossover)."""
    count = profile_count(len(x), rate)
    if count < 2 or not has_high_band(rate):
        return np.zeros(0, np.int64)
    extended, ends = _odd_extension(x, rate)
    band = _high_band(np.fft.rfft(extended), len(extended), rate)[ends:ends + len(x)]
    if not np.mean(band ** 2) > 0:
        return np.zeros(0, np.int64)
    return _relative_part_power(band, count)


def has_high_band(rate: float) -> bool:
    """Format 21: whether a channel at `rate` has a band from HIGH_PROFILE_LOW_HZ up (its Nyquist frequency above
    the band's crossover)."""
    return rate / 2 > HIGH_PROFILE_LOW_HZ + PROFILE_CROSSOVER_HZ


def follow_high_profile(y: np.ndarray, time_profile: np.ndarray, rate: float, part_hz: float,
                        burst_cap: bool = False, rounds: int = 1) -> np.ndarray:
    """Format 21 (spec 6.8, High band): y (after the 30-70 Hz profile) with its part from HIGH_PROFILE_LOW_HZ up
    shaped in time by the profile on y's odd extension: parts above their share scaled down (no noise for what a
    part lacks; format 23: and its bursts capped, _burst_cap), the change faded in at the block's ends as the
    envelope's, then each `part_hz` part of the band's bins brought back to the extension's power there; format 24
    repeats that `rounds` times (HIGH_PROFILE_ROUNDS), each on the last one's result."""
    n = len(y)
    extended, ends = _odd_extension(y, rate)
    m = len(extended)
    before = spectrum = np.fft.rfft(extended)
    taper = _edge_taper(n, _edge(n, rate))
    for _ in range(rounds):
        band = _high_band(spectrum, m, rate)
        own = band[ends:ends + n]
        edges, have, target = _part_targets(own, time_profile)
        if not np.sum(have) > 0:  # nothing to shape (a later round keeps the first one's power)
            return np.asarray(y, np.float64)
        gains = _along(edges, _gains(target, have, 1.0))
        if burst_cap:
            gains = gains * _burst_cap(band, ends, edges, have, rate)
        change = np.zeros(m)
        change[ends:ends + n] = own * ((gains - 1.0) * taper)
        spectrum = _parts_rescaled(before, spectrum + np.fft.rfft(change), m, rate, part_hz,
                                   (HIGH_PROFILE_LOW_HZ, None))
    return y + (np.fft.irfft(spectrum, m) - extended)[ends:ends + n]


def _burst_cap(band: np.ndarray, ends: int, edges: np.ndarray, have: np.ndarray, rate: float) -> np.ndarray:
    """Format 23 (spec 6.8, Burst cap): per sample of the block, min(1, HIGH_BURST_CREST x its part's RMS / the
    band's RMS over the w = max(1, floor(HIGH_BURST_SECONDS x rate)) samples from w // 2 before it (over the whole
    extension, 0 past its ends)); 1 where that RMS is 0."""
    w = max(1, int(HIGH_BURST_SECONDS * rate))
    n = edges[-1]
    sums = np.concatenate([[0.0], np.cumsum(band ** 2)])
    starts = np.clip(np.arange(ends, ends + n) - w // 2, 0, len(band))
    local = (sums[np.minimum(starts + w, len(band))] - sums[starts]) / w
    ceiling = HIGH_BURST_CREST ** 2 * np.repeat(have, np.diff(edges))
    return np.sqrt(np.minimum(1.0, np.divide(ceiling, local, out=np.ones(n), where=local > 0)))


def _odd_extension(y: np.ndarray, rate: float) -> tuple[np.ndarray, int]:
    """(y continued at each end by e = min(floor(HIGH_PROFILE_EXTENSION_SECONDS x rate), n - 1) samples of its odd
    reflection (value and slope go on), as _context_window makes a block's decoded context ready: less its straight
    line, the extension faded to 0 at its outer ends; e)."""
    y = np.asarray(y, np.float64)
    e = min(int(HIGH_PROFILE_EXTENSION_SECONDS * rate), len(y) - 1)
    return _context_window(np.concatenate([2.0 * y[0] - y[e:0:-1], y, 2.0 * y[-1] - y[-2:-e - 2:-1]]), e, len(y)), e


def _high_band(spectrum: np.ndarray, m: int, rate: float) -> np.ndarray:
    """The part from HIGH_PROFILE_LOW_HZ up of the m samples whose rfft is `spectrum` (raised-cosine crossover)."""
    return np.fft.irfft(spectrum * _band_mask(m, rate, None, HIGH_PROFILE_LOW_HZ), m)


def _band_powers_kept(before: np.ndarray, shaped: np.ndarray, rate: float, part_hz: float,
                      band: tuple = GAMMA_PROFILE_HZ) -> np.ndarray:
    """`shaped` with each `part_hz` part of its bins from the band's bottom less PROFILE_CROSSOVER_HZ to its top
    plus the crossover (to the last bin where the top is None) scaled to hold the power that `before` (the rfft of
    the unshaped samples without their straight line: _spectrum's) holds there."""
    n = len(shaped)
    ramp = straight_line(shaped)
    return np.fft.irfft(_parts_rescaled(before, np.fft.rfft(shaped - ramp), n, rate, part_hz, band), n) + ramp


def _parts_rescaled(before: np.ndarray, after: np.ndarray, n: int, rate: float, part_hz: float,
                    band: tuple) -> np.ndarray:
    """`after` (an n-sample rfft) with _band_powers_kept's parts of bins scaled to hold `before`'s power there."""
    k, part = _rescaling_parts(n, rate, part_hz, band)
    want, have = np.bincount(part, np.abs(before[k]) ** 2), np.bincount(part, np.abs(after[k]) ** 2)
    after[k] *= np.sqrt(np.divide(want, have, out=np.ones_like(want), where=have > 0))[part]
    return after


@lru_cache(maxsize=16)
def _rescaling_parts(n: int, rate: float, part_hz: float, band: tuple) -> tuple[np.ndarray, np.ndarray]:
    """_band_powers_kept's bins of an n-sample rfft and their part numbers (read-only; found once per block length:
    every block of a recording but its last has the same)."""
    f = np.fft.rfftfreq(n, 1.0 / rate)
    low = band[0] - PROFILE_CROSSOVER_HZ
    k = np.flatnonzero((f >= low) & (f < (np.inf if band[1] is None else band[1] + PROFILE_CROSSOVER_HZ)))
    part = np.floor((f[k] - low) / part_hz).astype(np.int64)
    for array in (k, part):
        array.setflags(write=False)
    return k, part


def splitmix64(seed: int, numbers: np.ndarray) -> np.ndarray:
    """SplitMix64's outputs number `numbers` (0 for the first) from `seed` (state += golden ratio, then the mix): each
    output depends only on its number, so a decoder draws only the ones it uses."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + _GOLDEN * (np.asarray(numbers, np.uint64) + np.uint64(1))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def apply(y: np.ndarray, stored: bytes, rate: float, limit: float, seed: int, bands: tuple, rounding: float = 0.0,
          version: int = 5, time_profile: np.ndarray | None = None, part_hz: float = SUB_BAND_HZ,
          mains_noise: bool = False, exact_fill: bool = False, context: tuple | None = None,
          skirt_floor: bool = False) -> np.ndarray:
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
    its neighbours below 30 Hz down with it would only make it stand out more. Format 9 (`time_profile`):
    the result's fast part is then shaped in time (shaped_in_time). `part_hz`: the parts' width (format 13's token
    streams: FINE_PART_HZ). `mains_noise` (format 13's token streams): the mains bands' decoded content is dropped
    and their parts filled with noise of their power (see FINE_PART_HZ's note). `exact_fill` (format 14's token
    streams): a filled part's bins are then scaled so that the part holds its decoded power plus the noise's, as
    noise uncorrelated with the decoded content would give on average (see the format-14 note above SKIRT_HZ).
    `context` (format 20's token streams): (the block's decoded samples with their context, how many lie before the
    block's own; same normalization as y), on which the parts' factors act above SEAM_LOW_HZ, and whose bands' scaling
    there reaches the block's faded ends (_seam_weight). `skirt_floor` (format 22's token streams): the skirt fills
    each of its parts only up to a floor (_skirt_floor) instead of continuing the first part's filling."""
    n = len(y)
    if n < 2 or not any(stored):
        return y
    y = np.asarray(y, np.float64)
    # the block is modified in the FFT's periodic world: without its end-to-start jump (a straight line from
    # the first sample to the last, put back afterwards), whose leakage would swamp the quiet high bands
    ramp = straight_line(y)
    measured, spectrum = _tapered_and_plain(y, ramp, rate, version >= 5)
    decoded_spectrum = spectrum.copy() if context is not None else None  # format 20: Y, before any part's change
    gains = np.ones(len(spectrum))  # format 20: each bin's factor (the mains bands' 0, a scaled part's factor)
    f = _frequencies(n, rate)
    counted = sum(len(b) for b in _band_bins(n, rate, limit, bands))
    skirt = np.flatnonzero((f >= bands[0][0] - SKIRT_HZ) & (f < bands[0][0]) & (f > 0)) if version >= 6 else []
    shape, (k, numbers, part_of, band_of, first), part_band, have, want, part_shape = _part_budget(
        measured, n, f, stored, rate, limit, bands, rounding, version, part_hz)
    if len(k):  # every part of every band at once (the spec's loop over bands and parts, vectorized)
        if mains_noise:
            mains = np.array([hi - lo < SUB_BAND_HZ for lo, hi in bands])[part_band]
            have[mains] = 0.0
            spectrum[k[mains[part_of]]] = 0.0
        scaled = have > want
        filled = ~scaled & (want > 0)
        factor = np.where(scaled, np.sqrt(np.divide(want, have, out=np.zeros_like(have), where=have > 0)), 1.0)
        spectrum[k] *= factor[part_of]
        if context is not None:
            gains[k] = np.where(mains[part_of], 0.0, factor[part_of]) if mains_noise else factor[part_of]
        scaling = _band_scaling(have, want, part_band, bands, rate, limit, f) if context is not None else None
        density = np.where(filled, (want - have) / part_shape, 0.0)  # noise per unit of shape
        if version >= 8:  # format 8: a part that holds much of its power gets only part of what it lacks
            density *= _fill_ramp(have, want)
        noise = np.zeros(len(k), complex)  # drawn only where a part is filled: elsewhere its density is 0
        drawn = np.flatnonzero(density[part_of] > 0)
        noise[drawn] = (n * np.sqrt(density[part_of[drawn]] * shape[k[drawn]] / 2.0)
                        * np.exp(1j * _angles(splitmix64(seed, numbers[drawn]))))
        # noise is 0 where the part is not filled; format 14's token streams: without the cross term, a filled part
        # gets what it lacks
        spectrum[k] = _exactly_filled(spectrum[k], noise, part_of, filled) if exact_fill else spectrum[k] + noise
        # a first part brought down is mostly a line the decoder made: nothing to continue
        skirt_density = density[0] if first and filled[0] else None
    else:
        skirt_density, scaling = None, None
    if len(skirt) and skirt_floor:  # format 22's token streams: the skirt fills only what lies under a floor
        if first and want[0] > 0:  # the first band's target per unit of shape sets the floor
            outputs = splitmix64(seed, counted + np.arange(len(skirt)))
            spectrum[skirt] = _skirt_floor(spectrum[skirt], measured[skirt], n, f[skirt],
                                           shape[skirt] * want[0] / part_shape[0], bands[0][0], part_hz, outputs)
    elif len(skirt) and skirt_density:  # format 6: the first part's noise filling continues below 30 Hz, fading out
        weight = 0.5 + 0.5 * np.cos(np.pi * (bands[0][0] - f[skirt]) / SKIRT_HZ)
        phases = _angles(splitmix64(seed, counted + np.arange(len(skirt))))
        spectrum[skirt] += weight * n * np.sqrt(skirt_density * shape[skirt] / 2.0) * np.exp(1j * phases)
    if context is None:
        return _shaped(_faded(y, np.fft.irfft(spectrum, n) + ramp, rate), time_profile, rate)
    # format 20: above SEAM_LOW_HZ the parts' gains act on the block with its decoded context, where no end-to-start
    # jump lies (below, where the decoded content is most of the power, the jump's leakage rings little, and on the
    # context the default model's lines grew: 22 -> 25.5 of 160 held-out eegmat channels above 1.5x at 6 codebooks)
    # and the bands' scaling reaches the faded ends (_seam_weight). What the gains do above it comes off the block's own
    # bins; the rest stays there: below it, and a filled part's noise with its decoded content (the exact filling's
    # factor undoes their cross term there; apart, it could multiply a part whose two nearly cancelled)
    decoded, before = context
    window = (np.fft.rfft(_context_window(decoded, before, n)), len(decoded), before)
    high = _context_grid(n, len(decoded), rate)[2]  # on the block's own bins
    on_context = _above_on_context(*window, n, [gains] if scaling is None else [gains, scaling], rate)
    change = np.fft.irfft(spectrum - decoded_spectrum * (1.0 + (gains - 1.0) * high), n) + on_context[0]
    out = y + change * _edge_taper(n, _edge(n, rate))
    if scaling is not None:
        out = out + on_context[1] * _seam_weight(*window[1:], n, rate)
    return _shaped(out, time_profile, rate)


def _skirt_floor(spectrum: np.ndarray, measured: np.ndarray, n: int, f: np.ndarray, density: np.ndarray, low: float,
                 part_hz: float, outputs: np.ndarray) -> np.ndarray:
    """Format 22 (spec 6.4, Skirt's floor): the skirt's bins of the plain spectrum (frequencies `f`, SKIRT_HZ below
    `low`, the first band's edge) with each `part_hz` part from low - SKIRT_HZ filled, as a band's parts are (8.2's
    fill ramp, exact filling), up to the floor: the first band's power per bin (`density`: its shape times its target
    per unit of shape) faded to 0 over the skirt. Below the first band the original's power is not stored but, in
    EEG, rarely below the first band's density: a part that holds the floor keeps what the decoder made (format 6's
    continued filling was added to it and, where the decoder's beta was whole, read as a line: the frame-start
    model's Bonn set D at 29 Hz, 1.58x)."""
    floor = (0.5 + 0.5 * np.cos(np.pi * (low - f) / SKIRT_HZ)) * density
    part = np.floor((f - (low - SKIRT_HZ)) / part_hz).astype(np.int64)
    _, part = np.unique(part, return_inverse=True)
    want = np.bincount(part, floor)
    have = 2.0 * np.bincount(part, np.abs(measured) ** 2) / (n * n)
    filled = have < want
    share = np.where(filled, (want - have) / np.where(want > 0, want, 1.0), 0.0) * _fill_ramp(have, want)
    noise = n * np.sqrt(share[part] * floor / 2.0) * np.exp(1j * _angles(outputs))
    return _exactly_filled(spectrum, noise, part, filled)


def _fill_ramp(have: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Format 8's share of what a part lacks that its noise brings, min(1, (1 - r) / (1 - FILL_RAMP)) for a part
    holding a share r = have / want of its power (clipped to 0..1; a part with want 0 counts as holding have)."""
    return np.clip((1.0 - have / np.where(want > 0, want, 1.0)) / (1.0 - FILL_RAMP), 0.0, 1.0)


def _exactly_filled(bins: np.ndarray, noise: np.ndarray, part: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """Spec 6.4's exact filling: `bins` plus their `noise`, each filled part (`filled` per part number, `part` per
    bin) then scaled to hold its bins' power plus the noise's, without the cross term between them."""
    expected = np.bincount(part, np.abs(bins) ** 2 + np.abs(noise) ** 2, minlength=len(filled))
    out = bins + noise
    after = np.bincount(part, np.abs(out) ** 2, minlength=len(filled))
    gain = np.sqrt(np.divide(expected, after, out=np.ones_like(after), where=after > 0))
    return out * np.where(filled, gain, 1.0)[part]


def _shaped(out: np.ndarray, time_profile: np.ndarray | None, rate: float) -> np.ndarray:
    return out if time_profile is None else shaped_in_time(out, time_profile, rate)


def _above_on_context(window: np.ndarray, m: int, before: int, n: int, gains: list, rate: float) -> np.ndarray:
    """Format 20 (spec 6.4): per row of per-bin `gains` (over the n-sample block's rfft bins), the change it makes
    above SEAM_LOW_HZ (_context_grid) to the block's n samples when applied to the block with its decoded context
    (`window`: rfft of its m-sample _context_window, in which the block's own begin `before` samples in); one
    inverse transform for all rows (see _tapered_and_plain)."""
    own, context, _, high = _context_grid(n, m, rate)
    rows = np.array([np.interp(context, own, g) for g in gains])
    return np.fft.irfft(window * (rows - 1.0) * high, m)[:, before:before + n]


@lru_cache(maxsize=16)
def _context_grid(n: int, m: int, rate: float) -> tuple:
    """Format 20: the rfft frequencies of a block of n samples and of its m-sample context window, and each one's
    share above SEAM_LOW_HZ (0 to 1 over ± SEAM_RAMP_HZ); read-only, found once per block length (every block of a
    recording but its ends has the same)."""
    own, context = np.fft.rfftfreq(n, 1.0 / rate), np.fft.rfftfreq(m, 1.0 / rate)
    out = (own, context, *(np.clip((f - SEAM_LOW_HZ + SEAM_RAMP_HZ) / (2.0 * SEAM_RAMP_HZ), 0.0, 1.0)
                           for f in (own, context)))
    for array in out:
        array.setflags(write=False)
    return out


def _context_window(decoded: np.ndarray, before: int, n: int) -> np.ndarray:
    """`decoded` (a block's n samples with `before` of context before them and the rest after) minus the straight
    line from its first sample to its last, each side's context faded to 0 at its outer end by a raised cosine."""
    after = len(decoded) - before - n
    z = np.asarray(decoded, np.float64)
    z = z - straight_line(z)
    if before:
        z[:before] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(before) / before)
    if after:
        z[len(z) - after:] *= 0.5 + 0.5 * np.cos(np.pi * (np.arange(after) + 1) / after)
    return z


def _band_scaling(have: np.ndarray, want: np.ndarray, part_band: np.ndarray, bands: tuple, rate: float, limit: float,
                  f: np.ndarray) -> np.ndarray:
    """Format 20's seams: per rfft bin (frequencies `f`), the gain that brings each band with parts down to its power
    where it holds more (min(1, sqrt(want / have)) over the band's parts), linear between the bands' centres: smooth,
    so that scaling the block's ends by it leaves no part standing out (by parts, a filled part between scaled ones
    kept the decoder's own content at the ends and read as a line: 149.5 Hz on eegmat Subject17_2's P3)."""
    top = min(rate / 2, limit)
    used = np.unique(part_band)
    band_have, band_want = np.bincount(part_band, have)[used], np.bincount(part_band, want)[used]
    gains = np.minimum(1.0, np.sqrt(np.divide(band_want, band_have, out=np.ones_like(band_have), where=band_have > 0)))
    centres = [(bands[b][0] + min(bands[b][1], top)) / 2.0 for b in used]
    return np.interp(f, centres, gains)


def _seam_weight(m: int, before: int, n: int, rate: float) -> np.ndarray:
    """Format 20 (spec 6.4, Context and seams): the weight of the seams' change at the block's n samples, where
    apply's change fades out (the change: _band_scaling's gains above SEAM_LOW_HZ applied to the block with its
    context, m samples of which the block's own begin `before` in): 1 minus the fade on each side that has context,
    0 on a side without (there the FFT's wrap lies at the block's end)."""
    edge = _edge(n, rate)
    faded_out = 1.0 - _edge_taper(n, edge)  # 0 inside, rising to 1 at each end
    if not before:
        faded_out[:edge] = 0.0
    if m - before - n == 0:
        faded_out[n - edge:] = 0.0
    return faded_out


def _faded(y: np.ndarray, changed: np.ndarray, rate: float) -> np.ndarray:
    """y with the change to `changed` faded in and out over one frame at each end of the block: an FFT over the
    block treats it as periodic, and a change that stops abruptly at the block's edge would add a broadband click."""
    return y + (changed - y) * _edge_taper(len(y), _edge(len(y), rate))


def _part_budget(measured: np.ndarray, n: int, f: np.ndarray, stored: bytes, rate: float, limit: float,
                 bands: tuple, rounding: float, version: int, part_hz: float) -> tuple:
    """What apply brings each part of a block of n samples to (`f`: its rfft frequencies): (the spectral shape per
    bin, _parts' tuple, each part's band, its power now (from the tapered spectrum `measured`), the power it
    wants, the sum of its shape)."""
    shape, parts, part_band, want, part_shape = _part_plan(n, f, stored, rate, limit, bands, rounding, version, part_hz)
    return shape, parts, part_band, _part_have(measured, parts, n), want, part_shape


def _part_plan(n: int, f: np.ndarray, stored: bytes, rate: float, limit: float, bands: tuple, rounding: float,
               version: int, part_hz: float) -> tuple:
    """_part_budget's share that the stored levels alone decide: (the spectral shape per bin, _parts' tuple, each
    part's band, the power it wants, the sum of its shape)."""
    targets = _targets(stored, bands, _band_bins(n, rate, limit, bands), rate, limit, rounding)
    shape = _spectral_shape(targets, bands, rate, limit, f) if version >= 5 else np.ones(len(f))
    parts = _part_layout(n, rate, limit, bands, bytes(bool(level) for level in stored), version, part_hz)
    k, part_of, band_of = parts[0], parts[2], parts[3]
    if not len(k):
        return shape, parts, np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    count = int(part_of[-1]) + 1
    part_shape = np.bincount(part_of, shape[k], minlength=count)
    band_shape = np.bincount(band_of, shape[k], minlength=len(bands))
    part_band = np.zeros(count, np.int64)
    part_band[part_of] = band_of
    want = np.asarray(targets)[part_band] * part_shape / band_shape[part_band]
    return shape, parts, part_band, want, part_shape


def _part_have(measured: np.ndarray, parts: tuple, n: int) -> np.ndarray:
    """Each part's power now, from the tapered spectrum `measured` of a block of n samples."""
    k, part_of = parts[0], parts[2]
    return 2.0 * np.bincount(part_of, np.abs(measured[k]) ** 2) / (n * n) if len(k) else np.zeros(0)


def part_powers(y: np.ndarray, stored: bytes, rate: float, limit: float, bands: tuple, rounding: float = 0.0,
                version: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A writer's estimate of what apply does to a block y, without drawing the noise or shaping in time
    (1-Hz parts; format 8's partial filling from version 8): over the parts of the bands with a level, in
    apply's order, (each part's band index, its power in y, the power apply leaves in it on average). `y` may
    also hold several blocks of one length as rows, under the same levels: the last two are then rows too."""
    rows = np.atleast_2d(np.asarray(y, np.float64))
    n = rows.shape[1]
    empty = np.zeros((len(rows), 0)) if np.ndim(y) == 2 else np.zeros(0)
    if n < 2 or not any(stored):
        return np.zeros(0, np.int64), empty, empty
    _, parts, part_band, want, _ = _part_plan(n, np.fft.rfftfreq(n, 1.0 / rate), stored, rate, limit, bands,
                                              rounding, version, SUB_BAND_HZ)
    have = np.array([_part_have(_windowed(row, rate, version >= 5), parts, n) for row in rows])
    gain = _fill_ramp(have, want) if version >= 8 else 1.0
    after = np.where(have > want, want, have + gain * np.maximum(want - have, 0.0))
    return (part_band, have, after) if np.ndim(y) == 2 else (part_band, have[0], after[0])


def shaped_in_time(x: np.ndarray, time_profile: np.ndarray, rate: float) -> np.ndarray:
    """Format 9: x's fast part (PROFILE_LOW_HZ and up) with each profile part brought to its share of the
    block's fast power: per part, the gain sqrt(target / have) (at most MAX_PROFILE_GAIN; 1 where the part
    holds nothing), linear between the parts' centres. What the coder spreads over a window (the ringing of
    a transient, the error at window and block edges) and the noise of a burst leave the quiet parts."""
    fast = _fast(x, rate)
    edges, have, target = _part_targets(fast, time_profile)
    return x + fast * (_along(edges, _gains(target, have, MAX_PROFILE_GAIN)) - 1.0)


def _part_targets(band: np.ndarray, time_profile: np.ndarray) -> tuple:
    """(the profile's part edges over `band`, each part's mean power, each part's target: the block's power in
    the band shared out by the profile's weights, spec 8.3 and 6.8)."""
    edges = np.array(part_edges(len(band), len(time_profile)))
    lengths = np.diff(edges)
    have = _part_power(band, edges)
    weight = 10.0 ** (np.asarray(time_profile, np.float64) * PROFILE_DB / 10.0)
    return edges, have, weight * np.sum(have * lengths) / np.sum(weight * lengths)


def _gains(target: np.ndarray, have: np.ndarray, most: float) -> np.ndarray:
    """Per part the amplitude gain sqrt(target / have), at most `most` (1 where the part holds nothing)."""
    return np.minimum(np.sqrt(np.divide(target, have, out=np.ones_like(have), where=have > 0)), most)


def _along(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-part values at every sample of the block: linear between the parts' centres, constant beyond."""
    return np.interp(np.arange(edges[-1]), (edges[:-1] + edges[1:] - 1) / 2.0, values)


def _part_power(fast: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The mean power of each part [edges[i], edges[i + 1]) of a block's fast part."""
    return np.add.reduceat(fast ** 2, edges[:-1]) / np.diff(edges)


def _fast(x: np.ndarray, rate: float, top: float | None = None) -> np.ndarray:
    """x's part from PROFILE_LOW_HZ up (the FFT of the block without its end-to-start jump, as apply); up to
    `top` (format 16: GAMMA_PROFILE_HZ's), with the same crossover there."""
    return np.fft.irfft(_spectrum(x) * _band_mask(len(x), rate, top), len(x))


def _spectrum(x: np.ndarray) -> np.ndarray:
    """rfft of x without its end-to-start jump (its straight line from first to last sample taken out)."""
    x = np.asarray(x, np.float64)
    return np.fft.rfft(x - straight_line(x))


@lru_cache(maxsize=16)
def _band_mask(n: int, rate: float, top: float | None, low: float = PROFILE_LOW_HZ) -> np.ndarray:
    """_fast's gains on the rfft bins of n samples (read-only; every block of a channel has the same); from `low`
    (format 21's high band: HIGH_PROFILE_LOW_HZ)."""
    f = np.fft.rfftfreq(n, 1.0 / rate)
    # a raised cosine over low ± PROFILE_CROSSOVER_HZ: shaped at once above a sharp edge, the fast part's
    # sidebands spilled below it and left a step there (Bonn D at 242 bit/s: a 1.89x line at 29.8 Hz)
    ramp_in = np.clip((f - low + PROFILE_CROSSOVER_HZ) / (2.0 * PROFILE_CROSSOVER_HZ), 0.0, 1.0)
    mask = 0.5 - 0.5 * np.cos(np.pi * ramp_in)
    if top is not None:
        mask *= 0.5 + 0.5 * np.cos(np.pi * np.clip((f - top + PROFILE_CROSSOVER_HZ) / (2.0 * PROFILE_CROSSOVER_HZ), 0.0, 1.0))
    mask.setflags(write=False)
    return mask


@lru_cache(maxsize=16)
def _mask_bins(n: int, rate: float, top: float | None, low: float = PROFILE_LOW_HZ) -> np.ndarray:
    """The rfft bins where _band_mask's gains are not 0 (read-only, found once per block length)."""
    bins = np.flatnonzero(_band_mask(n, rate, top, low))
    bins.setflags(write=False)
    return bins


@lru_cache(maxsize=64)
def _part_layout(n: int, rate: float, limit: float, bands: tuple, active: bytes, version: int, part_hz: float) -> tuple:
    """_parts for a block length and the bands that hold a level (`active`: 1 or 0 per band), found once: every
    block of a recording but its last has the same."""
    bins_of = [np.arange(b.start, b.stop) for b in _band_bins(n, rate, limit, bands)]
    return _parts(bins_of, active, np.fft.rfftfreq(n, 1.0 / rate), bands, version, part_hz)


def _parts(bins_of: list, stored: bytes, f: np.ndarray, bands: tuple, version: int, part_hz: float) -> tuple:
    """Over the bins of the bands with a level, bands in order: (the bins, their SplitMix64 output numbers,
    their part numbers, their band numbers, whether part 0 is the first band's first part). Bins are numbered
    over every band's bins in order, a band with level 0 counting its own; parts are, from format 5 on, each
    band's runs of `part_hz` from its lower edge, in format 4 each band whole."""
    kept, numbers, part_of, band_of, used, count = [], [], [], [], 0, 0
    for j, (bins, level, (lo, _)) in enumerate(zip(bins_of, stored, bands)):
        if len(bins) and level:
            index = np.floor((f[bins] - lo) / part_hz) if version >= 5 else np.zeros(len(bins))
            _, dense = np.unique(index, return_inverse=True)
            kept.append(bins)
            numbers.append(used + np.arange(len(bins)))
            part_of.append(count + dense.reshape(-1))
            band_of.append(np.full(len(bins), j))
            count += int(dense.max()) + 1
        used += len(bins)
    if not kept:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, empty, False
    first = bool(len(bins_of[0]) and stored[0])
    return tuple(np.concatenate(v) for v in (kept, numbers, part_of, band_of)) + (first,)


def _angles(outputs: np.ndarray) -> np.ndarray:
    """Phases 2π (z >> 11) / 2^53 from SplitMix64 outputs z."""
    return 2.0 * np.pi * (outputs >> np.uint64(11)).astype(np.float64) / 2.0 ** 53


def _targets(stored: bytes, bands: tuple, bins_of: list, rate: float, limit: float, rounding: float) -> list[float]:
    """Each band's target power: its stored power less its share of the rounding noise (0 for level 0)."""
    out = []
    for bins, level, (lo, hi) in zip(bins_of, stored, bands):
        share = (min(hi, limit, rate / 2) - lo) / limit  # the rounding noise spreads up to the channel's Nyquist
        out.append(max(_level_power(level) - rounding * share, 0.0) if level and len(bins) else 0.0)
    return out


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


@lru_cache(maxsize=16)
def _frequencies(n: int, rate: float) -> np.ndarray:
    """The rfft bins' frequencies of n samples at `rate` (read-only, found once per block length)."""
    f = np.fft.rfftfreq(n, 1.0 / rate)
    f.setflags(write=False)
    return f


@lru_cache(maxsize=16)
def _edge_taper(n: int, ramp: int) -> np.ndarray:
    """1 inside, a raised cosine over `ramp` samples at each end (0 at the first and last sample); read-only, found
    once per block length."""
    taper = np.ones(n)
    if ramp > 0:
        rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        taper[:ramp], taper[n - ramp:] = rise, rise[::-1]
    taper.setflags(write=False)
    return taper
