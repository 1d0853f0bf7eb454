"""Shared fixtures: the bundled example, the shared data folder (tests skip cleanly without it), and
lossy encodings of the example made once per session with the shipped model."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "eegmat_Subject17_2.edf"
SHARED = Path(os.environ.get("EEGZ_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_files(pattern: str = "**/*") -> list[Path]:
    if not SHARED.is_dir():
        return []
    return sorted(p for p in SHARED.glob(pattern) if p.is_file() and p.suffix.lower() in (".edf", ".bdf"))


def shared_param(pattern: str = "**/*"):
    """Parameters over shared files, or one skipped parameter when the folder is absent."""
    files = shared_files(pattern)
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason="../shared/data is not present"))]
    return [pytest.param(p, id=str(p.relative_to(SHARED))) for p in files]


def line_power_ratio(x, y, rate: float, frequency: float) -> float:
    """Decoded (y) over original (x) power at a frequency (Welch, 8-s segments): how much of a line comes back."""
    from scipy.signal import welch
    f, px = welch(np.asarray(x, float), rate, nperseg=int(8 * rate))
    _, py = welch(np.asarray(y, float), rate, nperseg=int(8 * rate))
    i = int(np.argmin(np.abs(f - frequency)))
    return float(py[i] / px[i])


def token_streams(path):
    """(block, index entry, signal, TokenStream) of each token stream of a file."""
    from eegz.container import Container
    from eegz.lossy import frame_of, hop_of
    from eegz.tokens import token_tables, unpack_tokens
    from eegz.neural import read_token_counts
    with Container(path) as c:
        codec, duration = c.meta["codec"], c.meta["edf"]["record_duration"]
        tables = token_tables(read_token_counts(codec["model"], codec["weights_sha256"]))
        rate, hop = codec["config"]["sample_rate"], hop_of(codec["config"])
        for k, e in enumerate(c.blocks):
            frames = (frame_of(e.first_record + e.record_count, duration, rate, hop)
                      - frame_of(e.first_record, duration, rate, hop))
            for s in c.read_block(k):
                if s.kind == 3:
                    yield k, e, s.signal, unpack_tokens(s.data, tables, frames, codec["n_codebooks"], c.version,
                                                        e.record_count * duration)


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eegz.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


@pytest.fixture(scope="session")
def lossy_example(tmp_path_factory):
    """The example compressed at 3, 6 and 9 codebooks: {n: path}."""
    from eegz import api
    out = {}
    folder = tmp_path_factory.mktemp("lossy")
    for n in (3, 6, 9):
        out[n] = folder / f"example_{n}.eegz"
        api.compress(EXAMPLE, out[n], codebooks=n, device="cpu")
    return out


def assert_near_reference(edf: Path, reference: dict) -> None:
    """Within one digital unit of the recorded decode at every listed sample, and sums that at most 1 % of
    the samples differing by one unit could explain."""
    from eegz.edf import read_edf
    rec = read_edf(edf)
    signals = [np.asarray(d, np.int64) for s, d in zip(rec.header.signals, rec.digital) if not s.is_annotation]
    assert len(signals) == len(reference["samples"]) == len(reference["sums"])
    for d, listed, (n, total, squares) in zip(signals, reference["samples"], reference["sums"]):
        assert len(d) == n
        assert np.max(np.abs(d[::reference["stride"]] - np.array(listed.split(), np.int64))) <= 1
        flips = n // 100 + 1
        assert abs(int(d.sum()) - total) <= flips
        assert abs(int((d * d).sum()) - squares) <= flips * (2 * int(np.max(np.abs(d))) + 1)
