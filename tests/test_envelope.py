"""The band envelope (spec 6.4): levels, the noise generator, and what it does to a decoded recording."""
import numpy as np

from eegz import api, envelope
from eegz.channels import NEURAL, channel_roles
from eegz.edf import read_edf
from eegz.metrics import band_power_errors, prdn

from .conftest import EXAMPLE

RATE = 256.0


def test_splitmix64_matches_the_reference_sequence():
    # SplitMix64 from state 0 (Steele, Lea and Flood 2014; the sequence every implementation publishes)
    assert [int(v) for v in envelope.splitmix64(0, 3)] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def _band_power_db(v: np.ndarray) -> np.ndarray:
    levels = envelope.levels(v, RATE, RATE / 2)
    return np.array([(lv - envelope.LEVEL_OFFSET) / 2.0 for lv in levels])  # dB, as stored (0.5 dB steps)


def test_levels_and_apply_bring_every_band_to_the_stored_power():
    rng = np.random.default_rng(1)
    n = 4096  # one 16-s block at 256 Hz
    x = 0.01 * rng.standard_normal(n)
    spectrum = np.fft.rfft(x)
    f = np.fft.rfftfreq(n, 1 / RATE)
    lost = spectrum.copy()
    lost[(f >= 30) & (f < 60)] *= 0.3  # the codec's smoothing: too little fast activity
    lost[(f >= 100)] *= 3.0  # and something it invents
    y = np.fft.irfft(lost, n)
    stored = envelope.levels(x, RATE, RATE / 2)
    assert len(stored) == len(envelope.BANDS_HZ) and all(stored)
    z = envelope.apply(y, stored, RATE, RATE / 2, seed=7)
    np.testing.assert_allclose(_band_power_db(z), _band_power_db(x), atol=1.0)  # the taper costs a little
    assert np.max(np.abs(_band_power_db(y) - _band_power_db(x))) > 5.0
    np.testing.assert_array_equal(z, envelope.apply(y, stored, RATE, RATE / 2, seed=7))  # the same noise every time
    assert not np.array_equal(z, envelope.apply(y, stored, RATE, RATE / 2, seed=8))
    below = np.fft.rfft(z - y)[f < 29]  # nothing changes below the bands but the fade's leakage
    assert np.abs(below).max() < 0.05 * np.abs(np.fft.rfft(y)[f < 29]).max()


def test_bands_stop_at_the_channels_nyquist_frequency():
    """A 160-Hz channel (eegmmidb): its top band is 74-80 Hz; nothing is added above 80 Hz."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(4096)
    stored = envelope.levels(x, RATE, 80.0)
    assert stored[-1] == stored[-2] == 0 and stored[-3] > 0  # 86-100 and 100-128 Hz: no bins; 74-86: 74-80
    z = envelope.apply(np.zeros(4096), stored, RATE, 80.0, seed=1)
    f = np.fft.rfftfreq(4096, 1 / RATE)
    power = np.abs(np.fft.rfft(z)) ** 2
    assert power[f >= 84].sum() < 1e-4 * power[(f >= 70) & (f < 80)].sum()  # the fades' leakage only


def test_zero_levels_leave_the_decoded_signal_alone():
    y = np.sin(np.arange(4096) * 0.3)
    np.testing.assert_array_equal(envelope.apply(y, bytes(len(envelope.BANDS_HZ)), RATE, RATE / 2, seed=0), y)


def _eeg(recording) -> tuple[np.ndarray, float]:
    roles = channel_roles(recording.header.signals)
    idx = [i for i, r in enumerate(roles) if r == NEURAL]
    signals = recording.header.signals
    return np.stack([signals[i].to_physical(recording.digital[i]) for i in idx]), signals[idx[0]].sample_rate


def test_the_envelope_restores_gamma_power_on_the_example(lossy_example, tmp_path):
    """Measured on the held-out example at 6 codebooks with the default model (2026-11-26): gamma (30-70 Hz)
    power error 0.03 with the envelope, 0.68 without; PRDN 24.9 % against 21.8 %."""
    plain = tmp_path / "plain.eegz"
    api.compress(EXAMPLE, plain, codebooks=6, device="cpu", band_envelope=False)
    x, rate = _eeg(read_edf(EXAMPLE))
    results = {}
    for name, path in (("envelope", lossy_example[6]), ("plain", plain)):
        api.decompress(path, tmp_path / f"{name}.edf", device="cpu")
        y, _ = _eeg(read_edf(tmp_path / f"{name}.edf"))
        gamma = np.mean([band_power_errors(a, b, rate)["gamma"] for a, b in zip(x, y)])
        results[name] = (gamma, prdn((x - x.mean(1, keepdims=True)).ravel(), (y - x.mean(1, keepdims=True)).ravel()))
    assert results["envelope"][0] < 0.10 < 0.5 < results["plain"][0], results
    assert results["envelope"][1] < results["plain"][1] + 5.0, results
    assert api.info(lossy_example[6])["format_version"] == 4
    assert plain.stat().st_size < lossy_example[6].stat().st_size < plain.stat().st_size * 1.02
