"""Fidelity metrics for reconstructed EEG (`eegz eval`, tests and benchmarks).

PRD  = 100 · ||x - y|| / ||x||            (depends on the signal's DC offset)
PRDN = 100 · ||x - y|| / ||x - mean(x)||  (offset-free; the number to compare across recordings)
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .channels import NEURAL, channel_roles
from .dsp import microvolt_factor, straight_line, stretches
from .errors import EegzError

BANDS = {"delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0),
         "gamma": (30.0, 70.0), "high_gamma": (70.0, math.inf)}  # high gamma: up to the Nyquist frequency
LINE_SEGMENT_SECONDS = 4.0  # Welch segments of the spectral-line measure
LINE_NEAR, LINE_FAR = 3, 8  # a bin's neighbours: bins 3 to 8 away on each side


def prd(x: np.ndarray, y: np.ndarray) -> float:
    return float(100 * np.linalg.norm(x - y) / max(np.linalg.norm(x), 1e-20))


def prdn(x: np.ndarray, y: np.ndarray) -> float:
    return float(100 * np.linalg.norm(x - y) / max(np.linalg.norm(x - x.mean()), 1e-20))


def prdn_pooled(xs, ys) -> float:
    """PRDN over several channels together: every channel's error over every channel's energy about its mean."""
    err = sum(np.sum((x - y) ** 2) for x, y in zip(xs, ys))
    ref = sum(np.sum((x - x.mean()) ** 2) for x in xs)
    return float(100 * np.sqrt(err / ref))


def prdn_windows(x: np.ndarray, y: np.ndarray) -> float:
    """PRDN over a batch of windows (rows), each window's own mean removed from the reference."""
    ref = x - x.mean(axis=-1, keepdims=True)
    return float(100 * np.sqrt(((x - y) ** 2).sum() / max((ref ** 2).sum(), 1e-20)))


def snr_db(x: np.ndarray, y: np.ndarray) -> float | None:
    """None where y equals x: the SNR is infinite (JSON has no infinity)."""
    return _snr_db(np.sum((x - x.mean()) ** 2), np.sum((x - y) ** 2))


def _snr_db(signal_power: float, noise_power: float) -> float | None:
    if noise_power == 0:
        return None
    return float(10 * np.log10(max(signal_power, 1e-20) / noise_power))


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    if np.std(x) == 0 or np.std(y) == 0:
        return 1.0 if np.array_equal(x, y) else 0.0
    return float(np.corrcoef(x, y)[0, 1])


def welch_psd(x: np.ndarray, rate: float, seconds: float = LINE_SEGMENT_SECONDS) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies, power) averaged over the rows of x (or of one signal), Welch segments of `seconds`."""
    from scipy.signal import welch
    x = np.atleast_2d(np.asarray(x, np.float64))
    nper = int(min(x.shape[-1], max(16, round(seconds * rate))))
    f, p = welch(x - x.mean(axis=-1, keepdims=True), fs=rate, nperseg=nper, axis=-1)
    return f, p.mean(axis=0)


def band_power_errors_psd(px, py, rate: float) -> dict[str, float]:
    """Relative band-power error |P_y - P_x| / P_x per band, from two welch_psd results."""
    (f, px), (_, py) = px, py
    out = {}
    for name, (lo, hi) in BANDS.items():
        sel = (f >= lo) & (f < min(hi, rate / 2))
        if sel.any() and px[sel].sum() > 0:
            out[name] = float(abs(py[sel].sum() - px[sel].sum()) / px[sel].sum())
    return out


def prominence(p: np.ndarray) -> np.ndarray:
    """Each bin's power over the mean power of the bins LINE_NEAR..LINE_FAR away on both sides."""
    n = len(p)
    near = np.zeros(n)
    count = np.zeros(n)
    for d in range(LINE_NEAR, LINE_FAR + 1):
        near[d:] += p[:n - d]
        count[d:] += 1
        near[:n - d] += p[d:]
        count[:n - d] += 1
    return p / np.maximum(near / np.maximum(count, 1), 1e-300)


