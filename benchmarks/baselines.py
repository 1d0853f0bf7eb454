"""The neural codec against classical lossy coding at the same bits per second per channel.

For each held-out eegmat recording (Subject14-17, never seen in training) and 3, 6 and 9 codebooks:
the neural codec's real file gives the budget B (bits per second per EEG channel, side information
included); two baselines then code every EEG channel within B, every bit counted:
  * DCT: 4-s windows, a dead-zone uniform quantizer with one step per channel (bisection to meet B),
    positions of the nonzero coefficients charged log2 C(N, k) bits a window, values coded with eegz's
    own entropy coder, plus 32 bits a channel for the step;
  * down-sampling + 8-bit quantization: polyphase decimation to B/8 - side samples per second, 8 bits a
    sample with a per-window min/max (2 × 16 bits every 4 s), linear reconstruction.
PRDN (offset-free) over all EEG channels, at the channel's own rate. Writes benchmarks/results/baselines.*.
"""
from __future__ import annotations

import json
import math
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
from eegz.channels import NEURAL, channel_roles  # noqa: E402
from eegz.dsp import resample  # noqa: E402
from eegz.edf import read_edf  # noqa: E402
from eegz import _core  # noqa: E402

DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
MODEL = os.environ.get("EEGZ_BENCH_MODEL")  # a .npz to benchmark instead of the default model
TAG = os.environ.get("EEGZ_BENCH_TAG", "baselines")
HELD_OUT = [f"Subject{n}_2.edf" for n in (14, 15, 16, 17)]  # 62 s each; the _1 files (182 s) add time, not insight
WINDOW_S = 4.0


def _log2_binom(n: int, k: int) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)


def dct_code(x: np.ndarray, rate: float, budget_bits: float) -> np.ndarray:
    from scipy.fft import dct, idct
    n = int(WINDOW_S * rate)
    pad = (-len(x)) % n
    mean = x.mean()
    frames = np.concatenate([x - mean, np.zeros(pad)]).reshape(-1, n)
    coefs = dct(frames, norm="ortho", axis=1)

    def cost_and_recon(step):
        q = np.round(coefs / step).astype(np.int64)
        nz = q != 0
        bits = 32 + 32 + sum(_log2_binom(n, int(k)) for k in nz.sum(axis=1))
        values = q[nz]
        if len(values):  # eegz's residual coder, its best shape family, as the exact layer would pick it
            family = int(np.argmin(_core.residual_costs(np.ascontiguousarray(values, np.int64))))
            bits += 8 * len(_core.encode_residuals(np.ascontiguousarray(values, np.int64), family, 0))
        return bits, q

    lo, hi = 1e-6, float(np.abs(coefs).max() * 2 + 1e-6)
    for _ in range(40):  # bisection on the log step for the largest quality within budget
        mid = math.sqrt(lo * hi)
        bits, _ = cost_and_recon(mid)
        lo, hi = (mid, hi) if bits > budget_bits else (lo, mid)  # lo: over budget, hi: within
        if hi / lo < 1.01:
            break
    _, q = cost_and_recon(hi)
    return idct(q * hi, norm="ortho", axis=1).reshape(-1)[:len(x)] + mean


def downsample_code(x: np.ndarray, rate: float, budget_bits: float) -> np.ndarray:
    duration = len(x) / rate
    side = 32 * math.ceil(duration / WINDOW_S)
    target = max((budget_bits - side) / 8 / duration, 0.5)
    low = resample(x, rate, target)
    per = max(1, int(WINDOW_S * target))
    out = np.empty_like(low)
    for s in range(0, len(low), per):
        w = low[s:s + per]
        lo, hi = float(np.float16(w.min())), float(np.float16(w.max()))
        step = (hi - lo) / 255 if hi > lo else 1.0
        out[s:s + per] = lo + np.clip(np.round((w - lo) / step), 0, 255) * step
    y = resample(out, target, rate)
    return np.resize(y, len(x)) if len(y) != len(x) else y


def prdn_all(xs, ys) -> float:
    err = sum(np.sum((x - y) ** 2) for x, y in zip(xs, ys))
    ref = sum(np.sum((x - x.mean()) ** 2) for x in xs)
    return float(100 * np.sqrt(err / ref))


def main() -> None:
    rows = []
    files = [DATA / "eegmat" / f for f in HELD_OUT if (DATA / "eegmat" / f).exists()]
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            rec = read_edf(f)
            idx = [i for i, r in enumerate(channel_roles(rec.header.signals)) if r == NEURAL]
            xs = [rec.header.signals[i].to_physical(rec.digital[i]) for i in idx]
            for n in (3, 6, 9):
                out = Path(tmp) / "x.eegz"
                summary = api.compress(f, out, codebooks=n, device="cpu", force=True, model=MODEL)
                api.decompress(out, Path(tmp) / "x.edf", device="cpu", force=True, model=MODEL)
                dec = read_edf(Path(tmp) / "x.edf")
                ys = [rec.header.signals[i].to_physical(dec.digital[i]) for i in idx]
                bps = summary["bits_per_second_per_channel"]
                budget = bps * rec.duration
                rates = [rec.header.signals[i].sample_rate for i in idx]
                row = {"file": f.name, "codebooks": n, "bits_per_second_per_channel": bps,
                       "neural_prdn": prdn_all(xs, ys),
                       "dct_prdn": prdn_all(xs, [dct_code(x, r, budget) for x, r in zip(xs, rates)]),
                       "downsample_prdn": prdn_all(xs, [downsample_code(x, r, budget) for x, r in zip(xs, rates)])}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{TAG}.json").write_text(json.dumps({"date": str(date.today()), "machine": platform.platform(),
                                                        "rows": rows}, indent=1))
    lines = [f"# Neural codec against classical coding at equal bitrate ({date.today()}, {platform.machine()}, "
             f"{os.cpu_count()} cores)", "",
             "Held-out eegmat recordings (Subject14-17), EEG channels, PRDN % (lower is better); the budget is "
             "the neural file's own bits per second per channel, side information included.", "",
             "| codebooks | bit/s/ch | neural PRDN | DCT top-k PRDN | downsample+8 bit PRDN | neural / DCT |",
             "|---|---|---|---|---|---|"]
    for n in (3, 6, 9):
        sel = [r for r in rows if r["codebooks"] == n]
        if not sel:
            continue
        m = {k: float(np.mean([r[k] for r in sel])) for k in sel[0] if k not in ("file", "codebooks")}
        lines.append(f"| {n} | {m['bits_per_second_per_channel']:.0f} | {m['neural_prdn']:.1f} | {m['dct_prdn']:.1f} | "
                     f"{m['downsample_prdn']:.1f} | {m['neural_prdn'] / m['dct_prdn']:.2f} |")
    (results / f"{TAG}.md").write_text("\n".join(lines) + "\n")
    print((results / f"{TAG}.md").read_text())


if __name__ == "__main__":
    main()
