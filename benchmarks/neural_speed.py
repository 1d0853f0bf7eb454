"""Speed of the neural path, model loaded: the bundled example (20 EEG channels + ECG, 62 s at 500 Hz)
and a longer recording of the same kind (eegmat Subject00_1, 182 s), best of five runs each; beside it in
the same run, the model with DAC's Snake in torch's operations (eegz 0.12 and before) instead of the compiled
one, so that the gain reads as a ratio on a noisy machine.

Run it on an otherwise idle machine, and beside a busy neighbour (EEGZ_BENCH_NEIGHBOUR says which, for the
title). Writes benchmarks/results/neural_speed.md (EEGZ_BENCH_MODEL: another model .npz, EEGZ_BENCH_TAG: another
results name).
"""
from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
import types
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the benchmarks package; eegz is the installed one

from eegz import api  # noqa: E402

EXAMPLE = ROOT / "examples" / "eegmat_Subject17_2.edf"
LONGER = ROOT.parent / "shared" / "data" / "eegmat" / "Subject00_1.edf"
MODEL = os.environ.get("EEGZ_BENCH_MODEL")
TAG = os.environ.get("EEGZ_BENCH_TAG", "neural_speed")
RUNS = 5  # best of five, the two Snakes taking turns
NEIGHBOUR = os.environ.get("EEGZ_BENCH_NEIGHBOUR", "idle machine")  # e.g. "beside a busy loop on one core"


def timed(action) -> tuple[float, object]:
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    result = action()
    return time.perf_counter() - t0, result


def torch_snake(self, x):
    """eegz 0.12's Snake: torch's sin and three more passes."""
    t = x * self.alpha
    t.sin_()
    t.mul_(t)
    return x.addcmul(t, (self.alpha + 1e-9).reciprocal())


@contextmanager
def snake(forward):
    """The loaded model (api's cached one) with `forward` as every Snake's, restored afterwards."""
    from dac.nn.layers import Snake1d

    from eegz.neural import NeuralCodec, _snake_in_place
    modules = [m for m in NeuralCodec.load(MODEL, "cpu").model.modules() if isinstance(m, Snake1d)]
    for m in modules:
        m.forward = types.MethodType(forward, m)
    try:
        yield
    finally:
        for m in modules:
            m.forward = types.MethodType(_snake_in_place, m)


def main() -> None:
    import torch

    from eegz.neural import _snake_in_place
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out, back = Path(tmp) / "x.eegz", Path(tmp) / "x.edf"
        api.compress(EXAMPLE, out, codebooks=6, device="cpu", force=True, model=MODEL)  # import and load once
        for path in (EXAMPLE, LONGER):
            if not path.exists():
                continue
            for n in (3, 6, 9):
                times = {"compiled": [np.inf, np.inf], "torch": [np.inf, np.inf]}
                for _ in range(RUNS):  # the two in turn, so that a slow spell of the machine hits both
                    for name, forward in (("compiled", _snake_in_place), ("torch", torch_snake)):
                        with snake(forward):
                            enc, summary = timed(lambda: api.compress(path, out, codebooks=n, device="cpu",
                                                                      force=True, model=MODEL))
                            dec, _ = timed(lambda: api.decompress(out, back, device="cpu", force=True, model=MODEL))
                        times[name] = [min(times[name][0], enc), min(times[name][1], dec)]
                rows.append((path.name, n, summary["duration_s"], *times["compiled"], *times["torch"]))
    lines = [f"# Neural path speed ({date.today()}, {platform.machine()}, {os.cpu_count()} cores, torch "
             f"{torch.__version__}, {torch.get_num_threads()} threads, {NEIGHBOUR}, model "
             f"{Path(MODEL).stem if MODEL else 'shipped default'})", "",
             "20 EEG channels coded by the model + 1 ECG channel coded exactly, at 500 Hz; wall-clock of "
             "`api.compress` / `api.decompress` with the model already loaded, best of 5 (the two Snakes taking "
             "turns). Torch's Snake: the same model with DAC's Snake in torch's operations (eegz 0.12), measured "
             "beside it; speed-up: its time over the compiled Snake's.", "",
             "| file | seconds | codebooks | encode s | encode × real time | decode s | decode × real time "
             "| encode × real time, torch's Snake | decode, torch's Snake | encode speed-up | decode speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, n, dur, enc, dec, enc_t, dec_t in rows:
        lines.append(f"| {name} | {dur:g} | {n} | {enc:.2f} | {dur / enc:.0f} | {dec:.2f} | {dur / dec:.0f} "
                     f"| {dur / enc_t:.0f} | {dur / dec_t:.0f} | {enc_t / enc:.2f} | {dec_t / dec:.2f} |")
    out_md = ROOT / "benchmarks" / "results" / f"{TAG}.md"
    out_md.write_text("\n".join(lines) + "\n")
    print(out_md.read_text())


if __name__ == "__main__":
    main()
