"""Invented lines and high-gamma power on single channels of held-out eegmat, one format against another, over
noise draws.

The line measure of issue 11 (metrics.line_ratio_psd: a decoded bin's prominence over its neighbours, divided by
the original's) on each EEG channel of eegmat Subject14-17, both runs (168 channels; 62-s task and 182-s rest
recordings at 500 Hz, never trained on). Each recording is compressed with the default model as each format of
EEGZ_BENCH_FORMATS (default 14,15; WHAT says what each adds) at 3, 6 and 9 codebooks and decoded with the band envelope's seed shifted by
k x 7919 for draw k = 0 .. DRAWS-1 (draw 0 is the file's own noise). Per format and codebook count: the worst
channel's strongest line, how many channels stand above 1.5x and 2x, the median channel, the mean PRDN over
channels, alpha's and beta's relative power error over each recording (mean over channels), and high gamma's
(70-250 Hz; mean and worst channel) and its 90th percentile over 0.5-s windows (mean over channels), each as the
mean over draws. Beside them, the chance reference of lossy_benchmark.py: each 16-s block of
each channel with its spectrum kept exactly and the phases above 30 Hz drawn at random (seed k): what the measure
reads for a coder that carries the spectrum, not the waveform, above beta.

Usage: python benchmarks/channel_lines.py [DATA_DIR]; EEGZ_BENCH_DRAWS (default 3), EEGZ_BENCH_FORMATS; EEGZ_BENCH_MODEL
(a model file instead of the default) with EEGZ_BENCH_TAG (appended to the results' names).
Writes benchmarks/results/channel_lines.{json,md} for formats 13,14, else channel_lines_<formats>.{json,md}.
EEGZ_BENCH_CODEC=transform measures mode transform instead, at the bits per second the neural codec spends at 3, 6
and 9 codebooks (results/lossy.json), into channel_lines_transform_<formats>.{json,md}.
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

from benchmarks.clinical_references import spectrum_only  # noqa: E402
from benchmarks.lossy_benchmark import neural_bits  # noqa: E402
from benchmarks.noise_draws import SEED_STEP  # noqa: E402
from eegz import api, encode, lossy, transform  # noqa: E402
from eegz.channels import NEURAL, channel_roles  # noqa: E402
from eegz.edf import read_edf  # noqa: E402
from eegz.metrics import (WINDOW_OFFSET_SECONDS, band_power_errors, line_ratio_psd, prdn, welch_psd,  # noqa: E402
                          window_band_errors)

DRAWS = int(os.environ.get("EEGZ_BENCH_DRAWS", "3"))
FORMATS = tuple(int(v) for v in os.environ.get("EEGZ_BENCH_FORMATS", "14,15").split(","))
CODEC = os.environ.get("EEGZ_BENCH_CODEC", "neural")
MODEL = os.environ.get("EEGZ_BENCH_MODEL")  # a model file to measure instead of the default
MODEL_TAG = os.environ.get("EEGZ_BENCH_TAG", "")  # what the results' names carry for it
TAG = ("channel_lines" if FORMATS == (13, 14) and CODEC == "neural" else
       "channel_lines_" + ("transform_" if CODEC == "transform" else "") + "_".join(map(str, FORMATS))) \
    + (f"_{MODEL_TAG}" if MODEL_TAG else "")
WHAT = {14: "Format 14 adds constant runs (spec 6.7), the blended normalization at block seams and the line padding of a "
            "recording's ends (6.1) and exact filling (6.4).",
        15: "Format 15 pulls a decoded swing past the digital range back smoothly before clipping it (spec 6.1, 8's rail "
            "limiter); its tokens are format 14's.",
        16: "Format 16 shapes each block's 30-70 Hz part in time by its stored profile (spec 6.8); its tokens are format "
            "15's.",
        17: "Format 17 scales and fills the band envelope's parts, and rescales the profile's, 0.25 Hz at a time instead "
            "of 0.5 Hz (spec 6.4, 6.8); its streams are format 16's.",
        18: "Format 18 splits the band envelope's [64, 74) at 70 Hz (spec 6.4), adds the slow-band ceiling (6.9) and "
            "pins the decoded samples beside each constant run to the original's (6.7); its codes are format 17's.",
        11: "Format 11 is what eegz 0.10-0.19 wrote for transform files.",
        19: "Format 19 gives the transform streams format 18's envelope bands (spec 8.2: [64, 74) split at 70 Hz, 1-Hz "
            "bands from 52 to 58 Hz) and the original samples beside each constant run, to which the decoder pins its "
            "own (8.4).",
        20: "Format 20 applies the band envelope above 64 Hz to each block with its decoded context and carries each "
            "band's scaling there into the block's faded ends (spec 6.4, Context and seams); its streams are format "
            "18's.",
        21: "Format 21 shapes each block's band from 70 Hz up in time by a second stored profile (spec 6.8, High band).",
        22: "Format 22 fills the envelope's skirt below 30 Hz only up to a floor, the first band's density faded out "
            "(spec 6.4, Skirt's floor); its streams are format 21's.",
        23: "Format 23 caps the high band's short bursts within each of its profile's parts at 1.4x the part's RMS "
            "before the rescaling (spec 6.8, Burst cap); its streams are format 21's.",
        24: "Format 24 repeats the high band's shaping and rescaling three times, each on the last one's result (spec "
            "6.8, Rounds); its streams are format 21's."}
CODEBOOKS = (3, 6, 9)
RECORDINGS = [f"Subject{n}_{run}.edf" for n in (14, 15, 16, 17) for run in (1, 2)]


def channel_lines(source: Path, coded: Path, folder: Path) -> tuple[list[float], list[float], list[tuple]]:
    """(each EEG channel's strongest invented line, its PRDN, its band errors (high gamma over the recording and at
    the 0.5-s windows' 90th percentile, alpha and beta over the recording)) of one decode."""
    api.decompress(coded, folder / "d.edf", device="cpu", force=True, model=MODEL)
    original, decoded = read_edf(source), read_edf(folder / "d.edf")
    lines, errors, fast = [], [], []
    for s, role in zip(original.header.signals, channel_roles(original.header.signals)):
        if role != NEURAL:
            continue
        x, y = original.digital[s.index].astype(np.float64), decoded.digital[s.index].astype(np.float64)
        lines.append(line_ratio_psd(welch_psd(x, s.sample_rate), welch_psd(y, s.sample_rate), s.sample_rate)[0])
        errors.append(prdn(x, y))
        bands = band_power_errors(x, y, s.sample_rate)
        fast.append((bands["high_gamma"], window_band_errors(x, y, s.sample_rate)["high_gamma"]["p90"],
                     bands["alpha"], bands["beta"],
                     window_band_errors(x, y, s.sample_rate, offset=WINDOW_OFFSET_SECONDS)["high_gamma"]["p90"]))
    return lines, errors, fast


def chance_lines(source: Path, rng: np.random.Generator, edge_hz: float = 30.0, block_s: float = 16.0) -> list[float]:
    """Each EEG channel's strongest line for the chance reference (clinical_references.spectrum_only)."""
    original = read_edf(source)
    lines = []
    for s, role in zip(original.header.signals, channel_roles(original.header.signals)):
        if role != NEURAL:
            continue
        x = original.digital[s.index].astype(np.float64)
        y = spectrum_only(x, s.sample_rate, rng, edge_hz, block_s)
        lines.append(line_ratio_psd(welch_psd(x, s.sample_rate), welch_psd(y, s.sample_rate), s.sample_rate)[0])
    return lines


def summary(lines: list[float], errors: list[float], fast: list[tuple] = ()) -> dict:
    r = np.array(lines)
    whole, windows = (np.array([v[0] for v in fast]), np.array([v[1] for v in fast])) if fast else (None, None)
    return {"worst": float(r.max()), "above_1_5": int((r > 1.5).sum()), "above_2": int((r > 2.0).sum()),
            "median": float(np.median(r)), "prdn": float(np.mean(errors)) if errors else None, "channels": len(r),
            "high_gamma": float(whole.mean()) if fast else None, "high_gamma_worst": float(whole.max()) if fast else None,
            "high_gamma_p90": float(windows.mean()) if fast else None,
            "alpha": float(np.mean([v[2] for v in fast])) if fast else None,
            "beta": float(np.mean([v[3] for v in fast])) if fast else None,
            "high_gamma_p90_offset": float(np.mean([v[4] for v in fast])) if fast else None}


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    own_version, own_seed = encode.format_version, lossy.seed_of
    bits = neural_bits() if CODEC == "transform" else {}
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for version in FORMATS:
                encode.format_version = lambda *args, v=version: v
                for n in CODEBOOKS:
                    for name in RECORDINGS:
                        lossy.seed_of = transform.seed_of = own_seed
                        if CODEC == "transform":  # at the neural codec's bits for n codebooks
                            api.compress(data / "eegmat" / name, folder / f"{name}.eegz", mode="transform",
                                         bitrate=bits[n], force=True)
                        else:
                            api.compress(data / "eegmat" / name, folder / f"{name}.eegz", codebooks=n, device="cpu",
                                         force=True, model=MODEL)
                    draws = []
                    for k in range(DRAWS):
                        lossy.seed_of = transform.seed_of = lambda *args, s=k * SEED_STEP: (own_seed(*args) + s) % 2 ** 64
                        lines, errors, fast = [], [], []
                        for name in RECORDINGS:
                            l, e, g = channel_lines(data / "eegmat" / name, folder / f"{name}.eegz", folder)
                            lines += l
                            errors += e
                            fast += g
                        draws.append(summary(lines, errors, fast))
                        print(version, n, k, draws[-1], file=sys.stderr, flush=True)
                    results.append({"format": version, "codebooks": n, "draws": draws, "bitrate": bits.get(n)})
    finally:
        encode.format_version, lossy.seed_of, transform.seed_of = own_version, own_seed, own_seed
    draws = [summary([v for name in RECORDINGS for v in chance_lines(data / "eegmat" / name, np.random.default_rng(k))], [])
             for k in range(DRAWS)]
    results.append({"format": "chance", "codebooks": None, "draws": draws})
    write(results)


def write(results: list) -> None:
    out = ROOT / "benchmarks" / "results"
    (out / f"{TAG}.json").write_text(json.dumps({"date": str(date.today()), "draws": DRAWS, "codec": CODEC,
                                                         "results": results}, indent=1) + "\n")
    coder = ("mode transform at the neural codec's bits per second for 3 / 6 / 9 codebooks (" + " / ".join(
        f"{r['bitrate']:.0f}" for r in results[:3]) + " bit/s; the codebooks column names those bits)"
             if CODEC == "transform" else f"model {Path(MODEL).name}" if MODEL else "default model")
    lines = [f"# Invented lines and high gamma on single channels of held-out eegmat, "
             f"{'transform ' if CODEC == 'transform' else ''}format {' against '.join(map(str, FORMATS))} "
             f"({date.today()})", "",
             f"eegmat Subject14-17, both runs ({results[0]['draws'][0]['channels']} EEG channels at 500 Hz), {coder}; "
             f"the strongest invented line of each channel (metrics.line_ratio_psd; goal <= 1.5x), means over "
             f"{DRAWS} draws of the band envelope's noise. " + " ".join(WHAT[v] for v in FORMATS if v in WHAT)
             + " Last row: a reference that keeps each 16-s block's spectrum exactly and draws the phases above 30 Hz at "
             "random (what the measure reads for a coder that carries the spectrum, not the waveform, above beta). "
             "Alpha, beta: the relative power error over each recording (metrics.band_power_errors, mean over channels); "
             "high gamma: the relative 70-250 Hz power error over each recording (mean over channels and the worst "
             "channel) and its 90th percentile over 0.5-s windows (metrics.window_band_errors; mean over channels), the "
             "windows from the recording's start (each one part of the codec's time profiles, seams at their tapered ends) "
             "and from 0.25 s (offset: across two parts, centred on the seams); goals <= 0.10 and <= 0.20. "
             "benchmarks/channel_lines.py.", "",
             "| format | codebooks | worst channel | channels above 1.5x | above 2x | median channel | PRDN % | alpha | "
             "beta | high gamma: recording, mean / worst | 0.5-s p90 | offset |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        mean = {key: np.mean([d[key] for d in r["draws"]]) for key in ("worst", "above_1_5", "above_2", "median")}
        prdn_cell = f"{np.mean([d['prdn'] for d in r['draws']]):.2f}" if r["draws"][0]["prdn"] is not None else "-"
        fast = {key: np.mean([d[key] for d in r["draws"]]) if r["draws"][0].get(key) is not None else None
                for key in ("high_gamma", "high_gamma_worst", "high_gamma_p90", "alpha", "beta", "high_gamma_p90_offset")}
        fast_cells = (f"{fast['alpha']:.3f} | {fast['beta']:.3f} | {fast['high_gamma']:.3f} / "
                      f"{fast['high_gamma_worst']:.2f} | {fast['high_gamma_p90']:.2f} | "
                      + (f"{fast['high_gamma_p90_offset']:.2f}" if fast["high_gamma_p90_offset"] is not None else "-")
                      if fast["high_gamma"] is not None else "- | - | - | - | -")
        name = "chance: spectrum kept, phases above 30 Hz random" if r["format"] == "chance" else r["format"]
        lines.append(f"| {name} | {r['codebooks'] or '-'} | {mean['worst']:.2f} | {mean['above_1_5']:.1f} | "
                     f"{mean['above_2']:.1f} | {mean['median']:.2f} | {prdn_cell} | {fast_cells} |")
    (out / f"{TAG}.md").write_text("\n".join(lines) + "\n")
    print((out / f"{TAG}.md").read_text())


if __name__ == "__main__":
    main()