def line_ratio_psd(px, py, rate: float, nyquist: float | None = None) -> tuple[float, float]:
    """The strongest spectral line the reconstruction invents, as (ratio, frequency): the decoded bin's
    prominence over max(the original's, 1), counted only where the decoded bin holds more power than the
    original's, over 2 Hz .. 0.95 × Nyquist (`nyquist`: the recording's own, when it was resampled to `rate`
    and what lies above is removed on the way back). White quantization noise scores about 1.1-1.3."""
    (f, px), (_, py) = px, py
    top = 0.95 * min(rate / 2, nyquist or rate / 2)
    ratio = prominence(py) / np.maximum(prominence(px), 1.0)
    ratio[(py <= px) | (f < 2.0) | (f > top)] = 1.0
    i = int(np.argmax(ratio))
    return float(ratio[i]), float(f[i])


def band_power_errors(x: np.ndarray, y: np.ndarray, rate: float) -> dict[str, float]:
    """Relative band-power error |P_y - P_x| / P_x per classical EEG band (Welch PSD)."""
    from scipy.signal import welch
    nper = int(min(len(x), max(16, 2 * rate)))
    f, px = welch(x - x.mean(), fs=rate, nperseg=nper)
    _, py = welch(y - y.mean(), fs=rate, nperseg=nper)
    out = {}
    for name, (lo, hi) in BANDS.items():
        sel = (f >= lo) & (f < min(hi, rate / 2))
        if sel.any():
            p = px[sel].sum()
            out[name] = float(abs(py[sel].sum() - p) / p) if p > 0 else 0.0
    return out


def _median_window_errors(per: list[dict], key: str) -> dict:
    """Per band, the median over channels of each channel's window_band_errors (under `key`) median and p90."""
    return {b: {q: float(np.median([c[key][b][q] for c in per if b in c[key]])) for q in ("median", "p90")}
            for b in BANDS if any(b in c[key] for c in per)}


def line_length_error(x: np.ndarray, y: np.ndarray) -> float:
    ll = np.abs(np.diff(x)).sum()
    return float(abs(np.abs(np.diff(y)).sum() - ll) / ll) if ll > 0 else 0.0


WINDOW_SECONDS = 0.5  # the windows a detector reads: band errors and transients per window
WINDOW_OFFSET_SECONDS = WINDOW_SECONDS / 2  # the second set of band-error windows: across the codec's 0.5-s parts


def _windows(x: np.ndarray, rate: float, seconds: float) -> np.ndarray:
    n = max(2, int(round(seconds * rate)))
    count = len(x) // n
    return np.asarray(x[:count * n], np.float64).reshape(count, n)


def window_band_errors(x: np.ndarray, y: np.ndarray, rate: float, seconds: float = WINDOW_SECONDS,
                       offset: float = 0.0) -> dict:
    """Per band, the median and the 90th percentile over windows of the relative band-power error
    |P_y - P_x| / P_x (each window's periodogram under a Hann window, its mean removed; windows where the
    original has no power in the band are left out). Untapered (eegz 0.8 and before), a 0.5-s window's
    jump from its last sample to its first leaks the slow waves' power into the fast bands: on held-out
    eegmat the 70-250 Hz band read 200x its tapered power (2.8e9 against 1.3e7, median window of Fp1) and
    30-70 Hz 1.6x, so those bands measured the waveform error at the window's two ends. Windows start at
    `offset` seconds and every `seconds` after: from 0, a 0.5-s window is one part of the codec's time profiles
    (spec 6.8) and its taper hides the block seams; from 0.25 s it straddles two parts and centres on the seams,
    as a reader's windows may (held-out eegmat's 160 channels at 6 codebooks, eegz 0.25: high gamma's p90 2.59 ->
    2.78, mean over the channels)."""
    skip = int(round(offset * rate))
    wx, wy = _windows(x[skip:], rate, seconds), _windows(y[skip:], rate, seconds)
    if not len(wx):
        return {}
    f = np.fft.rfftfreq(wx.shape[1], 1.0 / rate)
    taper = np.hanning(wx.shape[1])
    px = np.abs(np.fft.rfft((wx - wx.mean(1, keepdims=True)) * taper, axis=1)) ** 2
    py = np.abs(np.fft.rfft((wy - wy.mean(1, keepdims=True)) * taper, axis=1)) ** 2
    out = {}
    for name, (lo, hi) in BANDS.items():
        sel = (f >= lo) & (f < min(hi, rate / 2))
        if not sel.any():
            continue
        bx, by = px[:, sel].sum(1), py[:, sel].sum(1)
        keep = bx > 0
        if keep.any():
            err = np.abs(by[keep] - bx[keep]) / bx[keep]
            out[name] = {"median": float(np.median(err)), "p90": float(np.percentile(err, 90))}
    return out


