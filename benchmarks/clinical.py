"""Clinical check that sees windows, not segments (issue 11): does a seizure detector decide the same on
decoded EEG as on the original, window by window? And are band powers, transients and the spectrum kept?

Bonn, all five sets (A, B: healthy, eyes open / closed; C, D: interictal; E: ictal). Each segment is coded
through the real container (a one-record EDF, as benchmarks/downstream_bonn.py writes it) and decoded.
The detector reads 1-s windows: log band powers (delta, theta, alpha, beta, gamma 30-70 Hz, high gamma
70-86 Hz), log line length, log amplitude range, log variance and the 95 % spectral edge; a random forest
(300 trees, seed 0, balanced classes) is trained on the original windows of segments 001-050 (E =
seizure against A-D) and applied to segments 051-070. Reported per set and codec setting: the share of
windows where the decision on the decoded signal equals the decision on the original (agreement), and
the share of decoded windows called seizure (on A and B: false seizures). Beside it, per set: PRDN, the
relative band-power error on 0.5-s windows (median and 90th percentile) and over whole segments,
transient amplitude error and the strongest invented spectral line in the set's mean spectrum.

A second detector reads the fine spectral texture, as the issue's independent one does: each segment
resampled to 200 Hz, 0.5-s windows, the log power of every 2-Hz bin from 0 to 100 Hz (Hann), standardized,
into a logistic regression (balanced classes), trained and applied like the first. The codec is tuned to
neither; agreement on both is what matters.

Usage: python benchmarks/clinical.py [DATA_DIR]; EEGZ_BENCH_MODELS="label=model name or path.npz,..." adds
models (default: the default DAC-SC; EEGZ_BENCH_DEFAULT=0 leaves it out); EEGZ_BENCH_TAG names the result files
(default clinical).
EEGZ_BENCH_CODEC=transform measures mode transform instead, at the bits per second the default model
spends at 3, 6 and 9 codebooks (from results/clinical.json), into results/clinical_transform.*;
EEGZ_BENCH_BITRATES="500,1000,..." at those bits per second instead (what the window goals cost).
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
sys.path.insert(0, str(ROOT))

from benchmarks.downstream_bonn import RATE, bonn_edf, load  # noqa: E402
from eegz import api  # noqa: E402
from eegz.edf import read_edf  # noqa: E402
from eegz.metrics import (WINDOW_OFFSET_SECONDS, band_power_errors, line_ratio_psd, prdn, transient_errors,  # noqa: E402
                          welch_psd, window_band_errors)

CODEC = os.environ.get("EEGZ_BENCH_CODEC", "neural")
BITRATES = [float(b) for b in filter(None, os.environ.get("EEGZ_BENCH_BITRATES", "").split(","))]
TAG = os.environ.get("EEGZ_BENCH_TAG", "clinical" if CODEC == "neural" else
                     f"clinical_{CODEC}" + ("_rates" if BITRATES else ""))
WINDOW = int(round(RATE))  # 1-s detector windows
DETECTOR_BANDS = {"delta": (0.5, 4), "theta": (4, 8), "alpha": (8, 13), "beta": (13, 30), "gamma": (30, 70),
                  "high_gamma": (70, 87)}
QUALITIES = (20.0, 25.0)  # --quality settings measured beside the fixed codebook counts
SET_NAMES = {"A_Z": "A", "B_O": "B", "C_N": "C", "D_F": "D", "E_S": "E"}


def window_features(x: np.ndarray) -> np.ndarray:
    """Detector features of each 1-s window of a segment (rows)."""
    n = len(x) // WINDOW
    w = x[:n * WINDOW].reshape(n, WINDOW).astype(np.float64)
    w = w - w.mean(1, keepdims=True)
    f = np.fft.rfftfreq(WINDOW, 1 / RATE)
    p = np.abs(np.fft.rfft(w * np.hanning(WINDOW), axis=1)) ** 2
    bands = [np.log(p[:, (f >= lo) & (f < hi)].sum(1) + 1e-6) for lo, hi in DETECTOR_BANDS.values()]
    cumulative = np.cumsum(p, 1)
    edge = f[np.argmax(cumulative >= 0.95 * cumulative[:, -1:], axis=1)]
    line_length = np.log(np.abs(np.diff(w, axis=1)).sum(1) + 1e-6)
    span = np.log(w.max(1) - w.min(1) + 1e-6)
    variance = np.log(w.var(1) + 1e-6)
    return np.column_stack(bands + [line_length, span, variance, edge])


def detector(segments: dict):
    from sklearn.ensemble import RandomForestClassifier
    train = [k for k in segments if k[1] <= 50]
    x = np.concatenate([window_features(segments[k][0]) for k in train])
    y = np.concatenate([np.full(len(segments[k][0]) // WINDOW, segments[k][1]) for k in train])
    clf = RandomForestClassifier(n_estimators=300, random_state=0, class_weight="balanced", n_jobs=1)
    return clf.fit(x, y)


TEXTURE_RATE = 200.0
TEXTURE_WINDOW = 100  # 0.5 s at 200 Hz


def texture_features(x: np.ndarray) -> np.ndarray:
    """Log power of each 2-Hz bin of each 0.5-s window at 200 Hz (rows)."""
    from eegz.dsp import resample
    u = resample(np.asarray(x, np.float64), RATE, TEXTURE_RATE)
    n = len(u) // TEXTURE_WINDOW
    w = u[:n * TEXTURE_WINDOW].reshape(n, TEXTURE_WINDOW)
    w = w - w.mean(1, keepdims=True)
    return np.log(np.abs(np.fft.rfft(w * np.hanning(TEXTURE_WINDOW), axis=1)) ** 2 + 1e-6)


def texture_detector(segments: dict):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    train = [k for k in segments if k[1] <= 50]
    features = [texture_features(segments[k][0]) for k in train]
    x = np.concatenate(features)
    y = np.concatenate([np.full(len(f), segments[k][1]) for f, k in zip(features, train)])
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000, class_weight="balanced"))
    return clf.fit(x, y)


def coded(segment: np.ndarray, folder: Path, options: dict) -> tuple[np.ndarray, float]:
    """The decoded segment and its neural streams' bits per second (None in the exact modes)."""
    bonn_edf(segment, folder / "s.edf")
    summary = api.compress(folder / "s.edf", folder / "s.eegz", device="cpu", force=True, **options)
    api.decompress(folder / "s.eegz", folder / "r.edf", device="cpu", force=True, model=options.get("model"))
    return read_edf(folder / "r.edf").digital[0].astype(np.float64), summary["bits_per_second_per_channel"]


