"""The neural codec against classical lossy coding at the same bits per second per channel.

For each held-out eegmat recording (Subject14-17, never seen in training) and 3, 6 and 9 codebooks:
the neural codec's real file gives the budget B (bits per second per EEG channel, side information
included); eegz's transform mode codes the file at B (with its band envelope, without it, and with the
envelope but each channel coded apart, --no-channel-rotation), and the
baselines code every EEG channel within B, every bit counted:
  * DCT: 4-s windows, a dead-zone uniform quantizer with one step per channel (bisection to meet B),
    positions of the nonzero coefficients charged log2 C(N, k) bits a window, values coded with eegz's
    own entropy coder, plus 32 bits a channel for the step;
  * adaptive DCT: the same windows and one step per channel, but coded as audio codecs code a spectrum:
    a scale per 4-Hz band and window, the coefficients ANS-coded under a Laplacian of that scale (real
    bits: the words are decoded back and checked). Stronger than the DCT top-k reference, which stays
    as it was so that numbers compare across versions;
  * Gaussian water-filling (not a coder): the PRDN an ideal transform coder would reach if each 16-s block
    were a Gaussian process with its measured spectrum, the spectrum free (the scale of what is possible);
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
from eegz.metrics import prdn_pooled  # noqa: E402
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

    hi = _finest_step(lambda step: cost_and_recon(step)[0], coefs, budget_bits)
    _, q = cost_and_recon(hi)
    return idct(q * hi, norm="ortho", axis=1).reshape(-1)[:len(x)] + mean


def _finest_step(bits_at, coefs: np.ndarray, budget_bits: float) -> float:
    """The finest step whose bits_at(step) stays within budget: bisection on the log step, to 1 %."""
    lo, hi = 1e-6, float(np.abs(coefs).max() * 2 + 1e-6)
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if bits_at(mid) > budget_bits else (lo, mid)  # lo: over budget, hi: within
        if hi / lo < 1.01:
            break
    return hi


BAND_HZ = 4.0  # the adaptive coder's bands: one Laplacian scale per 4 Hz and window (2 Hz: +1-1.5 PRDN points, 1 Hz: +3-4)
VALUE_RANGE = 1 << 20  # quantized coefficients stay far inside this
SIDE_GAMMA = 0.1  # a scale change is usually 0 and sometimes large: a Cauchy, not a Laplacian


def _scale_indices(q: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Per window and band: 0 if every quantized coefficient is 0, else round(2 log2 RMS) + 5 in 1..31."""
    out = np.zeros((q.shape[0], band.max() + 1), np.int32)
    for b in range(band.max() + 1):
        qb = q[:, band == b]
        rms = np.sqrt((qb.astype(np.float64) ** 2).mean(axis=1))
        live = rms > 0
        out[live, b] = np.clip(np.round(2 * np.log2(rms[live]) + 5), 1, 31)
    return out


