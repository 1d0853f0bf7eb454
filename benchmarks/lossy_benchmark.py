"""Neural (lossy) benchmark: size and fidelity at 3, 6 and 9 codebooks, and coding speed.

On the bundled example and on held-out eegmat subjects (Subject14-17, task recordings, never seen in training) it
compresses with the shipped model, decodes, and reports ratio against the EDF bytes, bits per second per
EEG channel (all side information included), PRD/PRDN/SNR/correlation over the EEG channels, and encode
and decode speed as multiples of real time for the whole recording (all channels).
Writes benchmarks/results/lossy.{json,md}. Usage: python benchmarks/lossy_benchmark.py [DATA_DIR]
EEGZ_BENCH_CODEC=transform measures mode transform instead, at the bits per second the neural codec spends
at 3, 6 and 9 codebooks on the held-out recordings (from results/lossy.json), into results/lossy_transform.*.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the benchmarks package; eegz is the installed one

from eegz import api  # noqa: E402
from eegz.edf import read_edf  # noqa: E402
from benchmarks.clinical_references import spectrum_only  # noqa: E402
from eegz.channels import NEURAL, channel_roles  # noqa: E402
from eegz.dsp import microvolt_factor  # noqa: E402
from eegz.metrics import evaluate_arrays, evaluate_files  # noqa: E402
from eegz.neural import DEFAULT_MODEL  # noqa: E402

DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
MODEL = os.environ.get("EEGZ_BENCH_MODEL")  # a .npz to benchmark instead of the shipped model
CODEC = os.environ.get("EEGZ_BENCH_CODEC", "neural")
TAG = os.environ.get("EEGZ_BENCH_TAG", "lossy" if CODEC == "neural" else f"lossy_{CODEC}")
HELD_OUT = [f"Subject{n}_2.edf" for n in (14, 15, 16, 17)]  # 62 s each; the _1 files (182 s) add time, not insight


def neural_bits() -> dict[int, float]:
    """The neural codec's mean bits per second per channel at 3, 6 and 9 codebooks on the held-out files."""
    rows = json.loads((ROOT / "benchmarks" / "results" / "lossy.json").read_text())["rows"]
    return {n: sum(r["bits_per_second_per_channel"] for r in rows if r["codebooks"] == n and r["file"] in HELD_OUT)
            / sum(1 for r in rows if r["codebooks"] == n and r["file"] in HELD_OUT) for n in (3, 6, 9)}


def run(path: Path, n: int, tmp: Path) -> dict:
    out, back = tmp / "x.eegz", tmp / "x.edf"
    t0 = time.perf_counter()
    if CODEC == "transform":  # at the neural codec's bits for n codebooks
        summary = api.compress(path, out, mode="transform", bitrate=BITS[n], force=True)
    else:
        summary = api.compress(path, out, codebooks=n, device="cpu", force=True, model=MODEL)
    t1 = time.perf_counter()
    api.decompress(out, back, device="cpu", force=True, model=MODEL)
    t2 = time.perf_counter()
    metrics = evaluate_files(path, back, with_mel=False)["overall"]
    return {"file": path.name, "codebooks": n, "ratio": summary["compression_ratio"],
            "bits_per_second_per_channel": summary["bits_per_second_per_channel"],
            "duration_s": summary["duration_s"], "encode_s": t1 - t0, "decode_s": t2 - t1,
            "prd": metrics["prd"], "prdn": metrics["prdn"], "snr_db": metrics["snr_db"],
            "correlation": metrics["correlation"], "gamma_error": metrics["band_power_error"].get("gamma"),
            "high_gamma_error": metrics["band_power_error"].get("high_gamma"),
            "gamma_window_median": metrics["window_band_error"].get("gamma", {}).get("median"),
            "line_ratio": metrics["spectral_line"]["ratio"], "line_hz": metrics["spectral_line"]["hz"],
            "line_mean_ratio": metrics["spectral_line_mean"]["ratio"], "line_mean_hz": metrics["spectral_line_mean"]["hz"],
            **{f"ripples_{k}": v for k, v in metrics.get("ripples", {}).items()}}


def spectrum_only_lines(path: Path, edge_hz: float = 30.0, block_s: float = 16.0) -> dict:
    """The line measures of a reference that keeps each 16-s block's spectrum exactly but draws the phases
    above edge_hz at random (seed 0): what the measure reads on this recording for a coder that carries
    the spectrum, not the waveform, above beta (its chance level), on the worst channel and on the mean."""
    import numpy as np
    rng = np.random.default_rng(0)
    rec = read_edf(path)
    channels = []
    for s, role, x in zip(rec.header.signals, channel_roles(rec.header.signals), rec.digital):
        if role != NEURAL:
            continue
        x = s.to_physical(x)
        y = spectrum_only(x, s.sample_rate, rng, edge_hz, block_s)
        channels.append((s.label, s.sample_rate, microvolt_factor(s.physical_dimension) or 1.0, x, y))
    overall = evaluate_arrays(channels)["overall"]
    return {"chance_line_ratio": overall["spectral_line"]["ratio"],
            "chance_line_mean_ratio": overall["spectral_line_mean"]["ratio"],
            "chance_ripples_invented": overall.get("ripples", {}).get("invented")}


BITS = neural_bits() if CODEC == "transform" else {}