def eegz_bits() -> dict[int, float]:
    """The default model's mean bits per second per channel at 3, 6 and 9 codebooks on these segments, as
    results/clinical.json recorded them."""
    results = json.loads((ROOT / "benchmarks" / "results" / "clinical.json").read_text())["results"]
    out = {}
    for n in (3, 6, 9):
        name = next(k for k in results if k.endswith(f"(default), {n} codebooks"))
        out[n] = float(np.mean([r["bits_per_second"] for r in results[name].values()]))
    return out


def transform_settings() -> dict:
    """Mode transform at the default model's bits per second at 3, 6 and 9 codebooks on these segments (or
    at EEGZ_BENCH_BITRATES)."""
    if BITRATES:
        return {f"transform at {bits:g} bit/s": {"mode": "transform", "bitrate": bits} for bits in BITRATES}
    out = {}
    for n, bits in eegz_bits().items():
        out[f"transform at {bits:.0f} bit/s (the neural codec's at {n} codebooks)"] = {"mode": "transform", "bitrate": bits}
        if n == 6:
            out[f"transform at {bits:.0f} bit/s, no band envelope"] = {"mode": "transform", "bitrate": bits,
                                                                       "band_envelope": False}
    return out


def settings() -> dict:
    if CODEC == "transform":
        return transform_settings()
    from eegz.neural import DEFAULT_MODEL
    models = {f"{DEFAULT_MODEL} (default)": None} if os.environ.get("EEGZ_BENCH_DEFAULT", "1") != "0" else {}
    for item in filter(None, os.environ.get("EEGZ_BENCH_MODELS", "").split(",")):
        name, path = item.split("=", 1)
        models[name] = path
    out = {}
    for name, path in models.items():
        for n in (3, 6, 9):
            out[f"{name}, {n} codebooks"] = {"mode": "lossy", "codebooks": n, "model": path}
        out[f"{name}, 6 codebooks, no band envelope"] = {"mode": "lossy", "codebooks": 6, "model": path,
                                                         "band_envelope": False}
        for q in QUALITIES:
            out[f"{name}, quality {q:g}"] = {"mode": "lossy", "quality": q, "model": path}
    out["near-lossless 5 µV"] = {"mode": "near-lossless", "max_error_uv": 5.0}
    return out


