"""Exact-layer benchmark: eegz lossless / near-lossless against general and audio lossless coders, and
an ablation of the exact coder's tools with the speed of each.

Runs on every EDF/BDF under the shared data folder and writes benchmarks/results/exact.{json,md}.
Ratios are against the whole EDF file's bytes; bits per sample count every byte of the compressed output
(header and annotations included) over the file's data samples. FLAC and WavPack code each signal as
one mono stream (`flac -8 --no-padding`, `wavpack -hhx`) and are charged the zstd-compressed EDF header
and annotation bytes as eegz is.

The ablation codes each file's blocks with the exact coder's tools turned on one at a time (_core.USE_*):
LPC alone (one predictor a block, Laplace tables), + LPC frames, + channel references, + table families
(all tools: what eegz writes). It reports the bits of the exact streams per coded sample and the
encoder's single-thread time per sample. Usage: python benchmarks/exact_benchmark.py [DATA_DIR] [--quick]
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import zstandard

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the benchmarks package; eegz is the installed one

from eegz import _core, api  # noqa: E402
from eegz.edf import EdfError, digital_to_bytes, read_edf  # noqa: E402
from eegz.encode import records_per_block, sample_range  # noqa: E402
from eegz.exact import ExactItem, encode_group  # noqa: E402

VARIANTS = {"LPC": 0, "+ frames": _core.USE_FRAMES, "+ references": _core.USE_FRAMES | _core.USE_REFS,
            "+ families (eegz)": _core.USE_ALL}

GENERAL = {"gzip -9": ["gzip", "-9", "-c"], "bzip2 -9": ["bzip2", "-9", "-c"], "xz -9e": ["xz", "-9e", "-c"],
           "zstd -19 --long": ["zstd", "-19", "--long", "-c", "-q"]}


def _pipe_size(cmd, data: bytes) -> int:
    return len(subprocess.run(cmd, input=data, capture_output=True, check=True).stdout)


def _side_bytes(rec) -> int:
    """EDF header and annotation bytes, zstd'd: what per-channel audio coders must store beside audio."""
    ann = b"".join(digital_to_bytes(d, rec.header.sample_width).tobytes()
                   for s, d in zip(rec.header.signals, rec.digital) if s.is_annotation)
    return len(zstandard.ZstdCompressor(level=19).compress(rec.header.raw + ann + rec.trailing))


def _audio_size(rec, tool: str, tmp: Path) -> int | None:
    bits = 8 * rec.header.sample_width
    total = _side_bytes(rec)
    for s, d in zip(rec.header.signals, rec.digital):
        if s.is_annotation or len(d) == 0:
            continue
        raw = tmp / "ch.raw"
        raw.write_bytes(digital_to_bytes(d, rec.header.sample_width).tobytes())
        rate = max(1, int(round(s.sample_rate)) or 1)
        out = tmp / "ch.out"
        if tool == "flac":
            cmd = ["flac", "-8", "--no-padding", "--force-raw-format", "--endian=little", "--sign=signed",
                   "--channels=1", f"--bps={bits}", f"--sample-rate={rate}", "-s", "-f", "-o", str(out), str(raw)]
        else:
            cmd = ["wavpack", "-hhx", "-q", "-y", f"--raw-pcm={rate},{bits},1,le", str(raw), "-o", str(out)]
        if subprocess.run(cmd, capture_output=True).returncode != 0:
            return None
        total += out.stat().st_size
    return total


def bench_file(path: Path, tmp: Path) -> dict | None:
    try:
        rec = read_edf(path)
    except EdfError:
        return None
    data = path.read_bytes()
    n_samples = sum(len(d) for s, d in zip(rec.header.signals, rec.digital) if not s.is_annotation)
    row = {"file": str(path), "bytes": len(data), "samples": n_samples, "sizes": {}, "seconds": {}}
    for name, kw in {"eegz lossless": {"mode": "lossless"},
                     "eegz near-lossless 1 LSB": {"mode": "near-lossless", "max_error_lsb": 1},
                     "eegz near-lossless 0.5 uV": {"mode": "near-lossless", "max_error_uv": 0.5}}.items():
        out = tmp / "x.eegz"
        t0 = time.perf_counter()
        api.compress(path, out, force=True, **kw)
        t1 = time.perf_counter()
        back = tmp / f"x{'.bdf' if rec.header.is_bdf else '.edf'}"
        api.decompress(out, back, force=True)
        t2 = time.perf_counter()
        if kw["mode"] == "lossless":
            assert back.read_bytes() == data, f"lossless round trip failed on {path}"
        row["sizes"][name] = out.stat().st_size
        row["seconds"][name] = {"encode": t1 - t0, "decode": t2 - t1}
    for name, cmd in GENERAL.items():
        row["sizes"][name] = _pipe_size(cmd, data)
    for tool, name in (("flac", "FLAC -8"), ("wavpack", "WavPack -hhx")):
        if shutil.which(tool) and (tool != "flac" or rec.header.sample_width in (2, 3)):
            size = _audio_size(rec, tool, tmp)
            if size:
                row["sizes"][name] = size
    row["coded_samples"] = n_samples
    row["ablation"] = ablation(rec)
    return row


