"""Patient data and time: anonymized and encrypted identification, range exports at their true start."""
import datetime as dt
import shutil

import numpy as np
import pyedflib
import pytest

from eegz import api
from eegz.edf import read_edf
from eegz.errors import EegzError
from eegz.identity import rewrite_annotations

from .conftest import EXAMPLE, run_cli

PATIENT = b"9 M 01-JAN-1993 Subject17"
RECORDING = b"Startdate 01-JAN-2010 9 Doctor NeuroCom"


def _identified_edf(path) -> None:
    """The example with a patient name in its header and in an annotation."""
    raw = bytearray(EXAMPLE.read_bytes())
    raw[8:88] = b"MCH-0234567 F 02-MAY-1951 Haagse_Harry".ljust(80)
    path.write_bytes(bytes(raw))


def test_anonymize_leaves_no_trace_and_readers_accept_the_file(tmp_path):
    src = tmp_path / "Haagse_Harry.edf"
    _identified_edf(src)
    out = tmp_path / "a.eegz"
    summary = api.compress(src, out, mode="lossless", anonymize=True)
    assert summary["identity"] == "anonymized" and summary["source"] is not None
    data = out.read_bytes()
    for secret in (b"Haagse_Harry", b"MCH-0234567", b"02-MAY-1951", b"Doctor"):
        assert secret not in data
    from eegz.container import Container
    with Container(out) as c:  # nothing in the (compressed) sections either
        assert b"Haagse" not in c.edf_header and "Haagse" not in str(c.meta)
    back = tmp_path / "back.edf"
    api.decompress(out, back)
    with pyedflib.EdfReader(str(back)) as f:
        assert f.getStartdatetime().date() == dt.date(1985, 1, 1) and f.getPatientName() in ("X", "")
    import mne
    raw = mne.io.read_raw_edf(back, preload=False, verbose="error")
    assert raw.info["meas_date"].year == 1985
    original, decoded = read_edf(src), read_edf(back)
    for a, b in zip(original.digital, decoded.digital):  # the signals are untouched
        np.testing.assert_array_equal(a, b)
    assert api.verify(out, src)["ok"]


def test_encrypted_identity_comes_back_only_with_the_key(tmp_path):
    src = tmp_path / "rec.edf"
    _identified_edf(src)
    key = tmp_path / "key.txt"
    key.write_text("correct horse battery staple\n")
    out = tmp_path / "e.eegz"
    proc = run_cli("compress", src, "-o", out, "--mode", "lossless", "--encrypt-identity", "--passphrase-file", key, "-q")
    assert proc.returncode == 0, proc.stderr
    assert b"Haagse_Harry" not in out.read_bytes()
    assert api.info(out)["identity"] == "encrypted"
    api.decompress(out, tmp_path / "plain.edf")  # without the key: the anonymized recording
    assert b"Haagse_Harry" not in (tmp_path / "plain.edf").read_bytes()
    proc = run_cli("decompress", out, "-o", tmp_path / "back.edf", "--passphrase-file", key, "-q")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "back.edf").read_bytes() == src.read_bytes()  # byte-identical with the key
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("Tr0ub4dor&3\n")
    proc = run_cli("decompress", out, "-o", tmp_path / "x.edf", "--passphrase-file", wrong)
    assert proc.returncode == 2 and "wrong passphrase" in proc.stderr and not (tmp_path / "x.edf").exists()


def test_annotation_texts_can_be_dropped(tmp_path):
    data = (b"+0\x14\x14\x00+1.5\x150.2\x14John Doe awake\x14\x00").ljust(64, b"\x00")
    out = rewrite_annotations(data, 64, drop_text=True)
    expected = b"+0\x14\x14\x00+1.5\x150.2\x14X\x14\x00"
    assert out[: len(expected)] == expected and not out[len(expected):].strip(b"\x00") and len(out) == 64
    shifted = rewrite_annotations(data, 64, shift=1)
    expected = b"-1\x14\x14\x00+0.5\x150.2\x14John Doe awake\x14\x00"
    assert shifted[: len(expected)] == expected and not shifted[len(expected):].strip(b"\x00")