def evaluate(segments: dict, clf, texture, code) -> dict:
    """Per set: both detectors' agreement and seizure rates, PRDN, band errors, transients and lines of
    code(segment) -> (decoded segment, bits per second or None) on segments 051-070."""
    test = [k for k in segments if k[1] > 50]
    per_set: dict = {}
    for key in test:
        x = segments[key][0].astype(np.float64)
        y, bps = code(segments[key][0])
        a, b = clf.predict(window_features(x)), clf.predict(window_features(y))
        ta, tb = texture.predict(texture_features(x)), texture.predict(texture_features(y))
        s = per_set.setdefault(SET_NAMES[key[0]], {"agree": [], "seizure_decoded": [], "seizure_original": [],
                                                   "texture_agree": [], "texture_decoded": [], "texture_original": [],
                                                   "prdn": [], "bands": [], "offset": [], "transient": [], "x": [],
                                                   "y": [], "bps": [], "whole": []})
        s["agree"] += list(a == b)
        s["seizure_decoded"] += list(b == 1)
        s["seizure_original"] += list(a == 1)
        s["texture_agree"] += list(ta == tb)
        s["texture_decoded"] += list(tb == 1)
        s["texture_original"] += list(ta == 1)
        s["prdn"].append(prdn(x, y))
        s["bands"].append(window_band_errors(x, y, RATE))
        s["offset"].append(window_band_errors(x, y, RATE, offset=WINDOW_OFFSET_SECONDS))
        s["transient"].append(transient_errors(x, y, RATE)["amplitude_error"]["median"])
        s["bps"].append(bps)
        s["x"].append(x)
        s["y"].append(y)
        s["whole"].append(band_power_errors(x, y, RATE))
    out = {}
    for name, s in sorted(per_set.items()):
        bands, offset = {}, {}
        for band in s["bands"][0]:
            bands[band] = {q: float(np.median([b[band][q] for b in s["bands"] if band in b])) for q in ("median", "p90")}
            offset[band] = {q: float(np.median([b[band][q] for b in s["offset"] if band in b])) for q in ("median", "p90")}
        out[name] = {"agreement": float(np.mean(s["agree"])), "seizure_rate_decoded": float(np.mean(s["seizure_decoded"])),
                     "seizure_rate_original": float(np.mean(s["seizure_original"])),
                     "texture_agreement": float(np.mean(s["texture_agree"])),
                     "texture_seizure_rate_decoded": float(np.mean(s["texture_decoded"])),
                     "texture_seizure_rate_original": float(np.mean(s["texture_original"])),
                     "prdn": float(np.mean(s["prdn"])),
                     "bits_per_second": float(np.mean(s["bps"])) if None not in s["bps"] else None,
                     "window_band_error": bands,
                     "window_band_error_offset": offset,
                     "whole_band_error": {band: float(np.median([w[band] for w in s["whole"]]))
                                          for band in s["whole"][0]},
                     "transient_amplitude_error": float(np.median(s["transient"])),
                     "line_ratio": line_ratio_psd(welch_psd(np.stack(s["x"]), RATE), welch_psd(np.stack(s["y"]), RATE),
                                                  RATE)[0]}
    return out


