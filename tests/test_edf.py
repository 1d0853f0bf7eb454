"""EDF/BDF byte-level reading and writing, checked against pyedflib on real files."""
import numpy as np
import pyedflib
import pytest

from eegz.edf import EdfError, bytes_to_digital, digital_to_bytes, encode_recording, parse_recording, read_edf

from .conftest import EXAMPLE, shared_param


def test_example_is_read_as_expected():
    rec = read_edf(EXAMPLE)
    assert rec.n_records == 62 and rec.header.record_duration == 1.0
    assert len(rec.header.signals) == 22 and rec.header.reserved == "EDF+C"
    assert rec.header.signals[0].label == "EEG Fp1" and rec.header.signals[0].sample_rate == 500.0
    assert rec.header.signals[-1].is_annotation
    assert all(len(d) == 62 * s.samples_per_record for s, d in zip(rec.header.signals, rec.digital))


def test_digital_samples_match_pyedflib():
    rec = read_edf(EXAMPLE)
    with pyedflib.EdfReader(str(EXAMPLE)) as ref:
        for i in range(ref.signals_in_file):
            np.testing.assert_array_equal(rec.digital[i], ref.readSignal(i, digital=True))
            np.testing.assert_allclose(rec.header.signals[i].to_physical(rec.digital[i]), ref.readSignal(i),
                                       rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("path", shared_param("edge/**/*"))
def test_edge_files_rewrite_byte_identical(path):
    data = path.read_bytes()
    assert encode_recording(parse_recording(data)) == data


@pytest.mark.parametrize("width", [2, 3])
def test_sample_packing_round_trips_extremes(width):
    lo, hi = -(1 << (8 * width - 1)), (1 << (8 * width - 1)) - 1
    values = np.array([lo, -1, 0, 1, hi, 12345 % hi], np.int32)
    packed = digital_to_bytes(values, width)
    assert len(packed) == width * len(values)
    np.testing.assert_array_equal(bytes_to_digital(packed, width), values)


def test_requantization_clips_to_the_digital_range():
    s = read_edf(EXAMPLE).header.signals[0]
    phys = np.array([s.physical_min - 100, s.physical_max + 100, 0.0])
    dig = s.to_digital(phys)
    assert dig[0] == s.digital_min and dig[1] == s.digital_max


@pytest.mark.parametrize("cut,message", [(100, "shorter than the 256-byte header"),
                                         (3000, "truncated EDF"), (1_000_000, "truncated EDF")])
def test_truncated_files_are_refused(cut, message):
    with pytest.raises(EdfError, match=message):
        parse_recording(EXAMPLE.read_bytes()[:cut])


def test_non_edf_is_refused():
    with pytest.raises(EdfError, match="not an EDF/BDF file"):
        parse_recording(b"GDF 2.10" + bytes(400))
