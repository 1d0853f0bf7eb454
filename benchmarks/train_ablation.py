"""Training ablation: every model on the same validation windows, with the metrics that training logs.

The validation subjects are eegmat Subject14-17 and Bonn segments 051-070 of every set, loaded and
normalized exactly as `eegz train` loads them (16-s blocks, median and 16 robust σ, at 256 Hz); each model
encodes and decodes the 4-s windows at 3, 6 and 9 codebooks. Reported per validation set: PRDN, the
relative band-power error per band (Welch over all windows) and the strongest invented spectral line
(decoded prominence over the original's, 2 Hz .. 0.95 × the recordings' own Nyquist; 1.0 is none), on
all windows of a set and, at 6 codebooks, on each subject's windows alone (the worst subject): a decoder's
copy of one subject's alpha rhythm is a line in that subject's spectrum, spread thin in the set's.

    python benchmarks/train_ablation.py NAME=MODEL.npz [NAME=MODEL.npz ...]
Writes benchmarks/results/training_ablation.{json,md} (rows of earlier runs are kept; a name replaces its row).
"""
from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the benchmarks package; eegz is the installed one

from eegz.neural import ModelConfig, build_dac, load_state_into  # noqa: E402
from eegz.train import (fixed_windows, input_name, load_recordings, reconstruction_metrics, split_subjects,  # noqa: E402
                        validation_nyquist, validation_sets)

DATA = ROOT.parent / "shared" / "data"
INPUTS = [str(DATA / "eegmat"), str(DATA / "bonn")]
VAL = ("Subject1[4-7]", "bonn-*-051-070")
RESULTS = ROOT / "benchmarks" / "results"


def evaluate(weights: Path, sets: dict, nyquists: dict, subject_rows: dict) -> dict:
    import torch
    card = json.loads(weights.with_suffix(".json").read_text())
    config = ModelConfig.from_json(card["config"])
    model = build_dac(config)
    load_state_into(model, weights)
    model.eval()
    out = {"steps": card.get("training", {}).get("steps")}
    with torch.inference_mode():
        for name, x in sets.items():
            z = model.encoder(torch.from_numpy(x)[:, None])
            for nq in (3, 6, 9):
                y = model.decoder(model.quantizer(z, nq)[0])[:, 0, :x.shape[1]].numpy()
                out.update({f"{name}_{k}_{nq}": v for k, v in reconstruction_metrics(x, y, config.sample_rate, nyquists.get(name)).items()})
                if nq == 6:
                    out.update(worst_subject_line(x, y, subject_rows.get(name, {}), config.sample_rate, nyquists.get(name), name))
    return out


def worst_subject_line(x, y, rows: dict, rate: int, nyquist, name: str) -> dict:
    """The strongest invented line at 6 codebooks on each validation subject's windows alone: the worst."""
    worst = (0.0, "", 0.0)
    for subject, index in rows.items():
        m = reconstruction_metrics(x[index], y[index], rate, nyquist)
        worst = max(worst, (m["line_ratio"], subject, m["line_hz"]))
    return {f"{name}_subject_line_6": worst[0], f"{name}_subject_line_6_subject": worst[1],
            f"{name}_subject_line_6_hz": worst[2]}


def subject_rows(recordings, val_ids: list[str]) -> dict:
    """{input name: {validation subject: its rows in that input's validation windows}}: validation_sets
    takes every recording's fixed windows in order, so each recording's rows follow the ones before it."""
    out: dict = {}
    for source, item in enumerate(INPUTS):
        start, rows = 0, {}
        for r in (r for r in recordings if r.source == source and r.subject in val_ids):
            count = len(fixed_windows([r], 1024))
            rows.setdefault(r.subject, []).extend(range(start, start + count))
            start += count
        if rows:
            out[input_name(item)] = {subject: np.array(index) for subject, index in rows.items()}
    return out


def main() -> None:
    import torch
    torch.set_num_threads(2)
    models = dict(arg.split("=", 1) for arg in sys.argv[1:])
    recordings = load_recordings(INPUTS, 256)
    _, val_ids = split_subjects(sorted({r.subject for r in recordings}), 0.2, VAL)
    sets = validation_sets(recordings, val_ids, INPUTS, 1024)
    nyquists = validation_nyquist(recordings, val_ids, INPUTS)
    subject_sets = subject_rows(recordings, val_ids)
    assert all(sum(len(v) for v in s.values()) == len(sets[k]) for k, s in subject_sets.items())
    path = RESULTS / "training_ablation.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else {}
    for name, weights in models.items():
        rows[name] = evaluate(Path(weights), sets, nyquists, subject_sets)
        print(name, json.dumps({k: v for k, v in rows[name].items() if "prdn" in k or "line" in k}),
              file=sys.stderr, flush=True)
    path.write_text(json.dumps({"date": str(date.today()), "validation": {k: len(v) for k, v in sets.items()},
                                "rows": rows}, indent=1) + "\n")
    (RESULTS / "training_ablation.md").write_text(report(rows, sets))


def report(rows: dict, sets: dict) -> str:
    lines = [f"# Training ablation ({date.today()})", "",
             "Validation windows (4 s at 256 Hz, normalized as compression does): " +
             ", ".join(f"{k} {len(v)}" for k, v in sets.items()) + ". PRDN %; band-power error (relative, "
             "over all windows) for beta and gamma (30-70 Hz); the strongest invented spectral line (×; 1.0 is none) "
             "on all windows and, at 6 codebooks, on the worst subject's windows alone (-: not measured).", ""]
    for vset in sets:
        lines += [f"## {vset}", "", "| model | steps | PRDN 3 / 6 / 9 | beta err 6 | gamma err 6 | high gamma err 6 | "
                  "line × 3 / 6 / 9 | line × 6, worst subject |", "|---|---|---|---|---|---|---|---|"]
        for name, r in rows.items():
            g = lambda k, n: r.get(f"{vset}_{k}_{n}", float("nan"))  # noqa: E731
            lines.append(f"| {name} | {r.get('steps')} | {g('prdn', 3):.1f} / {g('prdn', 6):.1f} / {g('prdn', 9):.1f} | "
                         f"{g('band_beta', 6):.2f} | {g('band_gamma', 6):.2f} | {g('band_high_gamma', 6):.2f} | "
                         f"{g('line_ratio', 3):.1f} / {g('line_ratio', 6):.1f} / {g('line_ratio', 9):.1f} | "
                         f"{worst_subject(r, vset)} |")
        lines.append("")
    return "\n".join(lines)


def worst_subject(row: dict, vset: str) -> str:
    if f"{vset}_subject_line_6" not in row:
        return "-"
    return (f"{row[f'{vset}_subject_line_6']:.2f} ({row[f'{vset}_subject_line_6_subject']}, "
            f"{row[f'{vset}_subject_line_6_hz']:.1f} Hz)")


if __name__ == "__main__":
    main()
