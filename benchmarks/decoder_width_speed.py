"""How wide a decoder the speed floor allows: lossy decode time of the shipped model against the same model with a
wider decoder (DAC's decoder_dim), timed in turns in one process.

Issue 11 allows a wider decoder "as long as 21-channel encode and decode stay >= 100x real time on 2 CPU cores". The
wider models here hold random weights: their speed does not depend on the values, and no trained one exists yet. The
encoder is the shipped one's size in every model, so encoding speed does not change (but --quality's trial decodes).
Each model codes eegmat Subject00_1 (182 s, 20 EEG channels + ECG at 500 Hz) at 6 codebooks; its decode is timed
ROUNDS times, the models taking turns, best of each.

Usage: python benchmarks/decoder_width_speed.py [DATA_DIR]; writes benchmarks/results/decoder_width_speed.{json,md}.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the benchmarks package; eegz is the installed one

from eegz import api  # noqa: E402
from eegz.neural import DEFAULT_MODEL, MODELS_DIR, TOKEN_COUNTS_KEY, ModelConfig, build_dac, save_model  # noqa: E402

WIDTHS = (160, 192, 256)
ROUNDS = 3


def wider_models(folder: Path) -> dict[int, Path | None]:
    """{decoder_dim: model path} for the shipped model (None) and each width of WIDTHS, random weights."""
    shipped = MODELS_DIR / f"{DEFAULT_MODEL}.npz"
    card = json.loads(shipped.with_suffix(".json").read_text())
    counts = np.load(shipped)[TOKEN_COUNTS_KEY]
    models: dict[int, Path | None] = {card["config"]["decoder_dim"]: None}
    for dim in WIDTHS:
        config = ModelConfig.from_json({**card["config"], "decoder_dim": dim})
        save_model(build_dac(config), config, folder / f"width{dim}.npz", token_counts=counts)
        models[dim] = folder / f"width{dim}.npz"
    return models


def decoder_parameters(model: Path | None) -> int:
    from eegz.neural import NeuralCodec
    return sum(p.numel() for p in NeuralCodec.load(str(model) if model else None, "cpu").model.decoder.parameters())


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    source = data / "eegmat" / "Subject00_1.edf"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = wider_models(folder)
        coded = {}
        for dim, model in models.items():
            coded[dim] = folder / f"coded{dim}.eegz"
            summary = api.compress(source, coded[dim], codebooks=6, device="cpu", force=True,
                                   model=str(model) if model else None)
            api.decompress(coded[dim], folder / "out.edf", device="cpu", force=True, model=str(model) if model else None)
        seconds = summary["duration_s"]
        best = {dim: float("inf") for dim in models}
        for _ in range(ROUNDS):
            for dim, model in models.items():
                t0 = time.perf_counter()
                api.decompress(coded[dim], folder / "out.edf", device="cpu", force=True,
                               model=str(model) if model else None)
                best[dim] = min(best[dim], time.perf_counter() - t0)
        rows = [{"decoder_dim": dim, "decoder_parameters": decoder_parameters(model), "decode_s": best[dim],
                 "real_time": seconds / best[dim]} for dim, model in models.items()]
    write(rows, seconds)


def write(rows: list[dict], seconds: float) -> None:
    out = ROOT / "benchmarks" / "results"
    threads = os.environ.get("EEGZ_THREADS", "all")
    (out / "decoder_width_speed.json").write_text(json.dumps({"date": str(date.today()), "machine": platform.machine(),
                                                              "threads": threads, "rows": rows}, indent=1) + "\n")
    shipped = rows[0]
    lines = [f"# Decode speed against the decoder's width ({date.today()}, {platform.machine()}, {os.cpu_count()} cores)",
             "",
             f"eegmat Subject00_1 ({seconds:.0f} s, 20 EEG channels + ECG at 500 Hz) at 6 codebooks, lossy decode with "
             f"the model loaded, best of {ROUNDS} in turns, EEGZ_THREADS={threads}. First row: the shipped model "
             f"({DEFAULT_MODEL}); the others: the same configuration with a wider decoder and random weights (speed does "
             "not depend on them). The issue's floor: 100x real time. benchmarks/decoder_width_speed.py.", "",
             "| decoder_dim | decoder parameters | decode s | × real time | time / shipped |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['decoder_dim']} | {r['decoder_parameters']:,} | {r['decode_s']:.2f} | {r['real_time']:.0f} | "
                     f"{r['decode_s'] / shipped['decode_s']:.2f} |")
    (out / "decoder_width_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
