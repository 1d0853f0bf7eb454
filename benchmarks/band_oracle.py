"""What each band's waveform is worth to the window detectors: Bonn 051-070 coded at 6 codebooks (default model),
then one band of the decoded segment replaced by the original's (an oracle that codes that band exactly), or the
band from 30 Hz to Nyquist replaced by the original's plus noise of its own spectrum at a given SNR (a waveform coder
of that band at that SNR). Both detectors of clinical.py (trained on the originals of 001-050) read each variant.
Writes benchmarks/results/band_oracle.{json,md}. Usage: python benchmarks/band_oracle.py [DATA_DIR]
"""
from __future__ import annotations

import json
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the benchmarks package; eegz is the installed one

from benchmarks import clinical  # noqa: E402

DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
CODEBOOKS = 6
EXACT_BANDS = {"none": None, "0-30 Hz": (0, 30), "30-50 Hz": (30, 50), "50-70 Hz": (50, 70), "30-70 Hz": (30, 70),
               "70 Hz-Nyquist": (70, None), "30 Hz-Nyquist": (30, None), "0-70 Hz": (0, 70)}
SNRS_DB = (0, 3, 6, 10, 15)


def with_band(x: np.ndarray, y: np.ndarray, band: tuple, snr_db: float | None, rng) -> np.ndarray:
    """y with its band [lo, hi) (hi None: to Nyquist) taken from x, plus noise of x's spectrum there at snr_db."""
    lo, hi = band
    spectrum_x, spectrum_y = np.fft.rfft(x), np.fft.rfft(y)
    f = np.fft.rfftfreq(len(x), 1.0 / clinical.RATE)
    inside = (f >= lo) & (f < (hi if hi is not None else np.inf))
    spectrum_y[inside] = spectrum_x[inside]
    if snr_db is not None:
        k = int(inside.sum())
        noise = (rng.standard_normal(k) + 1j * rng.standard_normal(k)) * np.abs(spectrum_x[inside]) / np.sqrt(2)
        noise *= np.sqrt(np.sum(np.abs(spectrum_x[inside]) ** 2) / np.sum(np.abs(noise) ** 2) / 10 ** (snr_db / 10))
        spectrum_y[inside] += noise
    return np.fft.irfft(spectrum_y, len(x))


def main() -> None:
    segments, forest, texture = clinical.train_detectors(DATA)
    rng = np.random.default_rng(0)
    variants = {name: (band, None) for name, band in EXACT_BANDS.items()}
    variants.update({f"30 Hz-Nyquist at {s} dB SNR": ((30, None), s) for s in SNRS_DB})
    agree: dict = {name: {} for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for key in sorted(k for k in segments if k[1] > 50):
            x = segments[key][0].astype(np.float64)
            y, _ = clinical.coded(segments[key][0], Path(tmp), {"mode": "lossy", "codebooks": CODEBOOKS})
            decisions = texture.predict(clinical.texture_features(x)), forest.predict(clinical.window_features(x))
            for name, (band, snr) in variants.items():
                z = y if band is None else with_band(x, y, band, snr, rng)
                rows = agree[name].setdefault(clinical.SET_NAMES[key[0]], ([], []))
                rows[0].extend(decisions[0] == texture.predict(clinical.texture_features(z)))
                rows[1].extend(decisions[1] == forest.predict(clinical.window_features(z)))
    results = {name: {s: {"texture": float(np.mean(t)), "forest": float(np.mean(r))} for s, (t, r) in sorted(per.items())}
               for name, per in agree.items()}
    out = ROOT / "benchmarks" / "results"
    (out / "band_oracle.json").write_text(json.dumps({"date": date.today().isoformat(), "results": results}, indent=1))
    sets = sorted(next(iter(results.values())))
    lines = [f"# What each band's waveform is worth to the window detectors ({date.today().isoformat()})", "",
             f"Bonn 051-070 at {CODEBOOKS} codebooks (default model); each variant replaces one band of the decoded "
             "segment by the original's (or the band from 30 Hz to Nyquist by the original's plus noise of its own "
             "spectrum at the SNR given). Agreement of the texture detector (0.5-s windows at 200 Hz) and of the random "
             "forest (1-s windows) with their decisions on the originals, % of windows. benchmarks/band_oracle.py.", "",
             "| decoded, with | " + " | ".join(f"texture {s}" for s in sets) + " | " + " | ".join(f"forest {s}" for s in sets) + " |",
             "|---|" + "---|" * (2 * len(sets))]
    for name, per in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * per[s]['texture']:.1f}" for s in sets) + " | "
                     + " | ".join(f"{100 * per[s]['forest']:.1f}" for s in sets) + " |")
    (out / "band_oracle.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
