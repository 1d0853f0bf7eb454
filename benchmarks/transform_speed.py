"""Speed of mode transform against FLAC, in the same run: the bundled example (20 EEG channels + ECG, 62 s
at 500 Hz) and a longer recording of the same kind (eegmat Subject00_1, 182 s), best of three runs each.

eegz is timed through `api.compress` / `api.decompress` (the whole file: header, exact ECG, annotations);
FLAC (`flac -8`, the tool a user would pick instead, lossless) codes every signal's samples as one mono
stream, through its command line, its process start included. The ratio eegz time / FLAC time is what
to read: this machine is shared, and absolute times drift. With EEGZ_BENCH_BUSY=1 a neighbour process
spins on one core during the runs; EEGZ_BENCH_NEIGHBOUR describes other work already running (for the
record). Writes benchmarks/results/transform_speed.md (transform_speed_busy.md with the neighbour).
"""
from __future__ import annotations

import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the benchmarks package; eegz is the installed one

from eegz import api  # noqa: E402
from eegz.edf import digital_to_bytes, read_edf  # noqa: E402

EXAMPLE = ROOT / "examples" / "eegmat_Subject17_2.edf"
LONGER = ROOT.parent / "shared" / "data" / "eegmat" / "Subject00_1.edf"
BITRATES = (130.0, 250.0, 350.0)  # about what 3, 6 and 9 codebooks take
BUSY = os.environ.get("EEGZ_BENCH_BUSY") == "1"
NEIGHBOUR = os.environ.get("EEGZ_BENCH_NEIGHBOUR", "none")


def best_of(runs: int, action) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - t0)
    return best


def flac_times(path: Path, tmp: Path) -> tuple[float, float]:
    """FLAC -8 encode and decode of every signal as a mono stream (seconds, summed over signals)."""
    rec = read_edf(path)
    bits = 8 * rec.header.sample_width
    raws = []
    for k, (s, d) in enumerate(zip(rec.header.signals, rec.digital)):
        if not s.is_annotation and len(d):
            raw = tmp / f"ch{k}.raw"
            raw.write_bytes(digital_to_bytes(d, rec.header.sample_width).tobytes())
            raws.append((raw, max(1, int(round(s.sample_rate)))))

    def encode():
        for raw, rate in raws:
            subprocess.run(["flac", "-8", "--no-padding", "--force-raw-format", "--endian=little", "--sign=signed",
                            "--channels=1", f"--bps={bits}", f"--sample-rate={rate}", "-s", "-f", "-o",
                            str(raw.with_suffix(".flac")), str(raw)], check=True)

    def decode():
        for raw, _ in raws:
            subprocess.run(["flac", "-d", "-s", "-f", "--force-raw-format", "--endian=little", "--sign=signed", "-o",
                            str(raw.with_suffix(".back")), str(raw.with_suffix(".flac"))], check=True)
    enc = best_of(3, encode)
    return enc, best_of(3, decode)


def _spin() -> None:
    while True:
        pass


def main() -> None:
    neighbour = multiprocessing.Process(target=_spin, daemon=True) if BUSY else None
    if neighbour:
        neighbour.start()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        out, back = tmp / "x.eegz", tmp / "x.edf"
        for path in (EXAMPLE, LONGER):
            if not path.exists():
                continue
            flac_enc, flac_dec = flac_times(path, tmp)
            duration = read_edf(path).duration
            for bitrate in BITRATES:
                for envelope in (True, False):
                    enc = best_of(3, lambda: api.compress(path, out, mode="transform", bitrate=bitrate,
                                                          band_envelope=envelope, force=True))
                    dec = best_of(3, lambda: api.decompress(out, back, force=True))
                    rows.append((path.name, duration, bitrate, envelope, enc, dec, flac_enc, flac_dec))
    if neighbour:
        neighbour.terminate()
    lines = [f"# Transform mode speed ({date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
             f"neighbour: {'a spinning process on one core' if BUSY else NEIGHBOUR})", "",
             "20 EEG channels transform-coded + 1 ECG channel coded exactly, at 500 Hz; wall-clock of `api.compress` "
             "/ `api.decompress`, best of 3, against `flac -8` on the same signals (lossless; one process per "
             "signal) in the same run.", "",
             "| file | seconds | bit/s | envelope | encode s | × real time | / FLAC encode | decode s | × real time "
             "| / FLAC decode |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, dur, bitrate, envelope, enc, dec, fe, fd in rows:
        lines.append(f"| {name} | {dur:g} | {bitrate:g} | {'yes' if envelope else 'no'} | {enc:.2f} | {dur / enc:.0f} | "
                     f"{enc / fe:.2f} | {dec:.2f} | {dur / dec:.0f} | {dec / fd:.2f} |")
    out_md = ROOT / "benchmarks" / "results" / ("transform_speed_busy.md" if BUSY else "transform_speed.md")
    out_md.write_text("\n".join(lines) + "\n")
    print(out_md.read_text())


if __name__ == "__main__":
    main()
