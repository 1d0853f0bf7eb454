"""Speed of the neural path on the bundled example (20 EEG channels + ECG, 62 s at 500 Hz), model loaded.

Run it on an otherwise idle machine. Writes benchmarks/results/neural_speed.md.
"""
from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eegz import api  # noqa: E402

EXAMPLE = ROOT / "examples" / "eegmat_Subject17_2.edf"


def main() -> None:
    import torch
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out, back = Path(tmp) / "x.eegz", Path(tmp) / "x.edf"
        api.compress(EXAMPLE, out, codebooks=6, device="cpu", force=True)  # import and load once
        for n in (3, 6, 9):
            t0 = time.perf_counter()
            summary = api.compress(EXAMPLE, out, codebooks=n, device="cpu", force=True)
            t1 = time.perf_counter()
            api.decompress(out, back, device="cpu", force=True)
            t2 = time.perf_counter()
            rows.append((n, summary["duration_s"], t1 - t0, t2 - t1))
    lines = [f"# Neural path speed ({date.today()}, {platform.machine()}, {os.cpu_count()} cores, torch "
             f"{torch.__version__}, {torch.get_num_threads()} threads, idle machine)", "",
             "The bundled example: 20 EEG channels coded by the model + 1 ECG channel coded exactly, 62 s at "
             "500 Hz; wall-clock of `api.compress` / `api.decompress` with the model already loaded.", "",
             "| codebooks | encode s | encode × real time | decode s | decode × real time |", "|---|---|---|---|---|"]
    for n, dur, enc, dec in rows:
        lines.append(f"| {n} | {enc:.2f} | {dur / enc:.0f} | {dec:.2f} | {dur / dec:.0f} |")
    out_md = ROOT / "benchmarks" / "results" / "neural_speed.md"
    out_md.write_text("\n".join(lines) + "\n")
    print(out_md.read_text())


if __name__ == "__main__":
    main()
