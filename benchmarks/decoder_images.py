"""Upsampling images of the neural decoder (issue 11's invented lines): a tone in, its copies out.

Each upsampling layer of the decoder repeats its input's spectrum around multiples of the rate its input
runs at (4, 16, 64 and 128 Hz for decoder rates [4, 4, 2, 2] at 256 Hz); the trained layers after it
must cancel the copies. A strong low rhythm that is not cancelled reappears as a narrow line where EEG
is weak: alpha at 7 Hz at 64 - 7 = 57 Hz (the line measured on held-out eegmat Subject16). This feeds
each model a tone (0.15, about 24 µV at the inference scale) over a weak 1/f background at 256 Hz,
codes it at 6 codebooks and reports, per tone, the strongest copy at m·R ± f (R = 16, 64, 128 Hz) in dB
against the tone, beside the input's own level at that bin (the background).

Usage: python benchmarks/decoder_images.py [label=model.npz ...] (default: the shipped DAC-SC models);
writes benchmarks/results/decoder_images.{json,md}.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eegz.losses import image_pairs  # noqa: E402
from eegz.neural import NeuralCodec  # noqa: E402

RATE, SECONDS, CODEBOOKS = 256, 32, 6
TONES_HZ = (3.0, 7.0, 10.0, 13.0)
SHIPPED = {"0.2 default (DAC upsampling)": "eegz-dac-sc-256hz-hop64",
           "0.3 default (balanced upsampling)": "eegz-dac-sc-256hz-hop64-balanced",
           "0.4 default (+ line loss)": "eegz-dac-sc-256hz-hop64-lines"}


def test_signal(tone_hz: float) -> np.ndarray:
    from scipy.signal import lfilter
    n = RATE * SECONDS
    background = lfilter([1.0], [1.0, -0.95], np.random.default_rng(0).standard_normal(n)) * 0.005
    return 0.15 * np.sin(2 * np.pi * tone_hz * np.arange(n) / RATE) + background


def power(x: np.ndarray) -> np.ndarray:
    return np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2


def strongest_copy(codec: NeuralCodec, tone_hz: float) -> dict:
    """The strongest copy of the tone at the decoder's image frequencies: (Hz, dB, input's dB there)."""
    x = test_signal(tone_hz)
    y = codec.decode(codec.encode([x.astype(np.float32)], CODEBOOKS))[0]
    px, py = power(x), power(y)
    df = RATE / len(x)
    k0 = int(round(tone_hz / df))
    images = {g for f, g, _ in image_pairs(len(x), RATE, codec.config.decoder_rates, codec.config.hop)
              if f == k0}
    best = max(images, key=lambda g: py[g - 2:g + 3].max())
    return {"hz": best * df, "db": float(10 * np.log10(py[best - 2:best + 3].max() / py[k0])),
            "input_db": float(10 * np.log10(px[best - 2:best + 3].max() / px[k0]))}


def main() -> None:
    models = dict(SHIPPED)
    for item in sys.argv[1:]:
        label, path = item.split("=", 1)
        models[label] = path
    os.environ.setdefault("EEGZ_THREADS", "1")
    results = {}
    for label, model in models.items():
        codec = NeuralCodec.load(model, "cpu")
        results[label] = {f"{t:g}": strongest_copy(codec, t) for t in TONES_HZ}
        print(label, results[label], file=sys.stderr, flush=True)
    out = ROOT / "benchmarks" / "results"
    (out / "decoder_images.json").write_text(json.dumps({"date": str(date.today()), "machine": platform.platform(),
                                                         "codebooks": CODEBOOKS, "results": results}, indent=1) + "\n")
    lines = [f"# Decoder upsampling images ({date.today()})", "",
             f"A tone (0.15 at the inference scale) over a weak 1/f background, {SECONDS} s at {RATE} Hz, coded at "
             f"{CODEBOOKS} codebooks; the strongest copy of the tone at m·R ± f (R: the rates the decoder's "
             "upsampling layers take in), in dB against the tone; in brackets the input's own level there. "
             "benchmarks/decoder_images.py.", "",
             "| model | " + " | ".join(f"{t:g} Hz tone" for t in TONES_HZ) + " |",
             "|---|" + "---|" * len(TONES_HZ)]
    for label, per in results.items():
        lines.append(f"| {label} | " + " | ".join(f"{r['db']:.0f} dB at {r['hz']:.0f} Hz ({r['input_db']:.0f})"
                                                  for r in per.values()) + " |")
    (out / "decoder_images.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
