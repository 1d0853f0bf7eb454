"""The starting model of training runs P1 / P2 (training_ablation.md): the shipped model with stages that refine.

The shipped model is switched to codes by distance (codebooks refitted by k-means, as `eegz train --from-model M
--code-lookup euclidean` does) and each stage's output projection is then refitted by least squares onto the
residual it is given (relookup.refit_output_projections), on 3000 (or N) training windows of eegmat Subject00-13
and Bonn 001-050 (train_ablation.py's inputs less its validation subjects). Prints the latent power left after each
stage, both ways, and writes the model (.npz and card) for `eegz train --from-model OUT`.

    python benchmarks/refit_projections.py OUT.npz [--windows N]
(N training windows, default 3000 as `eegz train` switches on; benchmarks/codebook_gain.py then measures the
latent left on the held-out windows: refitted-3000 and refitted-12000 in codebook_gain.md.)
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.train_ablation import INPUTS, VAL  # noqa: E402
from eegz.neural import build_dac, load_state_into, read_card, resolve_model_path, save_model  # noqa: E402
from eegz.relookup import encode_windows, refit_output_projections, switch_to_distance_lookup  # noqa: E402
from eegz.train import RELOOKUP_WINDOWS, WindowSampler, load_recordings, split_subjects, token_usage  # noqa: E402

WINDOW = 1024  # 4 s at 256 Hz, as training draws them


def main() -> None:
    import torch
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--windows", type=int, default=RELOOKUP_WINDOWS)
    args = parser.parse_args()
    torch.manual_seed(0)
    out = args.out
    shipped = resolve_model_path(None)
    _, config = read_card(shipped)
    recordings = load_recordings(INPUTS, config.sample_rate)
    train_ids, _ = split_subjects(sorted({r.subject for r in recordings}), 0.2, VAL)
    train_rows = [r for r in recordings if r.subject in train_ids]
    windows = WindowSampler(train_rows, WINDOW, 1, 2).batch(args.windows)[0][:, 0]
    model = build_dac(config)
    load_state_into(model, shipped)
    latent = encode_windows(model, windows)  # the encoder keeps its weights: one pass serves both fits
    switched = switch_to_distance_lookup(model, latent)
    refitted = refit_output_projections(model, latent)
    print("latent left after each stage, codebooks by k-means:", " ".join(f"{v:.3f}" for v in switched))
    print("                  ... and out_proj by least squares:", " ".join(f"{v:.3f}" for v in refitted))
    config = replace(config, code_lookup="euclidean")
    table = WindowSampler(train_rows, WINDOW, 1, 1).batch(512)[0][:, 0]  # token tables as train's save draws them
    new_card = {"training": {"from_model": shipped.name, "refit": "benchmarks/refit_projections.py",
                             "windows": args.windows,
                             "latent_left_switched": switched, "latent_left_refitted": refitted}}
    save_model(model, config, out, new_card, token_usage(model, table, config.n_codebooks))
    print(f"wrote {out} ({json.dumps(config.code_lookup)} lookup)")


if __name__ == "__main__":
    main()