def transient_errors(x: np.ndarray, y: np.ndarray, rate: float, seconds: float = WINDOW_SECONDS) -> dict:
    """The largest peak of each window (|x - window mean|): the reconstruction's relative amplitude error
    at that instant, and how far its own largest peak lies from it (ms); medians and 90th percentiles."""
    wx, wy = _windows(x, rate, seconds), _windows(y, rate, seconds)
    if not len(wx):
        return {}
    cx, cy = wx - wx.mean(1, keepdims=True), wy - wy.mean(1, keepdims=True)
    at = np.abs(cx).argmax(1)
    rows = np.arange(len(cx))
    peak = np.abs(cx[rows, at])
    keep = peak > 0
    amplitude = np.abs(cy[rows, at] - cx[rows, at])[keep] / peak[keep]
    timing = np.abs(np.abs(cy).argmax(1) - at)[keep] * 1000.0 / rate
    if not keep.any():
        return {}
    return {"amplitude_error": {"median": float(np.median(amplitude)), "p90": float(np.percentile(amplitude, 90))},
            "timing_ms": {"median": float(np.median(timing)), "p90": float(np.percentile(timing, 90))}}


RIPPLE_HZ = (80.0, 250.0)  # a ripple detector's band (high-frequency oscillations of epilepsy work)
RIPPLE_RMS_SECONDS, RIPPLE_MIN_SECONDS, RIPPLE_SD = 0.01, 0.006, 5.0
RIPPLE_MATCH_SECONDS = 0.1


def _ripple_starts(x: np.ndarray, rate: float, threshold: float | None = None) -> tuple[np.ndarray, float]:
    """(start samples of the ripple events in x, the threshold): x band-passed to RIPPLE_HZ (below 0.95 of
    Nyquist), its RMS over RIPPLE_RMS_SECONDS above the mean + RIPPLE_SD standard deviations of that RMS (of
    x itself, unless a threshold is given) for at least RIPPLE_MIN_SECONDS."""
    f = np.fft.rfftfreq(len(x), 1.0 / rate)
    band = (f >= RIPPLE_HZ[0]) & (f <= min(RIPPLE_HZ[1], 0.95 * rate / 2))
    x = np.asarray(x, np.float64)
    b = np.fft.irfft(np.fft.rfft(x - straight_line(x)) * band, len(x))
    width = max(1, int(round(RIPPLE_RMS_SECONDS * rate)))
    rms = np.sqrt(np.convolve(b * b, np.ones(width) / width, mode="same"))
    if threshold is None:
        threshold = float(rms.mean() + RIPPLE_SD * rms.std())
    starts, ends = stretches(rms > threshold)
    return starts[ends - starts >= max(1, int(round(RIPPLE_MIN_SECONDS * rate)))], threshold


