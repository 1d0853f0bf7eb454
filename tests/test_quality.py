"""--quality: per block and channel the fewest codebooks meeting a target; info shows what was kept."""
import numpy as np
import pytest

from eegz import api
from eegz.edf import read_edf
from eegz.errors import EegzError
from eegz.lossy import meets_quality

from .conftest import EXAMPLE, run_cli


def test_meets_quality_reads_prdn_and_slow_band_powers():
    rng = np.random.default_rng(3)
    t = np.arange(4096) / 256.0
    x = np.sin(2 * np.pi * 10 * t) + 0.1 * rng.standard_normal(4096)
    assert meets_quality(x, x, 1.0, 256.0)
    assert meets_quality(x, x + 0.05 * rng.standard_normal(4096), 10.0, 256.0)
    assert not meets_quality(x, x + 0.3 * rng.standard_normal(4096), 10.0, 256.0)  # PRDN about 30 %
    assert not meets_quality(x, 0.85 * x, 20.0, 256.0)  # PRDN 15 %, but alpha power 28 % low


def test_quality_picks_codebooks_per_block_and_channel(tmp_path):
    """Measured on the example with the default model (2026-11-26): Q = 20 keeps 5-9 codebooks, 309 bit/s per
    channel, PRDN 23.7 %; Q = 25 mostly 4-5, 231 bit/s, PRDN 26.8 % (fixed 6: 249 bit/s, 24.8 %)."""
    sizes, counts = {}, {}
    for q in (20.0, 100.0):
        out = tmp_path / f"q{q:g}.eegz"
        api.compress(EXAMPLE, out, quality=q, device="cpu")
        summary = api.info(out)
        counts[q], sizes[q] = summary["codebook_counts"], out.stat().st_size
        assert summary["codebooks"] == 9 and summary["codec"]["quality"] == q
        api.decompress(out, tmp_path / f"q{q:g}.edf", device="cpu")
        assert len(read_edf(tmp_path / f"q{q:g}.edf").digital[0]) == len(read_edf(EXAMPLE).digital[0])
    assert counts[100.0] == {3: 80}  # 20 EEG channels × 4 blocks, all at the fewest codebooks
    assert len(counts[20.0]) >= 3 and sum(counts[20.0].values()) == 80
    assert sizes[100.0] < sizes[20.0]
    listing = run_cli("info", tmp_path / "q20.eegz").stdout
    assert "quality       block PRDN and delta..beta power within 20 %" in listing and "token streams" in listing


@pytest.mark.parametrize("q", [0.0, -5.0, float("nan"), 101.0])
def test_a_bad_quality_is_refused(tmp_path, q):
    with pytest.raises(EegzError, match="--quality"):
        api.compress(EXAMPLE, tmp_path / "x.eegz", quality=q, device="cpu")
