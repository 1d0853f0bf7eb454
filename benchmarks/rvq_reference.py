"""What residual vector quantization alone gives at the neural codec's bits: k-means RVQ of raw 64-sample frames.

The neural codec spends 10 bits a codebook a 64-sample frame (hop 64 at 256 Hz). This benchmark codes the same
frames with no network at all: a residual vector quantizer whose stages (1024 codes each) are fitted by k-means to
the training subjects' frames (normalized as compression normalizes them), and tests it on the training ablation's
validation windows (eegmat Subject14-17, Bonn 051-070; train_ablation.py). A learned encoder and decoder should
beat this reference at every codebook count; `codebook_gain.md` holds the trained models' numbers.

Variants, each stage's code chosen from 1024 vectors:
- `full`: Euclidean nearest vector in the frame's 64 dimensions;
- `factorized8`: as DAC's factorized codes, the residual is projected to 8 dimensions (here its 8 principal
  components in the training frames) and quantized there, nearest by Euclidean distance;
- `factorized8-cosine`: DAC's rule, nearest by cosine in those 8 dimensions, the code's own vector (not normalized)
  added back; fitted as spherical k-means with each code the mean of its frames.

    python benchmarks/rvq_reference.py [VARIANT ...]
Writes benchmarks/results/rvq_reference.{json,md} (a variant's row replaces its earlier one).
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
from eegz.parallel import cpu_budget  # noqa: E402
from eegz.neural import distance_scores  # noqa: E402
from eegz.relookup import kmeans  # noqa: E402
from eegz.train import load_recordings, reconstruction_metrics, split_subjects, validation_nyquist, validation_sets  # noqa: E402

FRAME = 64  # samples a frame: the codec's hop at 256 Hz
CODES = 1024
STAGES = 9
MAX_FRAMES = 250_000  # training frames drawn (of ~300 000)
ITERATIONS = 25
CHUNK = 50_000
VARIANTS = ("full", "factorized8", "factorized8-cosine")


class Stage:
    """One quantizer stage: an optional projection (rows: the subspace's basis) and its codes in that space."""

    def __init__(self, basis, codes, cosine: bool):
        self.basis, self.codes, self.cosine = basis, codes, cosine

    def choose(self, r):
        import torch
        p = r if self.basis is None else r @ self.basis.T
        if self.cosine:
            scores = torch.nn.functional.normalize(p, dim=1) @ torch.nn.functional.normalize(self.codes, dim=1).T
            return scores.argmax(1)
        return distance_scores(p, self.codes).argmax(1)

    def vectors(self, index):
        q = self.codes[index]
        return q if self.basis is None else q @ self.basis

    def quantize(self, r):
        import torch
        return torch.cat([self.vectors(self.choose(r[s:s + CHUNK])) for s in range(0, len(r), CHUNK)])


def fit_stage(r, variant: str, generator):
    """k-means of the residual frames `r` (in the variant's subspace) to CODES codes."""
    import torch
    basis = None
    if variant != "full":
        _, _, vt = torch.linalg.svd(r[:CHUNK] - r[:CHUNK].mean(0), full_matrices=False)
        basis = vt[:8]
    p = r if basis is None else r @ basis.T
    cosine = variant.endswith("cosine")
    codes = kmeans(p, CODES, ITERATIONS, generator, assign=lambda rows, centres: Stage(None, centres, cosine).choose(rows))
    stage = Stage(basis, codes, cosine)
    return stage


def entropy_bits(counts: np.ndarray) -> float:
    """Bits a code under its stage's own code frequencies: what an entropy coder with token tables (as eegz's,
    spec 6) spends."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def training_frames(recordings, train_ids, rng) -> np.ndarray:
    frames = [sig[:len(sig) // FRAME * FRAME].reshape(-1, FRAME) for r in recordings if r.subject in train_ids
              for sig in r.signals]
    frames = np.concatenate(frames).astype(np.float32)
    return frames[rng.permutation(len(frames))[:MAX_FRAMES]]


def evaluate(variant: str, train: np.ndarray, sets: dict, nyquists: dict) -> dict:
    import torch
    torch.set_num_threads(cpu_budget())
    generator = torch.Generator().manual_seed(0)
    residual, stages, bits = torch.from_numpy(train), [], []
    for _ in range(STAGES):
        stages.append(fit_stage(residual, variant, generator))
        index = torch.cat([stages[-1].choose(residual[s:s + CHUNK]) for s in range(0, len(residual), CHUNK)])
        bits.append(round(entropy_bits(np.bincount(index.numpy(), minlength=CODES)), 2))
        residual = residual - stages[-1].vectors(index)
    out = {"bits_per_code": bits}
    for name, x in sets.items():
        res = torch.from_numpy(x.reshape(-1, FRAME))
        y = torch.zeros_like(res)
        prdn = []
        for n, stage in enumerate(stages, 1):
            q = stage.quantize(res)
            y, res = y + q, res - q
            decoded = y.numpy().reshape(x.shape)
            metrics = reconstruction_metrics(x, decoded, 256, nyquists.get(name))
            prdn.append(round(metrics["prdn"], 2))
            if n in (3, 6, 9):
                out[f"{name}_line_{n}"] = [round(metrics["line_ratio"], 2), round(metrics["line_hz"], 1)]
        out[f"{name}_prdn"] = prdn
    return out


def main(args: list[str]) -> None:
    variants = args or list(VARIANTS)
    recordings = load_recordings(INPUTS, 256)
    train_ids, val = split_subjects(sorted({r.subject for r in recordings}), 0.2, VAL)
    sets = validation_sets(recordings, val, INPUTS, 1024)
    nyquists = validation_nyquist(recordings, val, INPUTS)
    train = training_frames(recordings, train_ids, np.random.default_rng(0))
    path = RESULTS / "rvq_reference.json"
    rows = json.loads(path.read_text()) if path.exists() else {}
    for variant in variants:
        rows[variant] = evaluate(variant, train, sets, nyquists)
        print(variant, json.dumps(rows[variant]), flush=True)
        path.write_text(json.dumps(rows, indent=1))
    write_table(rows, len(train))


def write_table(rows: dict, n_train: int) -> None:
    gain = json.loads((RESULTS / "codebook_gain.json").read_text())
    shipped = next(k for k in gain if k.endswith("(shipped)"))
    lines = [f"# Residual vector quantization alone, at the neural codec's bits ({date.today().isoformat()})", "",
             f"k-means RVQ of raw {FRAME}-sample frames (1024 codes a stage, {n_train} training frames of the training "
             "subjects), tested on the validation windows of `train_ablation.py`; 10 bits a stage a frame = 40 bit/s "
             "a stage. PRDN % after 1 .. 9 stages; the strongest invented line (x, at Hz) at 3 / 6 / 9 stages. "
             f"The shipped model's row is from `codebook_gain.md` ({shipped}).", ""]
    for name in ("eegmat", "bonn"):
        lines += [f"## {name}", "", "| quantizer | PRDN at 1 .. 9 | line x at 3 / 6 / 9 | bits a frame at 6 |", "|---|---|---|---|",
                  f"| shipped DAC model | {' / '.join(f'{v:.1f}' for v in gain[shipped][name]['prdn'])} | see training_ablation.md "
                  f"| {_frame_bits(gain[shipped])} |"]
        for variant, r in rows.items():
            line = " / ".join(f"{r[f'{name}_line_{n}'][0]:.2f} ({r[f'{name}_line_{n}'][1]:.0f} Hz)" for n in (3, 6, 9))
            lines.append(f"| k-means RVQ, {variant} | {' / '.join(f'{v:.1f}' for v in r[f'{name}_prdn'])} | {line} | "
                         f"{_frame_bits(r)} |")
        lines.append("")
    lines += ["Bits a frame: the entropy of the first 6 stages' codes under their own frequencies (the k-means "
              "quantizers: on their training frames; the model: its token tables), what an entropy coder spends; "
              "-: not measured (the run came before this column).", ""]
    (RESULTS / "rvq_reference.md").write_text("\n".join(lines))


def _frame_bits(row: dict) -> str:
    bits = row.get("bits_per_code")
    return f"{sum(bits[:6]):.1f}" if bits else "-"


if __name__ == "__main__":
    main(sys.argv[1:])
