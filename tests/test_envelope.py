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


BANDS_256 = envelope.channel_bands(RATE)  # 10: 30 .. 128 Hz


def _band_power_db(v: np.ndarray) -> np.ndarray:
    levels = envelope.levels(v, RATE, RATE / 2, BANDS_256)
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
    stored = envelope.levels(x, RATE, RATE / 2, BANDS_256)
    assert len(stored) == 10 and all(stored)
    z = envelope.apply(y, stored, RATE, RATE / 2, seed=7)
    np.testing.assert_allclose(_band_power_db(z), _band_power_db(x), atol=1.0)  # the taper costs a little
    assert np.max(np.abs(_band_power_db(y) - _band_power_db(x))) > 5.0
    np.testing.assert_array_equal(z, envelope.apply(y, stored, RATE, RATE / 2, seed=7))  # the same noise every time
    assert not np.array_equal(z, envelope.apply(y, stored, RATE, RATE / 2, seed=8))
    below = np.fft.rfft(z - y)[f < 29]  # nothing changes below the bands but the fade's leakage
    assert np.abs(below).max() < 0.05 * np.abs(np.fft.rfft(y)[f < 29]).max()


def test_format_4_bands_stop_at_the_channels_nyquist_frequency():
    """Format 4 (codec rate): a 160-Hz channel (eegmmidb) has its top band at 74-80 Hz; nothing is added
    above 80 Hz."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(4096)
    stored = envelope.levels(x, RATE, 80.0, envelope.CODEC_RATE_BANDS)
    assert stored[-1] == stored[-2] == 0 and stored[-3] > 0  # 86-100 and 100-128 Hz: no bins; 74-86: 74-80
    z = envelope.apply(np.zeros(4096), stored, RATE, 80.0, seed=1)
    f = np.fft.rfftfreq(4096, 1 / RATE)
    power = np.abs(np.fft.rfft(z)) ** 2
    assert power[f >= 84].sum() < 1e-4 * power[(f >= 70) & (f < 80)].sum()  # the fades' leakage only


def test_zero_levels_leave_the_decoded_signal_alone():
    y = np.sin(np.arange(4096) * 0.3)
    np.testing.assert_array_equal(envelope.apply(y, bytes(BANDS_256), RATE, RATE / 2, seed=0), y)


def test_channel_rate_bands_reach_the_channels_nyquist_frequency():
    """Format 5: a 500-Hz channel stores 13 bands (up to 250 Hz), a 160-Hz one 8 (74-80 Hz last); what the
    codec drops above its own 128 Hz Nyquist frequency is filled back to the stored power."""
    assert [envelope.channel_bands(r) for r in (160.0, 173.61, 256.0, 500.0, 512.0, 2048.0)] == [8, 9, 10, 13, 13, 16]
    rate, n = 500.0, 8000
    x = 0.01 * np.random.default_rng(3).standard_normal(n)
    f = np.fft.rfftfreq(n, 1 / rate)
    spectrum = np.fft.rfft(x)
    spectrum[f >= 128] = 0.0  # what a 256-Hz codec gives back
    y = np.fft.irfft(spectrum, n)
    stored = envelope.levels(x, rate, rate / 2, envelope.channel_bands(rate))
    assert len(stored) == 13 and all(stored)
    z = envelope.apply(y, stored, rate, rate / 2, seed=5)
    again = envelope.levels(z, rate, rate / 2, 13)
    assert max(abs(a - b) for a, b in zip(again, stored)) <= 2  # within 1 dB (the fades cost a little)


def _eeg(recording) -> tuple[np.ndarray, float]:
    roles = channel_roles(recording.header.signals)
    idx = [i for i, r in enumerate(roles) if r == NEURAL]
    signals = recording.header.signals
    return np.stack([signals[i].to_physical(recording.digital[i]) for i in idx]), signals[idx[0]].sample_rate


def test_the_envelope_restores_gamma_power_on_the_example(lossy_example, tmp_path):
    """Measured on the held-out example (500 Hz) at 6 codebooks with the default model (2026-11-26, format 5):
    gamma (30-70 Hz) power error 0.03 with the envelope, 0.68 without; high gamma (70-250 Hz) 0.45 against
    0.89 (format 4, at the codec rate: 0.86; the rest is a burst in the last 3 s and clicks at block seams,
    which a block's stationary noise does not place in time); PRDN 24.8 % against 21.8 %."""
    plain = tmp_path / "plain.eegz"
    api.compress(EXAMPLE, plain, codebooks=6, device="cpu", band_envelope=False)
    x, rate = _eeg(read_edf(EXAMPLE))
    results = {}
    for name, path in (("envelope", lossy_example[6]), ("plain", plain)):
        api.decompress(path, tmp_path / f"{name}.edf", device="cpu")
        y, _ = _eeg(read_edf(tmp_path / f"{name}.edf"))
        errors = [band_power_errors(a, b, rate) for a, b in zip(x, y)]
        results[name] = (np.mean([e["gamma"] for e in errors]), np.mean([e["high_gamma"] for e in errors]),
                         prdn((x - x.mean(1, keepdims=True)).ravel(), (y - x.mean(1, keepdims=True)).ravel()))
    assert results["envelope"][0] < 0.10 < 0.5 < results["plain"][0], results
    assert results["envelope"][1] < 0.6 < 0.8 < results["plain"][1], results
    assert results["envelope"][2] < results["plain"][2] + 5.0, results
    assert api.info(lossy_example[6])["format_version"] == 5
    assert plain.stat().st_size < lossy_example[6].stat().st_size < plain.stat().st_size * 1.025
