"""The fidelity measures that `eegz eval` and the benchmarks report."""
import numpy as np

from eegz.metrics import window_band_errors


def test_window_band_errors_read_the_band_not_the_slow_waves_leakage():
    """Two signals with the same large slow wave and independent white noise of equal power: on 0.5-s windows
    at 500 Hz the 70-250 Hz band holds only the noise, so its error is the two noises' difference (a median
    of about 0.2). Untapered, each window's end-to-start jump leaked the slow wave into the band, the same
    leak in both signals, and the error read near 0 (median 0.001, 90th percentile 0.007 here before eegz 0.9)."""
    rate, n = 500.0, 30 * 500
    t = np.arange(n) / rate
    rng = np.random.default_rng(11)
    slow = 3000.0 * np.sin(2 * np.pi * 3.1 * t) + 2000.0 * np.sin(2 * np.pi * 0.7 * t)
    x, y = slow + rng.normal(0, 1.0, n), slow + rng.normal(0, 1.0, n)
    errors = window_band_errors(x, y, rate)
    assert 0.1 < errors["high_gamma"]["median"] < 0.4 and errors["high_gamma"]["p90"] < 0.8
    assert window_band_errors(x, x, rate)["high_gamma"] == {"median": 0.0, "p90": 0.0}
    assert errors["delta"]["p90"] < 1e-3  # the slow waves themselves are the same in both


def test_offset_windows_see_what_lies_across_the_aligned_windows_edges():
    """120-Hz bursts 0.2 s long centred on 1, 3, 5 and 7 s (aligned windows' edges, where their Hann taper is near
    0, as the codec's block seams and time-profile parts are) in the reconstruction only: the 0.5-s windows from 0
    read them at a small error, the windows from 0.25 s, each burst in the middle of one, at a large one (measured:
    high gamma's 90th percentile 0.94 against 61)."""
    rate, n = 500.0, 10 * 500
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1.0, n)
    y = x.copy()
    for centre in (1, 3, 5, 7):
        y[centre * 500 - 50:centre * 500 + 50] += 10.0 * np.sin(2 * np.pi * 120 * np.arange(100) / rate)
    aligned = window_band_errors(x, y, rate)["high_gamma"]["p90"]
    offset = window_band_errors(x, y, rate, offset=0.25)["high_gamma"]["p90"]
    assert aligned < 1.5 and offset > 30.0 * aligned
    assert window_band_errors(x, y, rate, offset=0.25) == window_band_errors(x[125:], y[125:], rate)


def test_the_ripple_check_counts_invented_and_missed_events():
    """A burst of 120 Hz in the original is found in both; a click (a one-sample step, as a codec's block join
    can leave) in the reconstruction is an invented event; a 250-Hz-band-free channel rate gives nothing."""
    from eegz.metrics import ripple_errors
    rate, n = 500.0, 20 * 500
    t = np.arange(n) / rate
    rng = np.random.default_rng(5)
    x = 50.0 * np.sin(2 * np.pi * 9 * t) + rng.normal(0, 1.0, n)
    x[3000:3030] += 20.0 * np.sin(2 * np.pi * 120 * t[3000:3030])  # a 60-ms ripple
    y = x + rng.normal(0, 0.1, n)
    y[7000:] += 30.0  # a step: broadband, so a ripple detector sees an event
    r = ripple_errors(x, y, rate)
    assert r["original"] == 1 and r["decoded"] == 2 and r["invented"] == 1 and r["missed"] == 0
    assert abs(r["minutes"] - 20 / 60) < 1e-9
    assert ripple_errors(x[::4], y[::4], 125.0) == {}  # Nyquist 62.5 Hz: no ripple band


def test_eval_refuses_a_candidate_of_another_recording():
    """`eegz eval` of a file that is not the reference's reconstruction: one line, exit status 2."""
    from pathlib import Path

    from .conftest import EXAMPLE, run_cli
    other = Path(__file__).parents[1] / "spec" / "vectors" / "transform_runs_250.eegz"  # the example's last 16 s
    proc = run_cli("eval", EXAMPLE, other)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "is not a reconstruction of" in proc.stderr