def adaptive_dct_code(x: np.ndarray, rate: float, budget_bits: float) -> tuple[np.ndarray, float]:
    """A transform coder as audio codecs build one: DCT of 4-s windows, one uniform step per channel, each
    window's 4-Hz bands sent as a scale (0.5-log2 steps, coded as the change from the previous window's),
    the coefficients ANS-coded (constriction) under a quantized Laplacian of their band's scale; bands
    scaled 0 cost nothing more. Returns the decoded signal and the bits it really took."""
    import constriction
    from scipy.fft import dct, idct
    n = int(WINDOW_S * rate)
    mean = x.mean()
    frames = np.concatenate([x - mean, np.zeros((-len(x)) % n)]).reshape(-1, n)
    coefs = dct(frames, norm="ortho", axis=1)
    band = (np.arange(n) * rate / (2 * n) // BAND_HZ).astype(np.int64)
    side_model = constriction.stream.model.QuantizedCauchy(-32, 32, 0.0, SIDE_GAMMA)
    value_model = constriction.stream.model.QuantizedLaplace(-VALUE_RANGE, VALUE_RANGE)

    def cost_and_recon(step):
        q = np.clip(np.round(coefs / step), -VALUE_RANGE, VALUE_RANGE).astype(np.int32)
        scales = _scale_indices(q, band)
        coder = constriction.stream.stack.AnsCoder()
        per_coef = scales[:, band]  # each coefficient's band scale index
        live = per_coef > 0
        b = 2.0 ** ((per_coef[live] - 5) / 2) / np.sqrt(2)
        coder.encode_reverse(q[live], value_model, np.zeros(int(live.sum())), b)
        changes = np.diff(scales, axis=0, prepend=0).reshape(-1).astype(np.int32)
        coder.encode_reverse(changes, side_model)
        return 64 + coder.num_bits(), q, coder

    def decode(coder):  # what a decoder does with the words: the scales first, then the values they govern
        scales = np.cumsum(coder.decode(side_model, coefs.shape[0] * (band.max() + 1)).reshape(coefs.shape[0], -1), axis=0)
        per_coef = scales[:, band]
        live = per_coef > 0
        q = np.zeros(coefs.shape, np.int32)
        q[live] = coder.decode(value_model, np.zeros(int(live.sum())), 2.0 ** ((per_coef[live] - 5) / 2) / np.sqrt(2))
        return q

    hi = _finest_step(lambda step: cost_and_recon(step)[0], coefs, budget_bits)
    bits, q, coder = cost_and_recon(hi)
    assert np.array_equal(decode(coder), q), "the adaptive coder's words do not decode to its coefficients"
    return idct(q * hi, norm="ortho", axis=1).reshape(-1)[:len(x)] + mean, float(bits)


def gaussian_prdn(x: np.ndarray, rate: float, budget_bits: float) -> float:
    """The PRDN (%) that reverse water-filling reaches within the budget if each 16-s block of x were a
    Gaussian process with its measured spectrum (Welch, 2-s segments) and that spectrum came free: what an
    ideal transform coder could do. Not a bound for EEG (not Gaussian), but the scale of what is possible."""
    from scipy.signal import welch
    n = int(16 * rate)
    blocks = [x[s:s + n] for s in range(0, len(x) - n + 1, n)] or [x]
    spectra = [welch(b - b.mean(), rate, nperseg=min(len(b), int(2 * rate))) for b in blocks]
    df = spectra[0][0][1] - spectra[0][0][0]
    seconds = np.concatenate([np.full(len(p), len(b) / rate) for b, (_, p) in zip(blocks, spectra)])
    var = np.concatenate([p for _, p in spectra]) / 2 + 1e-30  # per real dimension; 2 df dimensions a second
    power = float(np.sum(2 * df * seconds * var))
    lo, hi = var.max() * 1e-12, var.max()
    for _ in range(100):  # the water level that spends the budget
        level = math.sqrt(lo * hi)
        bits = np.sum(2 * df * seconds * np.maximum(0.0, 0.5 * np.log2(var / level)))
        lo, hi = (level, hi) if bits > budget_bits * sum(len(b) for b in blocks) / len(x) else (lo, level)
    return float(100 * np.sqrt(np.sum(2 * df * seconds * np.minimum(var, hi)) / power))


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


def pooled(prdns: list[float], xs) -> float:
    """Per-channel PRDNs pooled as prdn_pooled pools errors: over all channels' energy."""
    ref = [np.sum((x - x.mean()) ** 2) for x in xs]
    return float(np.sqrt(sum((p / 100) ** 2 * r for p, r in zip(prdns, ref)) / sum(ref)) * 100)


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
                transform = {}
                for envelope, rotate in ((True, True), (False, True), (True, False)):  # eegz's transform mode
                    api.compress(f, out, mode="transform", bitrate=bps, band_envelope=envelope, rotate_channels=rotate,
                                 force=True)
                    api.decompress(out, Path(tmp) / "t.edf", force=True)
                    t = read_edf(Path(tmp) / "t.edf")
                    transform[envelope, rotate] = prdn_pooled(xs, [rec.header.signals[i].to_physical(t.digital[i])
                                                                for i in idx])
                rates = [rec.header.signals[i].sample_rate for i in idx]
                row = {"file": f.name, "codebooks": n, "bits_per_second_per_channel": bps,
                       "neural_prdn": prdn_pooled(xs, ys),
                       "transform_prdn": transform[True, True], "transform_plain_prdn": transform[False, True],
                       "transform_apart_prdn": transform[True, False],
                       "dct_prdn": prdn_pooled(xs, [dct_code(x, r, budget) for x, r in zip(xs, rates)]),
                       "adaptive_dct_prdn": prdn_pooled(xs, [adaptive_dct_code(x, r, budget)[0] for x, r in zip(xs, rates)]),
                       "gaussian_prdn": pooled([gaussian_prdn(x, r, budget) for x, r in zip(xs, rates)], xs),
                       "downsample_prdn": prdn_pooled(xs, [downsample_code(x, r, budget) for x, r in zip(xs, rates)])}
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
             "The transform mode rotates each block's channels to their principal components (spec 8.1); "
             "'apart' codes each channel on its own (--no-channel-rotation, eegz 0.6). The references code each "
             "channel on its own.", "",
             "| codebooks | bit/s/ch | neural PRDN | eegz transform PRDN (without envelope; apart) | DCT top-k PRDN "
             "| adaptive DCT PRDN | downsample+8 bit PRDN | Gaussian water-filling PRDN | neural / DCT | transform / DCT |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for n in (3, 6, 9):
        sel = [r for r in rows if r["codebooks"] == n]
        if not sel:
            continue
        m = {k: float(np.mean([r[k] for r in sel])) for k in sel[0] if k not in ("file", "codebooks")}
        lines.append(f"| {n} | {m['bits_per_second_per_channel']:.0f} | {m['neural_prdn']:.1f} | "
                     f"{m['transform_prdn']:.1f} ({m['transform_plain_prdn']:.1f}; {m['transform_apart_prdn']:.1f}) | "
                     f"{m['dct_prdn']:.1f} | "
                     f"{m['adaptive_dct_prdn']:.1f} | {m['downsample_prdn']:.1f} | {m['gaussian_prdn']:.1f} | "
                     f"{m['neural_prdn'] / m['dct_prdn']:.2f} | {m['transform_prdn'] / m['dct_prdn']:.2f} |")
    (results / f"{TAG}.md").write_text("\n".join(lines) + "\n")
    print((results / f"{TAG}.md").read_text())


if __name__ == "__main__":
    main()