def ablation(rec) -> dict:
    """{variant: (exact-stream bytes, encoder seconds)} over the file's blocks, lossless, one thread."""
    lo, hi = sample_range(rec.header)
    per_block = records_per_block(rec.header, None)
    sigs = [(s, d) for s, d in zip(rec.header.signals, rec.digital) if not s.is_annotation]
    blocks = [[ExactItem(d[first * s.samples_per_record:(first + per_block) * s.samples_per_record], 0, lo, hi)
               for s, d in sigs] for first in range(0, rec.n_records, per_block)]
    out = {}
    for name, features in VARIANTS.items():
        t0 = time.perf_counter()
        size = sum(len(c) for items in blocks for c in encode_group(items, features))
        out[name] = (size, time.perf_counter() - t0)
    return out


def summarize(rows: list[dict]) -> dict:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        rel = Path(r["file"]).relative_to(DATA)
        key = rel.parts[0] if rel.parts[0] != "edge" else "edge/" + rel.parts[1]
        groups.setdefault(key, []).append(r)
    table = {}
    for key, rs in groups.items():
        total = sum(r["bytes"] for r in rs)
        samples = sum(r["samples"] for r in rs)
        methods = set.intersection(*(set(r["sizes"]) for r in rs))
        table[key] = {"files": len(rs), "bytes": total,
                      "ratio": {m: total / sum(r["sizes"][m] for r in rs) for m in sorted(methods)},
                      "bits_per_sample": {m: 8 * sum(r["sizes"][m] for r in rs) / max(samples, 1)
                                          for m in sorted(methods)},
                      "ablation": {v: {"bits_per_sample": 8 * sum(r["ablation"][v][0] for r in rs) / max(samples, 1),
                                       "ns_per_sample": 1e9 * sum(r["ablation"][v][1] for r in rs) / max(samples, 1)}
                                   for v in VARIANTS}}
    return table


def write_markdown(summary: dict, out: Path) -> None:
    methods = ["eegz lossless", "eegz near-lossless 1 LSB", "eegz near-lossless 0.5 uV", "FLAC -8",
               "WavPack -hhx", "zstd -19 --long", "xz -9e", "bzip2 -9", "gzip -9"]
    lines = [f"# Exact-layer benchmark ({date.today()}, {platform.machine()}, {os.cpu_count()} cores)", "",
             "Compression ratio against the EDF file's bytes (higher is better); in brackets, bits per data "
             "sample with every output byte counted.", "",
             "| dataset | files | " + " | ".join(methods) + " | eegz / FLAC |",
             "|---|---|" + "---|" * (len(methods) + 1)]
    for key, t in sorted(summary.items()):
        cells = [f"{t['ratio'][m]:.3f} ({t['bits_per_sample'][m]:.2f})" if m in t["ratio"] else "n/a"
                 for m in methods]
        gain = t["ratio"]["eegz lossless"] / t["ratio"]["FLAC -8"] if "FLAC -8" in t["ratio"] else float("nan")
        lines.append(f"| {key} | {t['files']} | " + " | ".join(cells) + f" | {gain:.3f} |")
    lines += ["", "Ablation of the exact coder, lossless: bits per sample of the exact streams, and in brackets the "
              "encoder's single-thread time in ns per sample (in-process, every block of every file). Each row adds "
              "one tool to the one above. Adaptive filters after the LPC (sign-LMS/NLMS cascades of 16 and 32 taps, "
              "as in Monkey's Audio) were measured in a prototype on eegmat, eegmmidb and the 1 h benchmark file and "
              "gained under 0.2 % after a block LPC of order up to 32, so eegz has none.", "",
              "| dataset | " + " | ".join(VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
    for key, t in sorted(summary.items()):
        cells = [f"{t['ablation'][v]['bits_per_sample']:.3f} ({t['ablation'][v]['ns_per_sample']:.0f})" for v in VARIANTS]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "Speed of whole CLI processes against FLAC on 1 h of EEG, idle and beside a busy process: "
              "benchmarks/results/streaming.md."]
    out.write_text("\n".join(lines) + "\n")


DATA = Path(sys.argv[1]) if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else ROOT.parent / "shared" / "data"

if __name__ == "__main__":
    quick = "--quick" in sys.argv
    files = sorted(p for p in DATA.rglob("*") if p.suffix.lower() in (".edf", ".bdf"))
    if quick:
        files = files[::6]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, f in enumerate(files):
            row = bench_file(f, Path(tmp))
            if row:
                rows.append(row)
            print(f"[{i + 1}/{len(files)}] {f.relative_to(DATA)}", file=sys.stderr, flush=True)
    summary = summarize(rows)
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "exact.json").write_text(json.dumps({"date": str(date.today()), "machine": platform.platform(),
                                                    "cores": os.cpu_count(), "summary": summary,
                                                    "files": rows}, indent=1))
    write_markdown(summary, results / "exact.md")
    print((results / "exact.md").read_text())
