"""Speed of the neural path, model loaded: the bundled example (20 EEG channels + ECG, 62 s at 500 Hz)
and a longer recording of the same kind (eegmat Subject00_1, 182 s), best of three runs each.

Run it on an otherwise idle machine. Writes benchmarks/results/neural_speed.md (EEGZ_BENCH_MODEL: another
model .npz, EEGZ_BENCH_TAG: another results name).
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
sys.path.insert(0, str(ROOT))  # the benchmarks package; eegz is the installed one

from eegz import api  # noqa: E402

EXAMPLE = ROOT / "examples" / "eegmat_Subject17_2.edf"
LONGER = ROOT.parent / "shared" / "data" / "eegmat" / "Subject00_1.edf"
MODEL = os.environ.get("EEGZ_BENCH_MODEL")
TAG = os.environ.get("EEGZ_BENCH_TAG", "neural_speed")


def best_of(runs: int, action) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    import torch
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out, back = Path(tmp) / "x.eegz", Path(tmp) / "x.edf"
        api.compress(EXAMPLE, out, codebooks=6, device="cpu", force=True, model=MODEL)  # import and load once
        for path in (EXAMPLE, LONGER):
            if not path.exists():
                continue
            for n in (3, 6, 9):
                enc, summary = best_of(3, lambda: api.compress(path, out, codebooks=n, device="cpu", force=True,
                                                                model=MODEL))
                dec, _ = best_of(3, lambda: api.decompress(out, back, device="cpu", force=True, model=MODEL))
                rows.append((path.name, n, summary["duration_s"], enc, dec))
    lines = [f"# Neural path speed ({date.today()}, {platform.machine()}, {os.cpu_count()} cores, torch "
             f"{torch.__version__}, {torch.get_num_threads()} threads, idle machine, model "
             f"{Path(MODEL).stem if MODEL else 'shipped default'})", "",
             "20 EEG channels coded by the model + 1 ECG channel coded exactly, at 500 Hz; wall-clock of "
             "`api.compress` / `api.decompress` with the model already loaded, best of 3.", "",
             "| file | seconds | codebooks | encode s | encode × real time | decode s | decode × real time |",
             "|---|---|---|---|---|---|---|"]
    for name, n, dur, enc, dec in rows:
        lines.append(f"| {name} | {dur:g} | {n} | {enc:.2f} | {dur / enc:.0f} | {dec:.2f} | {dur / dec:.0f} |")
    out_md = ROOT / "benchmarks" / "results" / f"{TAG}.md"
    out_md.write_text("\n".join(lines) + "\n")
    print(out_md.read_text())


if __name__ == "__main__":
    main()
