"""Streaming benchmark: whole CLI processes on long recordings, against FLAC in the same run.

1. Speed (1 h × 21 channels × 256 Hz of real EEG, benchmarks/long_edf.py): `eegz compress --mode
   lossless`, `eegz decompress`, near-lossless at 1 LSB, against `flac -8` and `flac -d` on the same
   samples (every channel one after another as one mono 16-bit stream), alternating A B A B, median of
   ROUNDS; then the same while a busy neighbour process keeps one core spinning.
2. Memory: peak RSS (/usr/bin/time -v) of compress and decompress for a 24 h lossless recording and a
   4 h lossy one, against the same at 1 h: memory must not grow with length. The 24 h round trip must be
   byte-identical.

Writes benchmarks/results/streaming.{json,md}. Usage:
    python benchmarks/streaming.py [--quick]     (--quick: 10 min and 1 h files, 3 rounds, for a smoke run)
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the benchmarks package; eegz is the installed one

from eegz.neural import file_sha256  # noqa: E402  (no torch: neural imports it where the model runs)

from benchmarks.long_edf import write as write_long_edf  # noqa: E402

QUICK = "--quick" in sys.argv
ROUNDS = 3 if QUICK else 5
EEGZ = [sys.executable, "-m", "eegz.cli"]
FLAC_RAW = ["--force-raw-format", "--endian=little", "--sign=signed"]


def run(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def peak_rss(cmd: list[str]) -> tuple[float, float]:
    """(seconds, peak resident memory in MB) of a whole process."""
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    kb = next(int(line.split()[-1]) for line in proc.stderr.splitlines() if "Maximum resident set size" in line)
    return seconds, kb / 1024


def raw_samples(edf: Path, raw: Path) -> None:
    from eegz.edf import EdfReader, split_records
    with open(edf, "rb") as f, open(raw, "wb") as out:
        reader = EdfReader(f, str(edf), edf.stat().st_size)
        chunks = [[] for s in reader.header.signals if not s.is_annotation]
        while True:
            data, count = reader.read_records(600)
            if not count:
                break
            for k, d in enumerate(x for s, x in zip(reader.header.signals, split_records(reader.header, data, count))
                                  if not s.is_annotation):
                chunks[k].append(d.astype("<i2").tobytes())
        for c in chunks:
            out.write(b"".join(c))


def speed(edf: Path, tmp: Path) -> dict:
    raw, flac = tmp / "s.raw", tmp / "s.flac"
    raw_samples(edf, raw)
    jobs = {
        "flac -8": ["flac", "-8", *FLAC_RAW, "--channels=1", "--bps=16", "--sample-rate=256", "-s", "-f", "-o", str(flac), str(raw)],
        "eegz compress lossless": [*EEGZ, "compress", str(edf), "-o", str(tmp / "l.eegz"), "--mode", "lossless", "-f", "-q"],
        "flac -d": ["flac", "-d", *FLAC_RAW, "-s", "-f", "-o", str(tmp / "d.raw"), str(flac)],
        "eegz decompress lossless": [*EEGZ, "decompress", str(tmp / "l.eegz"), "-o", str(tmp / "l.edf"), "-f", "-q"],
        "eegz compress near-lossless 1 LSB": [*EEGZ, "compress", str(edf), "-o", str(tmp / "n.eegz"),
                                              "--mode", "near-lossless", "--max-error-lsb", "1", "-f", "-q"],
        "eegz decompress near-lossless 1 LSB": [*EEGZ, "decompress", str(tmp / "n.eegz"), "-o", str(tmp / "n.edf"), "-f", "-q"],
    }
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(ROUNDS):  # A B A B: each round runs every job once, in the same order
        for name, cmd in jobs.items():
            times[name].append(run(cmd))
    assert (tmp / "l.edf").read_bytes() == edf.read_bytes(), "lossless round trip differs"
    med = {k: statistics.median(v) for k, v in times.items()}
    sizes = {"edf": edf.stat().st_size, "flac": flac.stat().st_size, "eegz lossless": (tmp / "l.eegz").stat().st_size,
             "eegz near-lossless 1 LSB": (tmp / "n.eegz").stat().st_size}
    return {"median_s": med, "all_s": times, "sizes": sizes}


def with_neighbour(fn, *args):
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        return fn(*args)
    finally:
        spinner.kill()
        spinner.wait()


def memory(tmp: Path, hours: dict[str, float]) -> dict:
    rows = {}
    for label, (mode, h) in hours.items():
        edf = tmp / f"{label}.edf"
        write_long_edf(h, edf, ROOT.parent / "shared" / "data")
        out, back = tmp / f"{label}.eegz", tmp / f"{label}.back.edf"
        args = ["--mode", mode] + (["--codebooks", "6", "--device", "cpu"] if mode == "lossy" else [])
        c_s, c_mb = peak_rss([*EEGZ, "compress", str(edf), "-o", str(out), *args, "-f", "-q"])
        d_s, d_mb = peak_rss([*EEGZ, "decompress", str(out), "-o", str(back), "-f", "-q"])
        row = {"mode": mode, "hours": h, "edf_bytes": edf.stat().st_size, "eegz_bytes": out.stat().st_size,
               "compress_s": c_s, "compress_peak_mb": c_mb, "decompress_s": d_s, "decompress_peak_mb": d_mb}
        if mode == "lossless":
            row["byte_identical"] = file_sha256(edf) == file_sha256(back)
        rows[label] = row
        print(json.dumps({label: row}), file=sys.stderr, flush=True)
        for p in (edf, out, back):
            p.unlink()
    return rows




def main() -> None:
    if not shutil.which("flac"):
        raise SystemExit("flac is needed (apt-get install flac)")
    results = {"date": str(date.today()), "machine": platform.platform(), "cores": os.cpu_count(), "rounds": ROUNDS}
    with tempfile.TemporaryDirectory(dir=os.environ.get("EEGZ_BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        edf = tmp / "speed.edf"
        write_long_edf(1.0, edf, ROOT.parent / "shared" / "data")
        results["speed_idle"] = speed(edf, tmp)
        results["speed_busy"] = with_neighbour(speed, edf, tmp)
        edf.unlink()
        plan = ({"lossless 10 min": ("lossless", 1 / 6), "lossless 1 h": ("lossless", 1.0), "lossy 10 min": ("lossy", 1 / 6)}
                if QUICK else {"lossless 1 h": ("lossless", 1.0), "lossless 24 h": ("lossless", 24.0),
                               "lossy 1 h": ("lossy", 1.0), "lossy 4 h": ("lossy", 4.0)})
        results["memory"] = memory(tmp, plan)
    out = ROOT / "benchmarks" / "results"
    (out / "streaming.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "streaming.md").write_text(report(results))
    print(report(results))


def report(r: dict) -> str:
    idle, busy = r["speed_idle"]["median_s"], r["speed_busy"]["median_s"]
    lines = [f"# Streaming: speed against FLAC, and memory ({r['date']}, {platform.machine()}, {r['cores']} cores)", "",
             "Whole CLI processes on 1 h × 21 channels × 256 Hz of real EEG (benchmarks/long_edf.py, 38.9 MB), "
             f"median of {r['rounds']} alternating rounds; FLAC codes the same samples as one mono 16-bit stream.", "",
             "| process | idle s | vs FLAC | beside a busy core s | busy / idle |", "|---|---|---|---|---|"]
    pairs = {"eegz compress lossless": "flac -8", "eegz decompress lossless": "flac -d",
             "eegz compress near-lossless 1 LSB": "flac -8", "eegz decompress near-lossless 1 LSB": "flac -d"}
    for name in ("flac -8", "flac -d", *pairs):
        vs = f"{idle[name] / idle[pairs[name]]:.2f}×" if name in pairs else ""
        lines.append(f"| {name} | {idle[name]:.2f} | {vs} | {busy[name]:.2f} | {busy[name] / idle[name]:.2f} |")
    sizes = r["speed_idle"]["sizes"]
    lines += ["", f"Sizes: EDF {sizes['edf']:,} B; FLAC {sizes['flac']:,} B; eegz lossless {sizes['eegz lossless']:,} B "
              f"({sizes['flac'] / sizes['eegz lossless']:.3f}× smaller than FLAC, EDF header and annotations included); "
              f"near-lossless 1 LSB {sizes['eegz near-lossless 1 LSB']:,} B.", "",
              "| recording | mode | EDF MB | eegz MB | compress s | compress peak RSS MB | decompress s | decompress peak RSS MB | round trip |",
              "|---|---|---|---|---|---|---|---|---|"]
    for label, m in r["memory"].items():
        ok = {True: "byte-identical", False: "DIFFERS"}.get(m.get("byte_identical"), "")
        lines.append(f"| {label} | {m['mode']} | {m['edf_bytes'] / 1e6:.1f} | {m['eegz_bytes'] / 1e6:.2f} | "
                     f"{m['compress_s']:.1f} | {m['compress_peak_mb']:.0f} | {m['decompress_s']:.1f} | "
                     f"{m['decompress_peak_mb']:.0f} | {ok} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
