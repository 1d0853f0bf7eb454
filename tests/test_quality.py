"""--quality: per block and channel the fewest codebooks meeting a target; info shows what was kept."""
import numpy as np
import pytest

from eegz import api
from eegz.edf import read_edf
from eegz.errors import EegzError
from eegz.lossy import meets_quality, with_context
from eegz.neural import ABSENT_CODE
from eegz.metrics import band_power_errors

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
    """Measured on the example with the default model (2026-11-26, eegz 0.4): Q = 20 keeps 4-9 codebooks, 299
    bit/s per channel, PRDN 22.9 %; Q = 25 mostly 4-5, 225 bit/s, PRDN 26.1 % (fixed 6: 252 bit/s, 23.7 %)."""
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
    # where neighbouring blocks keep different numbers of codebooks, the one with more takes the other's as
    # context (format 5): without it, each such seam clicked (high-gamma power error 2.4-2.7; now about 0.25)
    x, y = (read_edf(p) for p in (EXAMPLE, tmp_path / "q20.edf"))
    errors = [band_power_errors(s.to_physical(a), s.to_physical(b), s.sample_rate)["high_gamma"]
              for s, a, b in zip(x.header.signals, x.digital, y.digital) if s.label.startswith("EEG")]
    assert np.mean(errors) < 0.6, errors
    listing = run_cli("info", tmp_path / "q20.eegz").stdout
    assert "quality       block PRDN and delta..beta power within 20 %" in listing and "token streams" in listing


def test_a_neighbour_with_fewer_codebooks_still_gives_context():
    codes = np.arange(12, dtype=np.uint16).reshape(3, 4)
    left, right = np.full((2, 5), 7, np.uint16), np.full((4, 5), 9, np.uint16)
    full, n_left = with_context(codes, left, right, context=2)
    assert n_left == 2 and full.shape == (3, 8)
    np.testing.assert_array_equal(full[:, :2], [[7, 7], [7, 7], [ABSENT_CODE, ABSENT_CODE]])
    np.testing.assert_array_equal(full[:, 6:], np.full((3, 2), 9))
    old, n_old = with_context(codes, left, right, context=2, partial=False)  # formats 3-4: no context
    assert n_old == 0 and old.shape == (3, 6)


@pytest.mark.parametrize("q", [0.0, -5.0, float("nan"), 101.0])
def test_a_bad_quality_is_refused(tmp_path, q):
    with pytest.raises(EegzError, match="--quality"):
        api.compress(EXAMPLE, tmp_path / "x.eegz", quality=q, device="cpu")
