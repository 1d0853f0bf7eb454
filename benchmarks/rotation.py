"""Transform mode with the channels rotated to their principal components (spec 8.1) against each channel
coded on its own (--no-channel-rotation), at the same bits per second per channel, in the same run.

Recordings: the held-out eegmat subjects (Subject14-17, 20 EEG channels at 500 Hz, 62 s) and two eegmmidb
runs of subject S001 (64 channels at 160 Hz, about 2 min): R03, on which the matrix's precision and the
rotation guard were chosen, and R07, which no choice looked at. Band envelope on (the default). PRDN over
the EEG channels in digital units, each channel's mean removed from the reference; the bits are the file's
own (side information included). Writes benchmarks/results/rotation.md and .json.
    python benchmarks/rotation.py [SHARED_DATA_DIR]
"""
from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

from eegz import api
from eegz.channels import NEURAL, channel_roles
from eegz.edf import read_edf
from eegz.metrics import prdn_pooled

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
FILES = [f"eegmat/Subject{n}_2.edf" for n in (14, 15, 16, 17)] + ["eegmmidb/S001/S001R03.edf", "eegmmidb/S001/S001R07.edf"]
RATES = (60.0, 100.0, 250.0)


def eeg_prdn(original, decoded) -> float:
    """PRDN over the EEG channels, in digital units."""
    eeg = [i for i, role in enumerate(channel_roles(original.header.signals)) if role == NEURAL]
    return prdn_pooled([original.digital[i].astype(np.float64) for i in eeg],
                       [decoded.digital[i].astype(np.float64) for i in eeg])


def coded(path: Path, bitrate: float, rotate: bool, folder: Path) -> tuple[float, float]:
    """(PRDN %, bits per second per EEG channel) of one transform file."""
    out, back = folder / "x.eegz", folder / "x.edf"
    summary = api.compress(path, out, mode="transform", bitrate=bitrate, rotate_channels=rotate, force=True)
    api.decompress(out, back, force=True)
    return eeg_prdn(read_edf(path), read_edf(back)), summary["bits_per_second_per_channel"]


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in FILES:
            path = DATA / name
            if not path.exists():
                print(f"skipped {name}: not found", file=sys.stderr)
                continue
            rec = read_edf(path)
            roles = channel_roles(rec.header.signals)
            n_eeg = roles.count(NEURAL)
            rate = next(s.sample_rate for s, r in zip(rec.header.signals, roles) if r == NEURAL)
            for bitrate in RATES:
                (apart, bits_apart), (rotated, bits_rotated) = (coded(path, bitrate, r, Path(tmp)) for r in (False, True))
                row = {"file": name, "eeg_channels": n_eeg, "rate_hz": rate, "bitrate": bitrate,
                       "apart_prdn": apart, "apart_bits": bits_apart, "rotated_prdn": rotated, "rotated_bits": bits_rotated}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "rotation.json").write_text(json.dumps({"date": str(date.today()), "machine": platform.platform(),
                                                       "rows": rows}, indent=1))
    lines = [f"# Transform mode: channels rotated against channels apart ({date.today()}, {platform.machine()}, "
             f"{os.cpu_count()} cores)", "",
             "PRDN % over the EEG channels at the same asked bits per second per channel (the files' own bits in "
             "brackets), band envelope on. eegmmidb S001R03 is where the matrix's precision (1/64) and the "
             "rotation guard were chosen; R07 was not looked at.", "",
             "| file | EEG channels | Hz | bit/s asked | apart | rotated | rotated / apart |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['file']} | {r['eeg_channels']} | {r['rate_hz']:g} | {r['bitrate']:g} | "
                     f"{r['apart_prdn']:.1f} ({r['apart_bits']:.0f}) | {r['rotated_prdn']:.1f} ({r['rotated_bits']:.0f}) | "
                     f"{r['rotated_prdn'] / r['apart_prdn']:.2f} |")
    (results / "rotation.md").write_text("\n".join(lines) + "\n")
    print((results / "rotation.md").read_text())


if __name__ == "__main__":
    main()
