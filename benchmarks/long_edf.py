"""Write a long EDF+ of real EEG for the streaming benchmarks: 21 signals at 256 Hz plus annotations.

The eegmat recordings (19 EEG channels, A2-A1 and ECG at 500 Hz) are resampled to 256 Hz and laid end to
end, cycling through them until the asked-for length, at a clinical resolution of 0.1 µV per digital step
(ECG: 0.1 µV too, in mV units). One data record per second. The file is written record batch by record
batch, so a 24 h file (0.9 GB) needs little memory.

    python benchmarks/long_edf.py HOURS OUT.edf [DATA_DIR]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the benchmarks package; eegz is the installed one

from eegz.dsp import resample  # noqa: E402
from eegz.edf import digital_to_bytes, read_edf  # noqa: E402

RATE = 256
ANNOTATION_SAMPLES = 32  # 64 bytes per record: the record's time-keeping TAL
UV_PER_STEP = 0.1


def _field(value: str, width: int) -> bytes:
    return value.ljust(width)[:width].encode("ascii")


def header(labels: list[str], units: list[str], n_records: int) -> bytes:
    n = len(labels) + 1
    head = (_field("0", 8) + _field("X X X X", 80) + _field("Startdate 01-JAN-2020 X eegz long benchmark", 80)
            + _field("01.01.20", 8) + _field("00.00.00", 8) + _field(str(256 * (n + 1)), 8) + _field("EDF+C", 44)
            + _field(str(n_records), 8) + _field("1", 8) + _field(str(n), 4))
    span = 32767 * UV_PER_STEP
    cols = {
        "label": [_field(x, 16) for x in labels] + [_field("EDF Annotations", 16)],
        "transducer": [_field("AgAgCl electrode", 80)] * len(labels) + [_field("", 80)],
        "unit": [_field(u, 8) for u in units] + [_field("", 8)],
        "pmin": [_field(f"{-span / (1000 if u == 'mV' else 1):.4f}", 8) for u in units] + [_field("-1", 8)],
        "pmax": [_field(f"{span / (1000 if u == 'mV' else 1):.4f}", 8) for u in units] + [_field("1", 8)],
        "dmin": [_field("-32767", 8)] * len(labels) + [_field("-32768", 8)], "dmax": [_field("32767", 8)] * n,
        "prefilter": [_field("HP:0.1Hz LP:70Hz", 80)] * len(labels) + [_field("", 80)],
        "spr": [_field(str(RATE), 8)] * len(labels) + [_field(str(ANNOTATION_SAMPLES), 8)],
        "reserved": [_field("", 32)] * n,
    }
    return head + b"".join(b"".join(v) for v in cols.values())


def sources(data: Path):
    """(labels, units, digital int16 array signals × samples at 256 Hz) of each eegmat recording, cycled."""
    files = sorted((data / "eegmat").glob("Subject*.edf"))
    if not files:
        raise SystemExit(f"no eegmat recordings under {data}")
    while True:
        for path in files:
            rec = read_edf(path)
            sigs = [s for s in rec.header.signals if not s.is_annotation]
            rows = []
            for s in sigs:
                phys = s.to_physical(rec.digital[s.index]) * (1000.0 if s.physical_dimension == "mV" else 1.0)
                rows.append(np.clip(np.round(resample(phys, s.sample_rate, RATE) / UV_PER_STEP), -32767, 32767))
            units = ["mV" if s.physical_dimension == "mV" else "uV" for s in sigs]
            yield [s.label for s in sigs], units, np.asarray(rows, np.int16)


def tal(second: int) -> bytes:
    text = f"+{second}\x14\x14\x00".encode("ascii")
    return text.ljust(2 * ANNOTATION_SAMPLES, b"\x00")


def write(hours: float, out: Path, data: Path) -> None:
    n_records = int(round(hours * 3600))
    feed = sources(data)
    labels, units, buffer = next(feed)
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as f:
        f.write(header(labels, units, n_records))
        done = 0
        while done < n_records:
            while buffer.shape[1] < 60 * RATE:
                buffer = np.concatenate([buffer, next(feed)[2]], axis=1)
            batch = min(60, n_records - done, buffer.shape[1] // RATE)
            chunk, buffer = buffer[:, :batch * RATE], buffer[:, batch * RATE:]
            records = chunk.reshape(len(labels), batch, RATE).transpose(1, 0, 2)
            for r in range(batch):
                f.write(digital_to_bytes(records[r].reshape(-1), 2).tobytes())
                f.write(tal(done + r))
            done += batch
    tmp.replace(out)


if __name__ == "__main__":
    hours, out = float(sys.argv[1]), Path(sys.argv[2])
    write(hours, out, Path(sys.argv[3]) if len(sys.argv) > 3 else ROOT.parent / "shared" / "data")