def ripple_rate(rows: list) -> str:
    """Invented ripple events per channel-minute over rows (and the chance reference's, in brackets)."""
    minutes = sum(r.get("ripples_minutes", 0.0) for r in rows)
    if not minutes:
        return "-"
    ours = sum(r["ripples_invented"] for r in rows) / minutes
    chance = sum(r.get("chance_ripples_invented") or 0 for r in rows) / minutes
    return f"{ours:.2f} ({chance:.2f})"


def main() -> None:
    files = [ROOT / "examples" / "eegmat_Subject17_2.edf"] + [DATA / "eegmat" / f for f in HELD_OUT
                                                              if (DATA / "eegmat" / f).exists()]
    if os.environ.get("EEGZ_BENCH_FILES"):
        files = files[:int(os.environ["EEGZ_BENCH_FILES"])]
    rows = []
    chance = {f: spectrum_only_lines(f) for f in files}
    with tempfile.TemporaryDirectory() as tmp:
        if CODEC == "neural":
            api.compress(files[0], Path(tmp) / "warm.eegz", codebooks=3, device="cpu", model=MODEL)  # warm-up
        for f in files:
            for n in (3, 6, 9):
                rows.append({**run(f, n, Path(tmp)), **chance[f]})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    card = Path(MODEL).with_suffix(".json") if MODEL else ROOT / "src" / "eegz" / "models" / f"{DEFAULT_MODEL}.json"
    model = json.loads(card.read_text())
    meta = {"date": str(date.today()), "machine": platform.platform(), "cores": os.cpu_count(),
            "model": model["name"], "model_steps": model["training"]["steps"], "rows": rows}
    (results / f"{TAG}.json").write_text(json.dumps(meta, indent=1))
    title = (f"Lossy (neural) benchmark ({meta['date']}, {platform.machine()}, {os.cpu_count()} cores, model "
             f"{meta['model']} after {meta['model_steps']} steps)" if CODEC == "neural" else
             f"Transform mode benchmark ({meta['date']}, {platform.machine()}, {os.cpu_count()} cores), at the neural "
             f"codec's bits per second for 3 / 6 / 9 codebooks: " + " / ".join(f"{BITS[n]:.0f}" for n in (3, 6, 9)))
    lines = [f"# {title}", "",
             "EEG channels only for PRD/PRDN/SNR/r (the ECG channel is stored exactly and counted in the size). "
             "Speed is measured on an idle machine in neural_speed.md (the timings in the .json were taken beside "
             "other work).", "",
             "Gamma: relative 30-70 Hz power error over the recording (and the median over 0.5-s windows); line: "
             "the strongest invented spectral line (metrics.line_ratio_psd, 1.0: none) on the worst channel and on "
             "the channels' mean spectrum; chance: the same two for a reference that keeps each 16-s block's "
             "spectrum exactly and draws the phases above 30 Hz at random (what the measure reads on this "
             "recording for a coder that carries the spectrum, not the waveform, above beta). Ripples: a plain "
             "80-250 Hz event detector (metrics.ripple_errors, its threshold set on the original): events the "
             "decoded signal invents and misses, and the original's count (the chance reference's invented "
             "events in brackets).", "",
             "| file | codebooks | ratio | bit/s/ch | PRD % | PRDN % | SNR dB | r | gamma | line: worst channel | "
             "channel mean | chance | ripples: invented / missed of original |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['file']} | {r['codebooks']} | {r['ratio']:.2f} | {r['bits_per_second_per_channel']:.0f} | "
                     f"{r['prd']:.1f} | {r['prdn']:.1f} | {r['snr_db']:.2f} | {r['correlation']:.3f} | "
                     f"{r['gamma_error']:.2f} ({r['gamma_window_median']:.2f}) | {r['line_ratio']:.2f} at "
                     f"{r['line_hz']:.0f} Hz | {r['line_mean_ratio']:.2f} at {r['line_mean_hz']:.0f} Hz | "
                     f"{r['chance_line_ratio']:.2f} / {r['chance_line_mean_ratio']:.2f} | "
                     f"{r.get('ripples_invented', '-')} ({r.get('chance_ripples_invented', '-')}) / "
                     f"{r.get('ripples_missed', '-')} of {r.get('ripples_original', '-')} |")
    held = [r for r in rows if r["file"] in HELD_OUT]
    if held:
        lines += ["", "Mean over the held-out eegmat recordings (Subject14-17):", "",
                  "| codebooks | ratio | bit/s/ch | PRDN % | SNR dB | r | gamma | line (max): worst channel | "
                  "channel mean | chance | invented ripples a channel-minute |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for n in (3, 6, 9):
            sel = [r for r in held if r["codebooks"] == n]
            mean = lambda k: sum(r[k] for r in sel) / len(sel)  # noqa: E731
            lines.append(f"| {n} | {mean('ratio'):.2f} | {mean('bits_per_second_per_channel'):.0f} | "
                         f"{mean('prdn'):.1f} | {mean('snr_db'):.2f} | {mean('correlation'):.3f} | "
                         f"{mean('gamma_error'):.2f} | {max(r['line_ratio'] for r in sel):.2f} | "
                         f"{max(r['line_mean_ratio'] for r in sel):.2f} | {max(r['chance_line_ratio'] for r in sel):.2f} / "
                         f"{max(r['chance_line_mean_ratio'] for r in sel):.2f} | {ripple_rate(sel)} |")
    (results / f"{TAG}.md").write_text("\n".join(lines) + "\n")
    print((results / f"{TAG}.md").read_text())


if __name__ == "__main__":
    main()