@pytest.mark.parametrize("start,end", [(10.0, 40.0), (0.0, 5.0), (30.5, None)])
def test_a_range_export_opens_at_its_true_start(tmp_path, start, end):
    out = tmp_path / "x.eegz"
    api.compress(EXAMPLE, out, mode="lossless")
    part = tmp_path / "part.edf"
    api.decompress(out, part, start=start, end=end)
    first = int(start)
    with pyedflib.EdfReader(str(EXAMPLE)) as f:
        t0 = f.getStartdatetime()
    with pyedflib.EdfReader(str(part)) as f:  # pyedflib refused the excerpts of eegz 0.1
        assert f.getStartdatetime() == t0 + dt.timedelta(seconds=first)
        assert f.getNSamples()[0] == 500 * ((int(np.ceil(end)) if end else 62) - first)
    import mne
    raw = mne.io.read_raw_edf(part, preload=True, verbose="error")
    ref = mne.io.read_raw_edf(EXAMPLE, preload=True, verbose="error")
    assert raw.info["meas_date"] == ref.info["meas_date"] + dt.timedelta(seconds=first)
    np.testing.assert_allclose(raw.get_data(picks=[0]), ref.get_data(picks=[0])[:, first * 500:first * 500 + raw.n_times])


def test_passphrase_for_a_file_without_encrypted_identity_is_refused(tmp_path):
    out = tmp_path / "x.eegz"
    api.compress(EXAMPLE, out, mode="lossless")
    with pytest.raises(EegzError, match="no encrypted identity"):
        api.decompress(out, tmp_path / "y.edf", passphrase=b"secret")
    shutil.rmtree(tmp_path, ignore_errors=True)


def _edf_plus_with_annotations(path) -> None:
    """A short EDF+ whose patient field and annotation both name the patient (written by pyedflib)."""
    rng = np.random.default_rng(7)
    with pyedflib.EdfWriter(str(path), 2, file_type=pyedflib.FILETYPE_EDFPLUS) as w:
        w.setSignalHeaders([{"label": f"EEG C{i}", "dimension": "uV", "sample_frequency": 256, "physical_max": 500,
                             "physical_min": -500, "digital_max": 32767, "digital_min": -32768} for i in (3, 4)])
        w.setPatientName("Haagse_Harry")
        w.setStartdatetime(dt.datetime(2019, 4, 2, 13, 5, 7))
        w.writeSamples([rng.normal(0, 30, 256 * 10) for _ in range(2)])
        w.writeAnnotation(2.5, 1.0, "Haagse_Harry awake")


def test_dropped_texts_and_encrypted_identity_together(tmp_path):
    src = tmp_path / "plus.edf"
    _edf_plus_with_annotations(src)
    out = tmp_path / "p.eegz"
    api.compress(src, out, mode="lossless", drop_annotation_text=True, passphrase=b"k3y")
    assert b"Haagse" not in out.read_bytes() and api.info(out)["annotation_text"] == "dropped"
    back = tmp_path / "back.edf"
    api.decompress(out, back, passphrase=b"k3y")  # the identification comes back, the texts do not
    with pyedflib.EdfReader(str(back)) as f:
        assert f.getPatientName() == "Haagse Harry"  # pyedflib shows EDF+'s '_' as a space
        assert f.getStartdatetime() == dt.datetime(2019, 4, 2, 13, 5, 7)
        onsets, durations, texts = f.readAnnotations()
        assert list(onsets) == [2.5] and list(durations) == [1.0] and list(texts) == ["X"]
    assert read_edf(back).digital[0].tolist() == read_edf(src).digital[0].tolist()
    api.decompress(out, tmp_path / "anon.edf")
    with pyedflib.EdfReader(str(tmp_path / "anon.edf")) as f:
        assert f.getStartdatetime().date() == dt.date(1985, 1, 1) and f.readAnnotations()[2].tolist() == ["X"]