def ripple_errors(x: np.ndarray, y: np.ndarray, rate: float) -> dict:
    """A plain ripple detector (80-250 Hz RMS events, the threshold set on the original) run on both: events
    in each, decoded events with no original event within RIPPLE_MATCH_SECONDS (invented) and original events
    the decoded lacks (missed). {} below 210.5 Hz (the band would end under 100 Hz). Measured on held-out
    eegmat Subject14-17 at 251 bit/s (transform mode, eegz 0.9): 205 events in the originals, 382 decoded,
    216 invented (148 of them within 50 ms of the codec's 8-s window and block joins), 39 missed."""
    if min(RIPPLE_HZ[1], 0.95 * rate / 2) < 100.0 or len(x) < 4:
        return {}
    ex, threshold = _ripple_starts(x, rate)
    ey, _ = _ripple_starts(y, rate, threshold)
    near = int(round(RIPPLE_MATCH_SECONDS * rate))
    return {"original": len(ex), "decoded": len(ey), "invented": _unmatched(ey, ex, near),
            "missed": _unmatched(ex, ey, near), "minutes": len(x) / rate / 60.0}


def _unmatched(events: np.ndarray, others: np.ndarray, near: int) -> int:
    """How many of events have none of others within `near` samples."""
    return int(sum(not np.any(np.abs(others - e) <= near) for e in events))


def line_ratio(x: np.ndarray, y: np.ndarray, rate: float) -> dict:
    """The strongest spectral line the reconstruction invents (line_ratio_psd) of one channel."""
    ratio, freq = line_ratio_psd(welch_psd(x, rate), welch_psd(y, rate), rate)
    return {"ratio": ratio, "hz": freq}


def channel_metrics(x: np.ndarray, y: np.ndarray, rate: float, uv_factor: float = 1.0) -> dict:
    return {"prd": prd(x, y), "prdn": prdn(x, y), "snr_db": snr_db(x, y), "correlation": correlation(x, y),
            "band_power_error": band_power_errors(x, y, rate), "line_length_error": line_length_error(x, y),
            "window_band_error": window_band_errors(x, y, rate),
            "window_band_error_offset": window_band_errors(x, y, rate, offset=WINDOW_OFFSET_SECONDS),
            "transients": transient_errors(x, y, rate),
            "spectral_line": line_ratio(x, y, rate), "ripples": ripple_errors(x, y, rate),
            "max_abs_error_uv": float(np.max(np.abs(x - y)) * uv_factor) if len(x) else 0.0}


MEL_SCALE_UV = 200.0  # the paper's training scale (±200 µV to ±1), kept so that mel numbers compare


def mel_loss(x_uv: np.ndarray, y_uv: np.ndarray, rate: float, codec_rate: int = 256) -> float:
    """DAC's multi-scale mel-spectrogram loss at the codec rate, on signals scaled as in training
    (µV / 200): the paper's "spectrogram loss". Imports torch, so only `eegz eval` calls it."""
    from .dsp import resample
    from .losses import mel_loss as dac_mel_loss
    from .neural import _quiet_imports
    torch, _ = _quiet_imports()
    a = torch.from_numpy((resample(x_uv, rate, codec_rate) / MEL_SCALE_UV).astype(np.float32))[None, None]
    b = torch.from_numpy((resample(y_uv, rate, codec_rate) / MEL_SCALE_UV).astype(np.float32))[None, None]
    with torch.inference_mode():
        return float(dac_mel_loss(b, a, codec_rate))


