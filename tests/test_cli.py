"""The command line: outputs, exit codes and one-line errors that leave no file behind."""
import json
import shutil

import pytest

from eegz.container import PREAMBLE, READABLE_VERSIONS

from .conftest import EXAMPLE, SHARED, run_cli

EXIT_BAD_INPUT, EXIT_BAD_CONTAINER, EXIT_OUTPUT_EXISTS = 2, 3, 5


def _one_line_error(proc, code, text):
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eegz: error:") and text in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture()
def lossless_file(tmp_path):
    src = tmp_path / "rec.edf"
    shutil.copy(EXAMPLE, src)
    proc = run_cli("compress", src, "--mode", "lossless", "-q")
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "rec.eegz"


def test_compress_default_name_info_and_decompress(tmp_path, lossless_file):
    info = json.loads(run_cli("info", lossless_file, "--json").stdout)
    assert info["mode"] == "lossless" and info["n_channels"] == 22 and info["duration_s"] == 62.0
    assert info["compression_ratio"] > 1.9
    out = tmp_path / "back.edf"
    proc = run_cli("decompress", lossless_file, "-o", out, "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["records"] == 62
    assert out.read_bytes() == EXAMPLE.read_bytes()
    text = run_cli("info", lossless_file).stdout
    assert "lossless" in text and "EEG Fp1" in text
    exact = run_cli("eval", EXAMPLE, lossless_file)  # an exact reconstruction's SNR is infinite: said, not 258 dB
    assert exact.returncode == 0 and exact.stdout.startswith("PRD 0.00%  PRDN 0.00%  SNR exact ")
    assert json.loads(run_cli("eval", EXAMPLE, lossless_file, "--json").stdout)["overall"]["snr_db"] is None


def test_lossy_cli_with_codebooks(tmp_path):
    out = tmp_path / "x.eegz"
    proc = run_cli("compress", EXAMPLE, "-o", out, "--codebooks", "3", "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["codebooks"] == 3 and summary["bits_per_second_per_channel"] > 0
    ev = run_cli("eval", EXAMPLE, out, "--json")
    overall = json.loads(ev.stdout)["overall"]
    assert ev.returncode == 0 and overall["prdn"] < 36  # measured 33.5 (0.4 default model, envelope)
    # lines on the worst channel and on the channels' mean spectrum: measured 2.37 and 1.47 (format 6)
    assert 1.0 <= overall["spectral_line_mean"]["ratio"] <= overall["spectral_line"]["ratio"] < 3.0
    # 0.5-s windows from 0 and from 0.25 s (across the time profiles' parts and the seams): high gamma's 90th
    # percentile measured 3.35 and 3.80 (format 21)
    aligned, offset = overall["window_band_error"]["high_gamma"]["p90"], overall["window_band_error_offset"]["high_gamma"]["p90"]
    assert 2.5 < aligned < offset < 4.5, (aligned, offset)


def test_existing_output_is_not_overwritten(tmp_path, lossless_file):
    before = lossless_file.read_bytes()
    proc = run_cli("compress", tmp_path / "rec.edf", "--mode", "lossless")
    _one_line_error(proc, EXIT_OUTPUT_EXISTS, "exists; use --force")
    assert lossless_file.read_bytes() == before
    _one_line_error(run_cli("decompress", lossless_file), EXIT_OUTPUT_EXISTS, "exists")
    assert run_cli("compress", tmp_path / "rec.edf", "--mode", "lossless", "--force", "-q").returncode == 0


def _no_leftovers(folder, allowed):
    assert sorted(p.name for p in folder.iterdir()) == sorted(allowed)


def test_not_an_edf(tmp_path):
    bad = tmp_path / "notes.edf"
    bad.write_text("this is not an EDF file at all, just some text that is long enough " * 10)
    _one_line_error(run_cli("compress", bad, "--mode", "lossless"), EXIT_BAD_INPUT, "not an EDF/BDF file")
    _no_leftovers(tmp_path, ["notes.edf"])


def test_truncated_edf(tmp_path):
    bad = tmp_path / "cut.edf"
    bad.write_bytes(EXAMPLE.read_bytes()[:700_000])
    _one_line_error(run_cli("compress", bad), EXIT_BAD_INPUT, "truncated EDF")
    _no_leftovers(tmp_path, ["cut.edf"])


def test_missing_input(tmp_path):
    _one_line_error(run_cli("compress", tmp_path / "none.edf"), EXIT_BAD_INPUT, "cannot read")


def test_an_output_named_for_the_other_format_is_refused(tmp_path, lossless_file):
    """An EDF recording written under a .bdf name would be read as 24-bit samples by the next tool: refused before
    any work; a name of the user's own (.rec) is fine."""
    _one_line_error(run_cli("decompress", lossless_file, "-o", tmp_path / "x.bdf"), EXIT_BAD_INPUT,
                    "the file holds an EDF recording: name its output .edf, not .bdf")
    _no_leftovers(tmp_path, ["rec.edf", "rec.eegz"])
    assert run_cli("decompress", lossless_file, "-o", tmp_path / "x.rec", "-q").returncode == 0


@pytest.mark.parametrize("start,end,message", [
    ("nan", None, "must be finite numbers of seconds"), ("-3", None, "--start -3 s is before the recording's start"),
    ("40", "20", "empty or negative time range 40..20 s"), ("1e9", None, "--start 1e+09 s lies beyond the recording's end (62 s)")])
def test_a_bad_time_range_is_one_line(tmp_path, lossless_file, start, end, message):
    args = ["--start", start] + (["--end", end] if end else [])
    _one_line_error(run_cli("decompress", lossless_file, "-o", tmp_path / "x.edf", *args), EXIT_BAD_INPUT, message)
    assert not (tmp_path / "x.edf").exists()


def test_bad_codebooks(tmp_path):
    _one_line_error(run_cli("compress", EXAMPLE, "-o", tmp_path / "x.eegz", "--codebooks", "12"), EXIT_BAD_INPUT,
                    "between 3 and 9")
    for extra, message in ((["--mode", "transform"], "the transform codec's rate is --bitrate"),
                           (["--quality", "20"], "--codebooks and --quality exclude each other"),
                           (["--mode", "lossless"], "not to lossless alone")):  # asked for and never read: refused
        _one_line_error(run_cli("compress", EXAMPLE, "-o", tmp_path / "x.eegz", "--codebooks", "3", *extra),
                        EXIT_BAD_INPUT, message)
    _no_leftovers(tmp_path, [])


@pytest.mark.parametrize("damage,message", [
    (lambda b: b[:len(b) // 2], "truncated"),
    (lambda b: b[:-10], "truncated"),
    (lambda b: b"NOTEEGZ!" + b[8:], "not an .eegz file"),
    (lambda b: PREAMBLE.pack(b[:8], max(READABLE_VERSIONS) + 1, 0, 0) + b[PREAMBLE.size:],
     f"format version {max(READABLE_VERSIONS) + 1}"),
])
def test_damaged_containers(tmp_path, lossless_file, damage, message):
    bad = tmp_path / "bad.eegz"
    bad.write_bytes(damage(lossless_file.read_bytes()))
    for cmd in (["info", bad], ["decompress", bad, "-o", tmp_path / "out.edf"]):
        _one_line_error(run_cli(*cmd), EXIT_BAD_CONTAINER, message)
    assert not (tmp_path / "out.edf").exists()


def test_flipped_byte_inside_a_block(tmp_path, lossless_file):
    from eegz.container import Container
    with Container(lossless_file) as r:
        block = r.blocks[1]
    data = bytearray(lossless_file.read_bytes())
    data[block.offset + block.length // 2] ^= 0x40
    bad = tmp_path / "flip.eegz"
    bad.write_bytes(bytes(data))
    _one_line_error(run_cli("decompress", bad, "-o", tmp_path / "out.edf"), EXIT_BAD_CONTAINER,
                    "checksum mismatch in block 1")
    assert not (tmp_path / "out.edf").exists()
    _one_line_error(run_cli("verify", bad, "--against", EXAMPLE), EXIT_BAD_CONTAINER, "checksum mismatch")


def test_near_lossless_and_verify(tmp_path):
    out = tmp_path / "n.eegz"
    proc = run_cli("compress", EXAMPLE, "-o", out, "--mode", "near-lossless", "--max-error", "0.5", "-q")
    assert proc.returncode == 0, proc.stderr
    assert run_cli("verify", out, "--against", EXAMPLE).returncode == 0
    _one_line_error(run_cli("compress", EXAMPLE, "-o", tmp_path / "m.eegz", "--mode", "near-lossless"),
                    EXIT_BAD_INPUT, "needs --max-error")


def test_with_tokens_keeps_lossless_and_adds_tokens(tmp_path):
    out = tmp_path / "t.eegz"
    assert run_cli("compress", EXAMPLE, "-o", out, "--mode", "lossless", "--with-tokens", "--codebooks", "3",
                   "-q").returncode == 0
    info = json.loads(run_cli("info", out, "--json").stdout)
    assert info["stream_bytes"]["aux_tokens"] > 0
    run_cli("decompress", out, "-o", tmp_path / "t.edf")
    assert (tmp_path / "t.edf").read_bytes() == EXAMPLE.read_bytes()


def test_info_starts_without_torch(lossless_file):
    import subprocess
    import sys
    code = ("import sys, eegz.cli, eegz.api, eegz.exact; from eegz.api import info; "
            f"info({str(lossless_file)!r}); print('torch' in sys.modules, 'dac' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "False False", proc.stderr


@pytest.mark.skipif(not (SHARED / "edge" / "mne-testing-data" / "GDF").is_dir(), reason="shared data absent")
def test_gdf_is_refused_clearly(tmp_path):
    gdf = next((SHARED / "edge" / "mne-testing-data" / "GDF").glob("*.gdf"))
    _one_line_error(run_cli("compress", gdf, "-o", tmp_path / "g.eegz", "--mode", "lossless"), EXIT_BAD_INPUT,
                    "not an EDF/BDF file")


@pytest.mark.parametrize("cmd", [["decompress"], ["info"], ["verify", "--against", EXAMPLE]])
def test_missing_eegz_input_is_bad_input(tmp_path, cmd):
    """A missing file is a usage error (2), not a damaged file (3)."""
    args = [cmd[0], tmp_path / "none.eegz", *cmd[1:]]
    _one_line_error(run_cli(*args), EXIT_BAD_INPUT, "cannot read")


def test_output_folder_is_checked_before_any_work(tmp_path):
    _one_line_error(run_cli("compress", EXAMPLE, "-o", tmp_path / "nowhere" / "x.eegz", "--mode", "lossless"),
                    EXIT_BAD_INPUT, "does not exist")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        import os
        if os.access(locked, os.W_OK):  # root ignores the mode bits: nothing to check then
            pytest.skip("running as a user that can write anywhere")
        _one_line_error(run_cli("compress", EXAMPLE, "-o", locked / "x.eegz", "--mode", "lossless"),
                        EXIT_BAD_INPUT, "not writable")
    finally:
        locked.chmod(0o700)


def test_output_is_never_the_input_even_with_force(tmp_path):
    src = tmp_path / "s.edf"
    shutil.copy(EXAMPLE, src)
    _one_line_error(run_cli("compress", src, "-o", src, "--mode", "lossless", "--force"), EXIT_BAD_INPUT,
                    "over the input")
    assert src.read_bytes() == EXAMPLE.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.edf"]


def test_outputs_get_the_permissions_the_umask_gives(tmp_path):
    import os
    import stat
    import subprocess
    import sys
    out = tmp_path / "x.eegz"
    code = (f"import os; os.umask(0o022); from eegz import api; "
            f"api.compress({str(EXAMPLE)!r}, {str(out)!r}, mode='lossless')")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o644


def test_sigterm_during_compress_leaves_nothing_behind(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    big = tmp_path / "big.edf"
    from .test_streaming import tiled_edf
    tiled_edf(big, 40)
    proc = subprocess.Popen([sys.executable, "-m", "eegz.cli", "compress", big, "-o", tmp_path / "x.eegz",
                             "--mode", "lossless", "-q"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list(tmp_path.glob(".x.eegz.*.eegz-partial")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 128 + signal.SIGTERM
    assert "terminated" in proc.stderr.read()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.edf"]


def test_a_reader_that_stops_early_ends_eegz_quietly(tmp_path, lossless_file):
    import subprocess
    import sys
    proc = subprocess.run(f"{sys.executable} -m eegz.cli info {lossless_file} | head -1", shell=True,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and proc.stdout.startswith("file")
