"""The format's test vectors (spec/vectors/): every mode and stream kind decodes to its recorded SHA-256,
the files themselves never change, and a conforming decoder's checks refuse nothing in them."""
import hashlib
import json
from pathlib import Path

import pytest

from eegz import api

from .conftest import assert_near_reference, token_streams

VECTORS = Path(__file__).parents[1] / "spec" / "vectors"
TABLE = json.loads((VECTORS / "vectors.json").read_text())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_stream_kind_and_section_has_a_vector():
    from eegz.container import Container
    kinds, identity = set(), False
    for name in TABLE:
        with Container(VECTORS / name) as c:
            identity |= c.identity is not None
            for k in range(len(c.blocks)):
                kinds |= {(s.kind, s.flags) for s in c.read_block(k)}
    assert kinds == {(0, 0), (1, 0), (2, 0), (3, 0), (3, 1), (4, 0), (5, 0), (6, 0)} and identity
    assert {TABLE[n]["mode"] for n in TABLE} == {"lossless", "near-lossless", "lossy", "transform"}
    assert {TABLE[n]["format_version"] for n in TABLE} == set(range(3, 25))


def test_a_float_vector_refuses_a_near_miss(tmp_path):
    """The reference check is not a formality: the decode of one recording at 6 codebooks fails the reference
    of another vector of the same recording at 6 codebooks (format 5: the model before the line loss, and
    envelope noise seeded without the stream's scale)."""
    out = tmp_path / "out.edf"
    api.decompress(VECTORS / "lossy_scale_seed_6.eegz", out, device="cpu")
    assert_near_reference(out, TABLE["lossy_scale_seed_6.eegz"]["decoded_reference"])
    with pytest.raises(AssertionError):
        assert_near_reference(out, TABLE["lossy_channel_envelope_6.eegz"]["decoded_reference"])


@pytest.mark.parametrize("name", sorted(TABLE))
def test_vector_decodes_to_its_recorded_checksum(name, tmp_path):
    want = TABLE[name]
    path = VECTORS / name
    assert sha256(path) == want["eegz_sha256"]  # a vector is never rewritten
    info = api.info(path)
    assert info["format_version"] == want["format_version"]
    out = tmp_path / f"out.{info['kind'].lower()}"
    api.decompress(path, out, device="cpu")
    assert out.stat().st_size == want["decoded_bytes"]
    if "decoded_reference" in want:  # a float decode: its checksum is informative (vectors/README.md)
        assert_near_reference(out, want["decoded_reference"])
    else:
        assert sha256(out) == want["decoded_sha256"]
    if want["mode"] == "lossless" and "passphrase" not in want:
        assert want["decoded_sha256"] == want["source_sha256"]
    if "passphrase" in want:
        api.decompress(path, out, device="cpu", force=True, passphrase=want["passphrase"].encode())
        assert sha256(out) == want["decoded_with_passphrase_sha256"]
    if "range" in want:
        r = want["range"]
        summary = api.decompress(path, out, start=r["start"], end=r["end"], force=True)
        assert [summary["first_record"], summary["first_record"] + summary["records"]] == r["records"]
        assert sha256(out) == r["decoded_sha256"]


def test_the_tone_vector_carries_a_tone():
    """transform_tones_241.eegz exercises spec 8.5: its one stream has the tone flag and one tone at 50.01 Hz."""
    from eegz import transform
    from eegz.container import Container
    from eegz.edf import parse_header
    with Container(VECTORS / "transform_tones_241.eegz") as c:
        stream, = [s for s in c.read_block(0) if s.kind == 5]
        signal = parse_header(c.edf_header).signals[0]
    n = signal.samples_per_record
    assert transform._HEAD.unpack_from(stream.data, 0)[4] & transform.TONES_FLAG
    (k, _, _), = transform._synthesized(stream.data, signal, n, 11).tones
    assert abs(k * signal.sample_rate / (256 * n) - 50.01) < 0.005


def test_the_lossy_tone_vector_carries_a_tone():
    """lossy_tones_6.eegz exercises spec 6.6: its one token stream carries the 50.01-Hz line as a tone."""
    from eegz.container import Container
    from eegz.edf import parse_header
    (_, entry, _, t), = token_streams(VECTORS / "lossy_tones_6.eegz")
    with Container(VECTORS / "lossy_tones_6.eegz") as c:
        signal = parse_header(c.edf_header).signals[0]
    n = entry.record_count * signal.samples_per_record
    assert any(abs(k * signal.sample_rate / (256 * n) - 50.01) < 0.005 for k in t.tones[:, 0])


def _moved_when_patched(name: str, tmp_path: Path, patch) -> tuple:
    """Vector `name`'s first five signals decoded as it is less the same decoded after `patch()` (digital units, one
    row a signal), and their sample rate."""
    import numpy as np

    from eegz.edf import read_edf
    api.decompress(VECTORS / name, tmp_path / "as_is.edf", device="cpu")
    patch()
    api.decompress(VECTORS / name, tmp_path / "patched.edf", device="cpu")
    as_is, patched = read_edf(tmp_path / "as_is.edf"), read_edf(tmp_path / "patched.edf")
    moved = np.array([a.astype(np.int64) - b for a, b in zip(as_is.digital[:5], patched.digital[:5])], np.float64)
    return moved, as_is.header.signals[0].sample_rate


