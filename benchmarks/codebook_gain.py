"""What each codebook buys: PRDN at 1..9 codebooks and where the quantized latent lies, per model.

On the training ablation's validation windows (eegmat Subject14-17, Bonn 051-070; train_ablation.py), each model
encodes the 4-s windows once and decodes them from their first n codebooks, n = 1..9. Reported per validation set:
PRDN at each n, and the relative squared distance of the quantized sum from the encoder's output,
||z - z_q(n)||^2 / ||z||^2. A quantizer whose later stages refine brings the sum nearer as n grows; DAC's factorized
codes (in_proj to 8 dimensions, out_proj back) can move it away, so that later codebooks undo what earlier ones
added. White Gaussian noise coded ideally would lose 23 % of its PRDN from 6 to 9 codebooks at this rate
(+0.375 bit a sample), the reference for the last column. Also each codebook's bits a code under the model's token
tables (what the entropy coder spends): models compare at equal bits, not only at equal codebook counts.

    python benchmarks/codebook_gain.py NAME=MODEL.npz [NAME=MODEL.npz ...]
Writes benchmarks/results/codebook_gain.{json,md} (rows of earlier runs are kept; a name replaces its row).
"""
from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.train_ablation import INPUTS, RESULTS, VAL  # noqa: E402
from eegz.metrics import prdn_windows  # noqa: E402
from benchmarks.rvq_reference import entropy_bits  # noqa: E402
from eegz.neural import TOKEN_COUNTS_KEY, ModelConfig, build_dac, load_state_into  # noqa: E402
from eegz.parallel import cpu_budget  # noqa: E402
from eegz.train import load_recordings, split_subjects, validation_sets  # noqa: E402

WINDOW = 1024  # 4 s at 256 Hz, as training validates
BATCH = 64


def gains(weights: Path, sets: dict) -> dict:
    import torch
    torch.set_num_threads(cpu_budget())
    config = ModelConfig.from_json(json.loads(weights.with_suffix(".json").read_text())["config"])
    model = build_dac(config)
    load_state_into(model, weights)
    model.eval()
    out = {}
    with torch.inference_mode():
        for name, x in sets.items():
            latents = [model.encoder(torch.from_numpy(x[s:s + BATCH])[:, None]) for s in range(0, len(x), BATCH)]
            power = sum(float((z ** 2).sum()) for z in latents)
            prdn, distance = [], []
            for n in range(1, config.n_codebooks + 1):
                quantized = [model.quantizer(z, n)[0] for z in latents]
                y = np.concatenate([model.decoder(z_q)[:, 0, :WINDOW].numpy() for z_q in quantized])
                prdn.append(round(prdn_windows(x, y), 2))
                distance.append(round(sum(float(((z - z_q) ** 2).sum()) for z, z_q in zip(latents, quantized)) / power, 3))
            out[name] = {"prdn": prdn, "latent_distance": distance}
    with np.load(weights) as stored:  # the model's token tables: what eegz's entropy coder spends a code
        if TOKEN_COUNTS_KEY in stored:
            out["bits_per_code"] = [round(entropy_bits(c), 2) for c in stored[TOKEN_COUNTS_KEY]]
    return out


def main(args: list[str]) -> None:
    recordings = load_recordings(INPUTS, 256)
    _, val = split_subjects(sorted({r.subject for r in recordings}), 0.2, VAL)
    sets = validation_sets(recordings, val, INPUTS, WINDOW)
    path = RESULTS / "codebook_gain.json"
    rows = json.loads(path.read_text()) if path.exists() else {}
    for arg in args:
        name, weights = arg.split("=", 1)
        rows[name] = gains(Path(weights), sets)
        print(name, json.dumps(rows[name]), flush=True)
    path.write_text(json.dumps(rows, indent=1))
    lines = [f"# What each codebook buys ({date.today().isoformat()})", "",
             "Validation windows of `benchmarks/train_ablation.py` (4 s at 256 Hz, normalized as compression does). "
             "PRDN % from the first n codebooks; latent distance ||z - z_q(n)||² / ||z||² of the quantized sum from the "
             "encoder's output (a quantizer whose stages refine brings it down as n grows). Last column: PRDN's fall "
             "from 6 to 9 codebooks (white Gaussian noise coded ideally: 23 %).", ""]
    for set_name in sorted({s for r in rows.values() for s in r if s != "bits_per_code"}):
        lines += [f"## {set_name}", "", "| model | PRDN at 1 .. 9 | latent distance at 1 .. 9 | 6 -> 9 |", "|---|---|---|---|"]
        for name, r in rows.items():
            if set_name in r:
                p, d = r[set_name]["prdn"], r[set_name]["latent_distance"]
                lines.append(f"| {name} | {' / '.join(f'{v:.1f}' for v in p)} | {' / '.join(f'{v:.2f}' for v in d)} | "
                             f"{100 * (1 - p[8] / p[5]):.0f} % |")
        lines.append("")
    lines += ["## Bits a code", "", "Entropy of each codebook's codes under the model's token tables (its training windows): "
              "what the entropy coder spends a frame is their sum over the codebooks kept; a codebook that uses few of "
              "its 1024 codes costs few bits. Models whose weights were not at hand when this column came: -.", "",
              "| model | bits a code, codebooks 1 .. 9 | a frame at 3 / 6 / 9 |", "|---|---|---|"]
    for name, r in rows.items():
        b = r.get("bits_per_code")
        lines.append(f"| {name} | {' / '.join(f'{v:.1f}' for v in b)} | {sum(b[:3]):.1f} / {sum(b[:6]):.1f} / {sum(b):.1f} |"
                     if b else f"| {name} | - | - |")
    lines.append("")
    (RESULTS / "codebook_gain.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
