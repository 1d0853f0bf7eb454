"""Archive pipelines: folders with --jobs, resumed batches, a real Dask cluster, pipes, the Python reader
and retention tiers (recode, previews)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import eegz
from eegz import api

from .conftest import EXAMPLE, SHARED, run_cli

SMALL = Path(__file__).parent / "fixtures" / "small.edf"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not present")


def _archive(folder: Path) -> list[Path]:
    """A folder of 11 recordings of mixed kinds from the shared data (EDF, EDF+, BDF, in subfolders) and
    one damaged file (a truncated EDF)."""
    picks = ["eegmat/Subject00_2.edf", "eegmat/Subject01_2.edf", "eegmmidb/S001/S001R01.edf",
             "eegmmidb/S001/S001R02.edf", "edge/biosemi/Newtest17-256.bdf", "edge/pyedflib/test_generator.edf",
             "edge/edfio/short_psg.edf", "edge/edfio/short_psg.bdf", "edge/mne-testing-data/EDF/test_reduced.edf",
             "edge/mne-testing-data/BDF/test_bdf_stim_channel.bdf"]
    files = []
    for pattern in picks:
        for src in sorted(SHARED.glob(pattern))[:3]:
            dest = folder / src.parent.name / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
            files.append(dest)
    broken = folder / "ward" / "broken.edf"
    broken.parent.mkdir(exist_ok=True)
    broken.write_bytes(SMALL.read_bytes()[:5000])
    return files + [broken]


@needs_shared
def test_a_folder_of_mixed_recordings_with_two_jobs(tmp_path):
    files = _archive(tmp_path / "in")
    assert len(files) >= 11 and {f.suffix for f in files} == {".edf", ".bdf"}
    proc = run_cli("compress", tmp_path / "in", "-r", "-o", tmp_path / "out", "--mode", "lossless", "--jobs", "2",
                   "--json")
    assert proc.returncode == 2, proc.stderr  # one kind of failure: bad input
    report = json.loads(proc.stdout)
    assert report["files"] == len(files) and report["failed"] == 1 and report["ok"] == len(files) - 1
    failed = [r for r in report["results"] if r["status"] == "failed"]
    assert failed[0]["input"].endswith("broken.edf") and "truncated EDF" in failed[0]["error"]
    for r in report["results"]:
        if r["status"] == "ok":
            assert r["ratio"] > 1 and r["output_bytes"] == os.path.getsize(r["output"]) and r["seconds"] >= 0
    # the mirrored layout decodes back, byte for byte, through a folder decompress
    proc = run_cli("decompress", tmp_path / "out", "-r", "-o", tmp_path / "back", "--jobs", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    for f in files[:-1]:  # short_psg.edf and short_psg.bdf share a folder: their outputs keep both names
        rel = f.relative_to(tmp_path / "in")
        back = tmp_path / "back" / (rel if f.stem == "short_psg" else rel.with_suffix(".edf" if f.suffix == ".edf" else ".bdf"))
        assert back.read_bytes() == f.read_bytes(), rel
    proc = run_cli("verify", tmp_path / "out", "-r", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["ok"] == len(files) - 1


@needs_shared
def test_an_interrupted_batch_resumes(tmp_path):
    files = _archive(tmp_path / "in")
    args = [sys.executable, "-m", "eegz.cli", "compress", str(tmp_path / "in"), "-r", "-o", str(tmp_path / "out"),
            "--mode", "lossless", "--jobs", "1", "-q"]
    proc = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((tmp_path / "out").rglob("*.eegz"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # the worst interruption: no clean-up at all
    proc.wait()
    done = {p for p in (tmp_path / "out").rglob("*.eegz")}
    assert 3 <= len(done) < len(files) - 1
    victim = sorted(done)[0]
    victim.write_bytes(victim.read_bytes()[:-100])  # and one output damaged since
    proc = run_cli("compress", tmp_path / "in", "-r", "-o", tmp_path / "out", "--mode", "lossless", "--json")
    report = json.loads(proc.stdout)
    by_output = {r["output"]: r["status"] for r in report["results"]}
    assert by_output[str(victim)] == "ok"  # redone
    assert sum(s == "skipped" for s in by_output.values()) == len(done) - 1
    assert report["ok"] + report["skipped"] == len(files) - 1
    assert not list((tmp_path / "out").rglob("*.eegz-partial"))
    assert api.check(victim)["ok"]


def _start_cluster(tmp_path, preload: Path | None = None):
    """A Dask scheduler and two single-threaded workers on this machine, as separate processes."""
    exe = Path(sys.executable).parent / "dask"
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [subprocess.Popen([str(exe), "scheduler", "--scheduler-file", str(scheduler_file), "--port", "0",
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not scheduler_file.exists():
        time.sleep(0.1)
    worker = [str(exe), "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1", "--no-dashboard"]
    if preload:
        worker += ["--preload", str(preload)]
    procs += [subprocess.Popen(worker, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path)
              for _ in range(2)]
    from distributed import Client
    address = json.loads(scheduler_file.read_text())["address"]
    with Client(address, timeout="30s") as client:
        client.wait_for_workers(2, timeout=90)
    return address, procs


def _stop(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


@needs_shared
def test_a_folder_on_a_dask_cluster(tmp_path):
    pytest.importorskip("distributed")
    files = _archive(tmp_path / "in")
    address, procs = _start_cluster(tmp_path)
    try:
        proc = run_cli("compress", tmp_path / "in", "-r", "-o", tmp_path / "out", "--mode", "lossless",
                       "--scheduler", address, "--json")
        assert proc.returncode == 2, proc.stderr
        report = json.loads(proc.stdout)
        assert report["ok"] == len(files) - 1 and report["failed"] == 1
        for r in report["results"][:-1]:
            back = tmp_path / f"x{Path(r['input']).suffix.lower()}"  # .bdf for a BDF recording
            api.decompress(r["output"], back, force=True)
            assert back.read_bytes() == Path(r["input"]).read_bytes()
    finally:
        _stop(procs)


def test_a_cluster_of_another_eegz_version_is_refused(tmp_path):
    pytest.importorskip("distributed")
    preload = tmp_path / "old_eegz.py"
    preload.write_text("import eegz\neegz.__version__ = '0.1.0'\n")
    address, procs = _start_cluster(tmp_path, preload)
    try:
        (tmp_path / "in").mkdir()
        shutil.copy(SMALL, tmp_path / "in" / "a.edf")
        proc = run_cli("compress", tmp_path / "in", "--mode", "lossless", "--scheduler", address)
        assert proc.returncode == 2 and "runs eegz 0.1.0" in proc.stderr and proc.stderr.count("\n") == 1
        assert not (tmp_path / "in" / "a.eegz").exists()
    finally:
        _stop(procs)


def test_pipes_round_trip_byte_identical(tmp_path):
    cmd = (f"{sys.executable} -m eegz.cli compress - -o - --mode lossless -q < {SMALL} | "
           f"{sys.executable} -m eegz.cli decompress - -o - -q > {tmp_path / 'back.edf'}")
    proc = subprocess.run(cmd, shell=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "back.edf").read_bytes() == SMALL.read_bytes()
    proc = run_cli("compress", "-", "--mode", "lossless")  # stdin needs an output name
    assert proc.returncode == 2 and "-o" in proc.stderr


def test_the_python_reader_matches_mne_on_the_decoded_edf(tmp_path):
    mne = pytest.importorskip("mne")
    out = tmp_path / "x.eegz"
    eegz.compress(EXAMPLE, out, mode="near-lossless", max_error_lsb=2)
    eegz.decompress(out, tmp_path / "x.edf")
    reference = mne.io.read_raw_edf(tmp_path / "x.edf", preload=True, verbose="error")
    with eegz.open(out) as f:
        assert f.labels == reference.ch_names and f.duration == 62.0
        assert f.start_time == reference.info["meas_date"].replace(tzinfo=None)
        raw = f.to_mne()
        np.testing.assert_allclose(raw.get_data(), reference.get_data(), rtol=0, atol=1e-12)
        assert raw.info["sfreq"] == reference.info["sfreq"] and raw.info["meas_date"] == reference.info["meas_date"]
        assert [raw.get_channel_types()[i] for i in (0, 20)] == ["eeg", "ecg"]
        part = f.to_mne(10.0, 12.5)
        np.testing.assert_allclose(part.get_data(), reference.get_data()[:, 5000:6250], rtol=0, atol=1e-12)
        x = f.read(10.0, 12.5, channels=["EEG Fp1", 3])
        assert x.shape == (2, 1250)
        np.testing.assert_allclose(x * 1e-6, reference.get_data()[[0, 3], 5000:6250], rtol=0, atol=1e-12)
        with pytest.raises(eegz.EegzError, match="no channel"):
            f.read(channels=["EEG Xyz"])


def test_annotations_come_back_as_written(tmp_path):
    import datetime as dt

    import pyedflib
    src = tmp_path / "plus.edf"
    with pyedflib.EdfWriter(str(src), 2, file_type=pyedflib.FILETYPE_EDFPLUS) as w:
        w.setSignalHeaders([{"label": f"EEG C{i}", "dimension": "uV", "sample_frequency": 256, "physical_max": 500,
                             "physical_min": -500, "digital_max": 32767, "digital_min": -32768} for i in (3, 4)])
        w.setStartdatetime(dt.datetime(2021, 3, 4, 5, 6, 7))
        w.writeSamples([np.random.default_rng(1).normal(0, 30, 256 * 20) for _ in range(2)])
        w.writeAnnotation(2.5, 1.0, "eyes closed")
        w.writeAnnotation(14.25, -1, "seizure onset")
    out = tmp_path / "plus.eegz"
    eegz.compress(src, out, mode="lossless")
    with eegz.open(out) as f:
        assert [(a.onset, a.duration, a.text) for a in f.annotations] == [(2.5, 1.0, "eyes closed"),
                                                                           (14.25, None, "seizure onset")]
        assert f.start_time == dt.datetime(2021, 3, 4, 5, 6, 7)
        raw = f.to_mne(10, 20)
        assert list(raw.annotations.description) == ["seizure onset"] and raw.annotations.onset[0] == pytest.approx(4.25)


def test_recode_equals_compressing_at_fewer_codebooks(lossy_example, tmp_path):
    recoded = tmp_path / "r3.eegz"
    summary = eegz.recode(lossy_example[9], recoded, codebooks=3)
    assert summary["codebooks"] == 3
    assert recoded.read_bytes() == lossy_example[3].read_bytes()  # the same bytes as compressing at 3
    proc = run_cli("recode", lossy_example[6], "--codebooks", "7", "-o", tmp_path / "x.eegz")
    assert proc.returncode == 2 and "1 to 6" in proc.stderr
    # a second call in the same process: the pipeline's module must not take the public name's place (it did
    # while it was eegz/recode.py: the first call imported it as the attribute eegz.recode)
    assert eegz.recode(lossy_example[9], tmp_path / "again.eegz", codebooks=3)["codebooks"] == 3


def test_a_preview_from_fewer_codebooks_equals_the_recoded_file(lossy_example, tmp_path):
    eegz.decompress(lossy_example[9], tmp_path / "preview.edf", codebooks=3, device="cpu")
    eegz.decompress(lossy_example[3], tmp_path / "three.edf", device="cpu")
    assert (tmp_path / "preview.edf").read_bytes() == (tmp_path / "three.edf").read_bytes()


def test_tokens_are_read_without_decoding(lossy_example):
    with eegz.open(lossy_example[9]) as nine, eegz.open(lossy_example[3]) as three:
        t9, t3 = nine.tokens("EEG Fp1"), three.tokens("EEG Fp1")
        assert t9.shape == (62 * 4, 9) and t3.shape == (62 * 4, 3)
        assert t9.min() >= 0 and t9.max() < 1024
        np.testing.assert_array_equal(t9[:, :3], t3)
        with pytest.raises(eegz.EegzError, match="holds no tokens"):
            nine.tokens("ECG ECG")
