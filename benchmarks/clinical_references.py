"""What the clinical goals demand (issue 11): the clinical check (benchmarks/clinical.py) run on reference
codecs instead of eegz, on the same Bonn segments, detectors and measures.

- DCT top-k coding (benchmarks/baselines.py's coder) at the bits per second eegz spends at 3, 6 and 9
  codebooks (read from benchmarks/results/clinical.json): the tool a user would pick instead.
- "exact below F Hz, random phase above": each 23.6-s segment's spectrum kept exactly (every bin's
  magnitude) with the phases above F Hz drawn at random (seed 0), then rounded to the digital steps. It
  keeps the waveform below F and the power spectrum everywhere: the best any coder can do that carries the
  spectrum, not the waveform, above F. Where it misses a goal, the goal asks for the waveform itself.
- the originals low-passed at 40 Hz: how much the detectors read above 40 Hz.
- adaptive DCT coding (benchmarks/baselines.py's audio-style transform coder) at the same bits, alone and
  with eegz's band envelope (format 6 noise filling, per 16-s block, its bytes taken from the budget): what
  a classical coder that spends the bits as well as it can keeps of the windows.

Usage: python benchmarks/clinical_references.py [DATA_DIR]; writes results/clinical_references.{json,md}.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.baselines import adaptive_dct_code, dct_code  # noqa: E402
from benchmarks.clinical import HEADER, RATE, eegz_bits, evaluate, report_progress, train_detectors, write_results  # noqa: E402

PHASE_EDGES_HZ = (30.0, 40.0, 60.0)
SEED = 0
BLOCK_S = 16.0  # eegz's block, over which the band envelope is measured and applied


def random_phase_above(x: np.ndarray, rate: float, edge: float, rng: np.random.Generator) -> np.ndarray:
    """x with every rfft bin's magnitude kept and the phases above `edge` Hz drawn at random."""
    spectrum = np.fft.rfft(x - x.mean())
    above = np.fft.rfftfreq(len(x), 1.0 / rate) > edge
    spectrum[above] = np.abs(spectrum[above]) * np.exp(2j * np.pi * rng.random(int(above.sum())))
    return np.fft.irfft(spectrum, len(x)) + x.mean()


def spectrum_only(x: np.ndarray, rate: float, rng: np.random.Generator, edge: float = 30.0,
                  block_s: float = 16.0) -> np.ndarray:
    """x with each whole block of `block_s` through random_phase_above (the last, partial block as it is): a
    coder that keeps each block's spectrum exactly and carries no waveform above `edge` Hz."""
    y, n = np.array(x, np.float64), int(block_s * rate)
    for start in range(0, len(y) - n + 1, n):
        y[start:start + n] = random_phase_above(y[start:start + n], rate, edge, rng)
    return y


def low_passed(x: np.ndarray, edge: float) -> np.ndarray:
    spectrum = np.fft.rfft(x - x.mean())
    spectrum[np.fft.rfftfreq(len(x), 1.0 / RATE) > edge] = 0
    return np.fft.irfft(spectrum, len(x)) + x.mean()


def adaptive_with_envelope(x: np.ndarray, bits_per_second: float) -> np.ndarray:
    """Adaptive DCT within the budget less the envelope's bytes and scales, then each 16-s block brought to
    its stored band spectrum (normalized as eegz normalizes a block, 16 robust standard deviations)."""
    from eegz import envelope
    from eegz.dsp import robust_std
    bands = envelope.channel_bands(RATE)
    starts = range(0, len(x), int(BLOCK_S * RATE))
    side = len(starts) * (8 * len(bands) + 32)
    y, _ = adaptive_dct_code(x, RATE, bits_per_second * len(x) / RATE - side)
    for k, start in enumerate(starts):
        block = slice(start, start + int(BLOCK_S * RATE))
        scale = 16 * robust_std(x[block]) or 1.0
        stored = envelope.levels(x[block] / scale, RATE, RATE / 2, bands, version=6)
        y[block] = scale * envelope.apply(y[block] / scale, stored, RATE, RATE / 2, SEED + k, bands, version=6)
    return y


def references() -> dict:
    """{name: code(segment) -> (decoded, bits per second or None)}."""
    rng = np.random.default_rng(SEED)
    duration = lambda s: len(s) / RATE  # noqa: E731
    out = {}
    for n, bps in sorted(eegz_bits().items()):
        out[f"DCT top-k at eegz's {n}-codebook bits"] = (
            lambda s, b=bps: (np.round(dct_code(s.astype(np.float64), RATE, b * duration(s))), b))
        out[f"adaptive DCT at eegz's {n}-codebook bits"] = (
            lambda s, b=bps: (np.round(adaptive_dct_code(s.astype(np.float64), RATE, b * duration(s))[0]), b))
        out[f"adaptive DCT + band envelope at eegz's {n}-codebook bits"] = (
            lambda s, b=bps: (np.round(adaptive_with_envelope(s.astype(np.float64), b)), b))
    for edge in PHASE_EDGES_HZ:
        out[f"exact below {edge:g} Hz, random phase above"] = (
            lambda s, e=edge: (np.round(random_phase_above(s.astype(np.float64), RATE, e, rng)), None))
    out["low-passed at 40 Hz"] = lambda s: (np.round(low_passed(s.astype(np.float64), 40.0)), None)
    return out


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    segments, clf, texture = train_detectors(data)
    results = {}
    for name, code in references().items():
        results[name] = evaluate(segments, clf, texture, code)
        report_progress(name, results[name])
    write_results(results, "clinical_references", "Clinical check on reference codecs: what the goals demand",
                  HEADER + " Reference codecs instead of eegz (benchmarks/clinical_references.py): DCT top-k at "
                  "eegz's bits; adaptive DCT (one Laplacian scale per 4-Hz band and 4-s window, ANS-coded) at eegz's "
                  "bits, alone and with eegz's band envelope; the originals with each segment's spectrum kept and the phases above an edge "
                  "drawn at random (waveform exact below the edge, spectrum exact everywhere); the originals "
                  "low-passed at 40 Hz. bit/s 0: not a coder.")


if __name__ == "__main__":
    main()