def _power_share(moved, rate: float, low: float, high: float = float("inf")) -> tuple[float, float]:
    """(the share of `moved`'s power in [low, high) Hz, its RMS)."""
    import numpy as np
    power = np.abs(np.fft.rfft(moved, axis=1)) ** 2
    f = np.fft.rfftfreq(moved.shape[1], 1 / rate)
    return power[:, (f >= low) & (f < high)].sum() / power.sum(), np.sqrt(np.mean(moved ** 2))


def test_the_seams_vector_decodes_otherwise_than_format_18_beside_its_seams(tmp_path, monkeypatch):
    """lossy_seams_6.eegz exercises spec 6.4's context and seams: decoded as format 18 would decode the same streams,
    its samples move by 6.3 digital units (RMS over the first five signals) within a quarter second of its two seams
    (blocks of 16 s) and by 1.4 elsewhere."""
    import numpy as np

    from eegz import lossy
    moved, rate = _moved_when_patched("lossy_seams_6.eegz", tmp_path,
                                      lambda: monkeypatch.setattr(lossy, "TOKEN_SEAMS", 21))
    block, quarter = int(16 * rate), int(rate / 4)
    at = np.arange(moved.shape[1])
    near = np.minimum(np.abs(at - block), np.abs(at - 2 * block)) <= quarter
    assert np.sqrt(np.mean(moved[:, near] ** 2)) > 3.0 * np.sqrt(np.mean(moved[:, ~near] ** 2)) > 3.0


def test_the_high_profile_vector_shapes_only_its_band_above_70_hz(tmp_path, monkeypatch):
    """lossy_high_profile_6.eegz exercises spec 6.8's High band: each of its 16-s blocks holds a second profile of 32
    values, and decoded without it the samples differ almost only above 60 Hz (measured over the first five signals:
    by 0.98 digital units RMS, 96 % of the difference's power above 60 Hz; the rest is the rounding to digital
    units, white)."""
    import numpy as np

    from eegz import envelope
    streams = [t for *_, t in token_streams(VECTORS / "lossy_high_profile_6.eegz") if t.envelope]
    assert streams and all(len(t.high_profile) == 32 for t in streams[:5])
    moved, rate = _moved_when_patched("lossy_high_profile_6.eegz", tmp_path, lambda: monkeypatch.setattr(
        envelope, "follow_high_profile", lambda y, *args, **kwargs: np.asarray(y, np.float64)))
    share, rms = _power_share(moved, rate, 60)
    assert share > 0.9 and rms ** 2 > 0.5


def test_the_skirt_floor_vector_differs_from_format_21_only_below_30_hz(tmp_path, monkeypatch):
    """lossy_skirt_floor_3.eegz exercises spec 6.4's skirt's floor: decoded with format 21's skirt (the first part's
    filling continued) instead, its samples differ almost only in 26-30 Hz, where the two skirts act (measured over
    the first five signals: by 196 digital units RMS, 99.4 % of the difference's power in 25.9-30.1 Hz; the rest is
    the rounding to digital units and the fades' spread)."""
    from eegz import lossy
    moved, rate = _moved_when_patched("lossy_skirt_floor_3.eegz", tmp_path,
                                      lambda: monkeypatch.setattr(lossy, "SKIRT_FLOOR", 23))
    share, rms = _power_share(moved, rate, 25.9, 30.1)
    assert share > 0.95 and rms > 50.0


def test_the_rounds_vector_differs_from_one_round_only_above_60_hz(tmp_path, monkeypatch):
    """lossy_rounds_6.eegz exercises spec 6.8's rounds: decoded with one round (as format 23), its samples differ
    almost only from 66 Hz up, where the high band's profile acts (measured over the first five signals: by 1.19
    digital units RMS, 96.8 % of the difference's power above 60 Hz; the rest is the rounding to digital units,
    white)."""
    from eegz import lossy
    moved, rate = _moved_when_patched("lossy_rounds_6.eegz", tmp_path,
                                      lambda: monkeypatch.setattr(lossy, "TOKEN_HIGH_ROUNDS", 25))
    share, rms = _power_share(moved, rate, 60)
    assert share > 0.93 and rms > 0.8


def test_the_burst_cap_vector_differs_from_format_22_only_above_60_hz(tmp_path, monkeypatch):
    """lossy_burst_cap_3.eegz exercises spec 6.8's burst cap: decoded without it (as format 22), its samples differ
    mostly from 66 Hz up, where the high band's profile acts (measured over the first five signals: by 0.37 digital
    units RMS, 85 % of the difference's power above 60 Hz; the rest is the rounding to digital units, white: 60-250 Hz
    is 76 % of the band at 500 Hz)."""
    from eegz import lossy
    moved, rate = _moved_when_patched("lossy_burst_cap_3.eegz", tmp_path,
                                      lambda: monkeypatch.setattr(lossy, "HIGH_BURST_CAP", 24))
    share, rms = _power_share(moved, rate, 60)
    assert share > 0.82 and rms > 0.3
