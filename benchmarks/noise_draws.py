"""Lossy mode's Bonn checks over several draws of the band envelope's noise, one format against another.

clinical.py runs each setting once, with the one noise that the format's seed gives; the texture detector's
agreement and a set's strongest invented line move with that draw (by about 1 point and 0.15x on 20 segments).
Here every Bonn segment 051-070 is coded with the default model (or EEGZ_BENCH_MODEL) as each format of
EEGZ_BENCH_FORMATS (default 13,14: format 14 adds constant runs, the line padding at a recording's ends and exact filling, spec 6.1, 6.4,
6.7; 12 against 13 is results/noise_draws.md: 8.2's bands, 0.5-Hz parts, noise in the mains bands) with the seed
shifted by k x 7919 for draw k = 0 .. DRAWS-1 (draw 0 is the file's own noise), and each set's texture agreement
and strongest line (metrics.line_ratio_psd on the set's mean spectrum) are given per draw and as their mean.

Usage: python benchmarks/noise_draws.py [DATA_DIR]; EEGZ_BENCH_DRAWS (default 4), EEGZ_BENCH_CODEBOOKS
(default 3,6,9), EEGZ_BENCH_FORMATS (default 13,14), EEGZ_BENCH_MODEL (a model file instead of the default) with
EEGZ_BENCH_TAG (appended to the results' names). Writes benchmarks/results/noise_draws_<formats>[_<tag>].{json,md}
(noise_draws.* for 12,13).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the benchmarks package; eegz is the installed one

from benchmarks import clinical  # noqa: E402
from eegz import encode, lossy  # noqa: E402
from eegz.metrics import line_ratio_psd, welch_psd  # noqa: E402

DRAWS = int(os.environ.get("EEGZ_BENCH_DRAWS", "4"))
CODEBOOKS = [int(n) for n in os.environ.get("EEGZ_BENCH_CODEBOOKS", "3,6,9").split(",")]
FORMATS = tuple(int(v) for v in os.environ.get("EEGZ_BENCH_FORMATS", "13,14").split(","))
MODEL = os.environ.get("EEGZ_BENCH_MODEL")  # None: the default model
TAG = ("noise_draws" if FORMATS == (12, 13) else "noise_draws_" + "_".join(map(str, FORMATS))) \
    + (f"_{os.environ['EEGZ_BENCH_TAG']}" if os.environ.get("EEGZ_BENCH_TAG") else "")
WHAT = {12: "6.4's bands", 13: "8.2's bands, 0.5-Hz parts, noise in the mains bands (spec 6.4)",
        14: "format 13 with constant runs (6.7), line padding at a recording's ends (6.1) and exact filling (6.4)",
        15: "format 14 with the rail limiter before clipping (6.1, 8)",
        16: "format 15 with each block's 30-70 Hz time profile (6.8)",
        17: "format 16 with the envelope's parts and the profile's rescaling parts 0.25 Hz wide (6.4, 6.8)",
        18: "format 17 with the envelope's [64, 74) split at 70 Hz (6.4), the slow-band ceiling (6.9) and the runs' edges "
            "(6.7; Bonn's segments hold no runs)",
        20: "format 18 with the envelope above 64 Hz on the block with its decoded context (6.4; Bonn's segments are "
            "one block, so as format 18)",
        21: "format 20 with each block's time profile of the band from 70 Hz up (6.8, High band)",
        22: "format 21 with the envelope's skirt below 30 Hz filled only up to a floor (6.4, Skirt's floor)",
        23: "format 22 with the high band's bursts capped within its profile's parts (6.8, Burst cap)",
        24: "format 23 with the high band's shaping and rescaling in three rounds (6.8, Rounds)"}
SEED_STEP = 7919


def one_draw(segments: dict, texture, keys: list, folder: Path, codebooks: int) -> tuple[float, float]:
    """(texture agreement, strongest line of the set's mean spectrum) of one set with the current format and seed."""
    agree, xs, ys = [], [], []
    for key in keys:
        x = segments[key][0]
        y, _ = clinical.coded(x, folder, {"codebooks": codebooks, "model": MODEL})
        agree += list(texture.predict(clinical.texture_features(x)) == texture.predict(clinical.texture_features(y)))
        xs.append(np.asarray(x, np.float64))
        ys.append(y)
    f, px = welch_psd(np.stack(xs), clinical.RATE)
    _, py = welch_psd(np.stack(ys), clinical.RATE)
    return float(np.mean(agree)), line_ratio_psd((f, px), (f, py), clinical.RATE)[0]


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    segments, _, texture = clinical.train_detectors(data)
    sets = sorted({k[0] for k in segments})
    own_version, own_seed = encode.format_version, lossy.seed_of
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in CODEBOOKS:
                for folder in sets:
                    keys = sorted(k for k in segments if k[0] == folder and k[1] > 50)
                    for version in FORMATS:
                        encode.format_version = lambda *args, v=version: v
                        draws = []
                        for k in range(DRAWS):
                            lossy.seed_of = lambda *args, s=k * SEED_STEP: (own_seed(*args) + s) % 2 ** 64
                            draws.append(one_draw(segments, texture, keys, Path(tmp), n))
                        results.append({"codebooks": n, "set": folder[0], "format": version,
                                        "texture": [d[0] for d in draws], "line": [d[1] for d in draws]})
                        print(n, folder[0], version, draws, file=sys.stderr, flush=True)
    finally:
        encode.format_version, lossy.seed_of = own_version, own_seed
    write(results)


def write(results: list) -> None:
    out = ROOT / "benchmarks" / "results"
    (out / f"{TAG}.json").write_text(json.dumps({"date": str(date.today()), "draws": DRAWS,
                                                       "results": results}, indent=1))
    lines = [f"# Lossy mode over {DRAWS} draws of the envelope's noise: format {' against '.join(map(str, FORMATS))} "
             f"({date.today()})", "",
             f"Bonn segments 051-070, {'model ' + Path(MODEL).name if MODEL else 'default model'}; each set's texture-detector agreement (%) and strongest invented "
             "line in its mean spectrum, per draw (draw 0: the file's own noise) and their mean. "
             + "; ".join(f"Format {v}: {WHAT.get(v, '')}" for v in FORMATS) + ". benchmarks/noise_draws.py.", "",
             "| codebooks | set | format | texture agreement per draw | mean | line per draw | mean |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['codebooks']} | {r['set']} | {r['format']} | "
                     f"{' / '.join(f'{100 * t:.1f}' for t in r['texture'])} | {100 * np.mean(r['texture']):.2f} | "
                     f"{' / '.join(f'{v:.2f}' for v in r['line'])} | {np.mean(r['line']):.2f} |")
    (out / f"{TAG}.md").write_text("\n".join(lines) + "\n")
    print((out / f"{TAG}.md").read_text())


if __name__ == "__main__":
    main()