def train_detectors(data: Path):
    """Bonn segments 001-070 {(set folder, number): (digital samples, label)} and both detectors."""
    import benchmarks.downstream_bonn as bonn
    bonn.DATA = data
    segments = {k: (v[0], v[1]) for k, v in load().items()}
    return segments, detector(segments), texture_detector(segments)


HEADER = ("Random forest on 1-s windows (band powers, line length, range, variance, spectral edge), trained on the "
          "originals of segments 001-050 of sets A-E, applied to segments 051-070 (20 per set, 23 windows each) "
          "before and after coding. Agreement: windows where the decision on the decoded signal equals the decision "
          "on the original. Seizure rate: decoded windows called seizure (on A and B these are false seizures; "
          "the originals' rate in brackets). Band errors: |P_decoded - P_original| / P_original on 0.5-s windows, "
          "median over segments of each segment's median (90th percentile in brackets), windows from each segment's "
          "start (one part of the codec's time profiles each); offset: the 90th percentile over windows from 0.25 s "
          "(across two parts); whole: the same over each "
          "whole segment (Welch). Line: the strongest invented spectral line in the set's mean spectrum "
          "(metrics.line_ratio_psd; 1.0: none; goal ≤ 1.5). bit/s: the token (or transform) streams' bits per second "
          "(0: an exact mode). Texture: the second detector (0.5-s windows at 200 Hz, log power of 2-Hz bins, "
          "logistic regression): its agreement and its decoded seizure rate (originals' in brackets).")


def write_results(results: dict, tag: str, title: str, header: str) -> None:
    """benchmarks/results/<tag>.json and .md: one table row per setting and set."""
    out = ROOT / "benchmarks" / "results"
    (out / f"{tag}.json").write_text(json.dumps({"date": str(date.today()), "machine": platform.platform(),
                                                "results": results}, indent=1) + "\n")
    lines = [f"# {title} ({date.today()})", "", header, "",
             "| setting | set | bit/s | agreement | seizure rate | texture agreement | texture seizure rate | PRDN % | "
             "beta | gamma | high gamma | gamma / high gamma p90, offset | gamma whole | high gamma whole | "
             "transient amp. err. | line |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, per_set in results.items():
        for s, r in per_set.items():
            b, o = r["window_band_error"], r["window_band_error_offset"]

            def cell(band):
                return f"{b[band]['median']:.2f} ({b[band]['p90']:.2f})" if band in b else "-"

            def p90(band):
                return f"{o[band]['p90']:.2f}" if band in o else "-"
            lines.append(f"| {name} | {s} | {r['bits_per_second'] or 0:.0f} | {r['agreement']:.3f} | {r['seizure_rate_decoded']:.3f} "
                         f"({r['seizure_rate_original']:.3f}) | {r['texture_agreement']:.3f} | "
                         f"{r['texture_seizure_rate_decoded']:.3f} ({r['texture_seizure_rate_original']:.3f}) | {r['prdn']:.1f} | {cell('beta')} | {cell('gamma')} | "
                         f"{cell('high_gamma')} | {p90('gamma')} / {p90('high_gamma')} | "
                         f"{r['whole_band_error'].get('gamma', 0):.2f} | "
                         f"{r['whole_band_error'].get('high_gamma', 0):.2f} | {r['transient_amplitude_error']:.2f} | "
                         f"{r['line_ratio']:.2f} |")
    (out / f"{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def report_progress(name: str, per_set: dict) -> None:
    worst = min(r["agreement"] for r in per_set.values())
    worst_texture = min(r["texture_agreement"] for r in per_set.values())
    print(f"{name}: worst agreement {worst:.3f}, texture detector {worst_texture:.3f}", file=sys.stderr, flush=True)


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    segments, clf, texture = train_detectors(data)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in settings().items():
            results[name] = evaluate(segments, clf, texture, lambda s, o=options: coded(s, Path(tmp), o))
            report_progress(name, results[name])
    title = "Clinical check: a window-level seizure detector on Bonn" + (" (mode transform)" if CODEC != "neural" else "")
    write_results(results, TAG, title, HEADER)


if __name__ == "__main__":
    main()