def evaluate_arrays(channels: list[tuple[str, float, float, np.ndarray, np.ndarray]],
                    with_mel: bool = False) -> dict:
    """channels: (label, rate, µV factor, original, reconstruction) in physical units."""
    per = [{"label": label, **channel_metrics(x, y, rate, f)} for label, rate, f, x, y in channels]
    if with_mel:
        for c, (_, rate, f, x, y) in zip(per, channels):
            c["mel_loss"] = mel_loss(x * f, y * f, rate)
    if not per:
        return {"channels": [], "overall": {}}
    err = sum(np.sum((x - y) ** 2) for *_, x, y in channels)
    ref = sum(np.sum(x ** 2) for *_, x, _ in channels)
    ref_c = sum(np.sum((x - x.mean()) ** 2) for *_, x, _ in channels)
    overall = {"prd": float(100 * np.sqrt(err / max(ref, 1e-20))),
               "prdn": float(100 * np.sqrt(err / max(ref_c, 1e-20))),
               "snr_db": _snr_db(ref_c, err),
               "correlation": float(np.mean([c["correlation"] for c in per])),
               "line_length_error": float(np.mean([c["line_length_error"] for c in per])),
               "max_abs_error_uv": float(max(c["max_abs_error_uv"] for c in per)),
               **({"mel_loss": float(np.mean([c["mel_loss"] for c in per]))} if with_mel else {}),
               "band_power_error": {b: float(np.mean([c["band_power_error"].get(b, 0.0) for c in per]))
                                    for b in BANDS},
               **{key: _median_window_errors(per, key) for key in ("window_band_error", "window_band_error_offset")},
               "transients": {k: {q: float(np.median([c["transients"][k][q] for c in per if c["transients"]]))
                                  for q in ("median", "p90")}
                              for k in ("amplitude_error", "timing_ms") if any(c["transients"] for c in per)},
               "spectral_line": max((c["spectral_line"] for c in per), key=lambda v: v["ratio"]),
               "spectral_line_mean": mean_spectrum_line(channels),
               **({"ripples": {k: sum(c["ripples"][k] for c in per if c["ripples"])
                               for k in ("original", "decoded", "invented", "missed", "minutes")}}
                  if any(c["ripples"] for c in per) else {})}
    return {"channels": per, "overall": overall}


def mean_spectrum_line(channels: list[tuple[str, float, float, np.ndarray, np.ndarray]]) -> dict:
    """line_ratio_psd on the spectrum averaged over the channels of the commonest rate: a line the codec
    adds to every channel. One channel's spectrum of a short recording is noisy: a coder that keeps the
    power spectrum above 30 Hz exactly but not the phases scores 1.5-1.7 on its worst channel of a 1-minute
    recording (benchmarks/lossy_benchmark.py measures it); on the mean of 20 channels, 1.1-1.2."""
    rates = [rate for _, rate, *_ in channels]
    rate = max(set(rates), key=rates.count)
    same = [(x, y) for _, r, _, x, y in channels if r == rate]
    n = min(len(x) for x, _ in same)
    ratio, freq = line_ratio_psd(welch_psd(np.stack([x[:n] for x, _ in same]), rate),
                                 welch_psd(np.stack([y[:n] for _, y in same]), rate), rate)
    return {"ratio": ratio, "hz": freq}


def evaluate_files(reference, candidate, device: str = "auto", model: str | None = None,
                   with_mel: bool = True) -> dict:
    """Compare the EEG channels of an original EDF with a .eegz file or a decoded EDF."""
    from .api import info
    from .container import Container
    from .decode import decode_records
    from .edf import read_edf
    ref = read_edf(reference)
    candidate = Path(candidate)
    result_extra = {}
    if candidate.suffix.lower() == ".eegz":
        with Container(candidate) as container:
            decoded = decode_records(container, 0, container.meta["edf"]["records"], device, model)
        summary = info(candidate)
        result_extra = {"compression_ratio": summary["compression_ratio"],
                        "bits_per_second_per_channel": summary["bits_per_second_per_channel"]}
    else:
        decoded = read_edf(candidate).digital
    if len(decoded) != len(ref.digital) or any(len(x) != len(y) for x, y in zip(ref.digital, decoded)):
        raise EegzError(f"{candidate.name} is not a reconstruction of {Path(reference).name} (its signals or "
                        "their lengths differ)")
    roles = channel_roles(ref.header.signals)
    channels = []
    for s, role, x, y in zip(ref.header.signals, roles, ref.digital, decoded):
        if role != NEURAL:
            continue
        channels.append((s.label, s.sample_rate, microvolt_factor(s.physical_dimension) or 1.0,
                         s.to_physical(x), s.to_physical(y)))
    return {**evaluate_arrays(channels, with_mel), **result_extra}
