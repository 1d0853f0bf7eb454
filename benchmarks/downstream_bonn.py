"""Downstream check: does seizure detection survive the codec? (Bonn epilepsy data, sets A-E)

Each Bonn segment (4097 samples at 173.61 Hz, one channel) is written as a one-record EDF and coded with
`eegz compress` at 3, 6 and 9 codebooks through the real container. Features: log band powers (delta,
theta, alpha, beta, gamma; Welch) and line length. A fixed classifier (standardized logistic regression)
is trained on the originals of files 001-050 (set E = seizure against A-D) and tested on files 051-070,
on the originals and on their reconstructions. Writes benchmarks/results/downstream_bonn.{json,md}.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the benchmarks package; eegz is the installed one

from eegz import api  # noqa: E402
from eegz.edf import read_edf  # noqa: E402
from eegz.metrics import BANDS  # noqa: E402

DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
MODEL = os.environ.get("EEGZ_BENCH_MODEL")  # a .npz to benchmark instead of the default model
TAG = os.environ.get("EEGZ_BENCH_TAG", "downstream_bonn")
RATE = 173.61
SETS = {"A_Z": 0, "B_O": 0, "C_N": 0, "D_F": 0, "E_S": 1}


def bonn_edf(samples: np.ndarray, path: Path) -> None:
    """A minimal EDF: one signal, one record holding the whole segment, digital = the Bonn integers."""
    n = len(samples)
    duration = n / RATE
    fields = [("0", 8), ("bonn", 80), ("bonn segment", 80), ("01.01.01", 8), ("00.00.00", 8), (str(512), 8),
              ("", 44), ("1", 8), (f"{duration:.6f}"[:8], 8), ("1", 4)]
    header = "".join(v.ljust(w)[:w] for v, w in fields)
    sig = [("EEG", 16), ("", 80), ("uV", 8), ("-2048", 8), ("2047", 8), ("-2048", 8), ("2047", 8), ("", 80),
           (str(n), 8), ("", 32)]
    header += "".join(v.ljust(w)[:w] for v, w in sig)
    path.write_bytes(header.encode("ascii") + np.clip(samples, -2048, 2047).astype("<i2").tobytes())


def features(x: np.ndarray) -> np.ndarray:
    from scipy.signal import welch
    f, p = welch(x - x.mean(), fs=RATE, nperseg=512)
    powers = [np.log(p[(f >= lo) & (f < hi)].sum() + 1e-9) for lo, hi in BANDS.values()]
    return np.array(powers + [np.log(np.abs(np.diff(x)).mean() + 1e-9)])


def load() -> dict:
    segs = {}
    for folder, label in SETS.items():
        for f in sorted(p for p in (DATA / "bonn" / folder).iterdir() if p.suffix.lower() == ".txt"):
            num = int("".join(ch for ch in f.stem if ch.isdigit()))
            if 1 <= num <= 70:
                segs[(folder, num)] = (np.loadtxt(f).astype(np.int64), label)
    return segs


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    segs = load()
    train = [k for k in segs if k[1] <= 50]
    test = [k for k in segs if k[1] > 50]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=1.0))
    clf.fit(np.stack([features(segs[k][0].astype(float)) for k in train]), [segs[k][1] for k in train])
    y_test = np.array([segs[k][1] for k in test])
    results = {"original": float((clf.predict(np.stack([features(segs[k][0].astype(float)) for k in test]))
                                  == y_test).mean())}
    prdn = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in (3, 6, 9):
            feats, errs = [], []
            for k in test:
                bonn_edf(segs[k][0], tmp / "s.edf")
                api.compress(tmp / "s.edf", tmp / "s.eegz", codebooks=n, device="cpu", force=True, model=MODEL)
                api.decompress(tmp / "s.eegz", tmp / "r.edf", device="cpu", force=True, model=MODEL)
                y = read_edf(tmp / "r.edf").digital[0].astype(float)
                x = segs[k][0].astype(float)
                feats.append(features(y))
                errs.append(np.linalg.norm(x - y) / np.linalg.norm(x - x.mean()))
            results[f"{n} codebooks"] = float((clf.predict(np.stack(feats)) == y_test).mean())
            prdn[f"{n} codebooks"] = float(100 * np.mean(errs))
            print(n, results[f"{n} codebooks"], prdn[f"{n} codebooks"], file=sys.stderr, flush=True)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"date": str(date.today()), "machine": platform.platform(), "train": len(train), "test": len(test),
            "accuracy": results, "mean_prdn_percent": prdn}
    (out / f"{TAG}.json").write_text(json.dumps(meta, indent=1))
    lines = [f"# Downstream: Bonn seizure (E) against non-seizure (A-D) ({date.today()}, {platform.machine()}, "
             f"{os.cpu_count()} cores)", "",
             f"Logistic regression on log band powers + line length, trained on the originals of files 001-050 "
             f"({len(train)} segments), tested on files 051-070 ({len(test)} segments).", "",
             "| test input | accuracy | mean PRDN % |", "|---|---|---|"]
    for name, acc in results.items():
        lines.append(f"| {name} | {acc:.3f} | {prdn.get(name, 0.0):.1f} |")
    (out / f"{TAG}.md").write_text("\n".join(lines) + "\n")
    print((out / f"{TAG}.md").read_text())


if __name__ == "__main__":
    main()
