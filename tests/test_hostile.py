"""Hostile and odd input: EDF files that other tools crash on, a short fuzz run, and kill -9 at random
moments of compress and decompress."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import EXAMPLE, run_cli
from .test_streaming import tiled_edf

SMALL = Path(__file__).parent / "fixtures" / "small.edf"
NS = 6  # signals in small.edf


def _with_field(data: bytes, offset: int, width: int, value: bytes) -> bytes:
    out = bytearray(data)
    out[offset:offset + width] = value.ljust(width)
    return bytes(out)


def _odd(name: str) -> bytes:
    src = SMALL.read_bytes()
    header = src[:256 * (NS + 1)]
    spr_offset = 256 + NS * (16 + 80 + 8 + 8 + 8 + 8 + 8 + 80)
    return {
        "header only": header,
        "0 data records": _with_field(header, 236, 8, b"0"),
        "0 samples per record": _with_field(src, spr_offset, 8, b"0"),
        "inf physical minimum": _with_field(src, 256 + NS * 104, 8, b"inf"),
        "nan record duration": _with_field(src, 244, 8, b"nan"),
        "-inf record duration": _with_field(src, 244, 8, b"-inf"),
        "1e308 physical maximum": _with_field(src, 256 + NS * 112, 8, b"1e308"),
    }[name]


@pytest.mark.parametrize("name,expected", [
    ("header only", "truncated EDF"), ("0 data records", None), ("0 samples per record", None),
    ("inf physical minimum", "not a finite number"), ("nan record duration", "not a finite number"),
    ("-inf record duration", "not a finite number"), ("1e308 physical maximum", "within ±1e15")])
@pytest.mark.parametrize("mode", ["lossless", "near-lossless", "lossy", "transform"])
def test_odd_edf_files_give_a_result_or_a_clear_error(tmp_path, name, expected, mode):
    src = tmp_path / "odd.edf"
    src.write_bytes(_odd(name))
    extra = ["--max-error-lsb", "2"] if mode == "near-lossless" else []
    proc = run_cli("compress", src, "-o", tmp_path / "o.eegz", "--mode", mode, "-q", *extra)
    if expected:  # one line, exit 2, nothing written
        assert proc.returncode == 2 and expected in proc.stderr and proc.stderr.count("\n") == 1
        assert not (tmp_path / "o.eegz").exists()
        return
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("decompress", tmp_path / "o.eegz", "-o", tmp_path / "back.edf", "-q")
    assert proc.returncode == 0, proc.stderr
    back = (tmp_path / "back.edf").read_bytes()
    if mode == "lossless":
        assert back == src.read_bytes()
    else:
        assert len(back) == len(src.read_bytes())


@pytest.mark.parametrize("damage,expected", [
    ("card not JSON", "is not an eegz model card (JSONDecodeError"),
    ("card without config", "is not an eegz model card (KeyError"),
    ("card with wrong sizes", "do not fit the architecture of its card (size mismatch for decoder.model.0.bias"),
    ("card with sizes that are no numbers", "describes no model eegz can build"),
    ("weights not a zip", "are not readable"),
    ("weights truncated", "are not readable")])
def test_a_damaged_or_mismatched_model_is_one_clear_line(tmp_path, damage, expected):
    """--model PATH.npz is user input too: a card or weights file that is damaged, or weights that do not fit the
    card, give one line and exit 4 (ModelError), and no output."""
    import json
    from eegz.neural import MODELS_DIR, DEFAULT_MODEL
    weights, card = tmp_path / "m.npz", tmp_path / "m.json"
    good = json.loads((MODELS_DIR / f"{DEFAULT_MODEL}.json").read_text())
    raw = (MODELS_DIR / f"{DEFAULT_MODEL}.npz").read_bytes()
    weights.write_bytes(raw)
    card.write_text(json.dumps(good))
    if damage == "card not JSON":
        card.write_text('{"config": ')
    elif damage == "card without config":
        card.write_text("{}")
    elif damage == "card with wrong sizes":
        card.write_text(json.dumps({**good, "config": {**good["config"], "decoder_dim": 160}}))
    elif damage == "card with sizes that are no numbers":
        card.write_text(json.dumps({**good, "config": {**good["config"], "decoder_dim": "wide"}}))
    elif damage == "weights not a zip":
        weights.write_bytes(b"not a model" * 100)
    else:
        weights.write_bytes(raw[:len(raw) // 2])
    proc = run_cli("compress", SMALL, "-o", tmp_path / "o.eegz", "--model", weights, "-q")
    assert proc.returncode == 4 and expected in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "o.eegz").exists()


def test_a_full_disk_is_one_clear_line_and_leaves_nothing(tmp_path):
    """A write that fails for want of room (here a real file-size limit, RLIMIT_FSIZE, which the kernel enforces as
    it enforces a full disk: EFBIG instead of ENOSPC) is exit 7 with one line, in compress and in decompress, and
    neither the output nor its temporary file is left behind. A folder where no file can be created (for root: its
    access check passes) is exit 7 too."""
    import resource

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing eegz

    packed = tmp_path / "example.eegz"
    assert run_cli("compress", EXAMPLE, "-o", packed, "--mode", "lossless", "-q").returncode == 0
    assert packed.stat().st_size > 200_000
    for args, out in ((("compress", EXAMPLE, "--mode", "lossless"), tmp_path / "again.eegz"),
                      (("decompress", packed), tmp_path / "back.edf")):
        proc = subprocess.run([sys.executable, "-m", "eegz.cli", *map(str, args), "-o", str(out), "-q"],
                              capture_output=True, text=True, preexec_fn=limited)
        assert proc.returncode == 7, proc.stderr
        assert proc.stderr == f"eegz: error: cannot write {out}: File too large (nothing was left there)\n"
        assert [p.name for p in tmp_path.iterdir()] == ["example.eegz"]
    with open(tmp_path / "piped.eegz", "wb") as piped:  # -o -: standard output redirected to a file that fills up
        proc = subprocess.run([sys.executable, "-m", "eegz.cli", "compress", str(EXAMPLE), "-o", "-", "--mode", "lossless",
                               "-q"], stdout=piped, stderr=subprocess.PIPE, text=True, preexec_fn=limited)
    assert proc.returncode == 7 and proc.stderr == "eegz: error: cannot write to standard output: File too large\n"
    proc = run_cli("compress", SMALL, "-o", "/proc/x.eegz", "-q")  # root passes the folder's access check
    expected = (7, "cannot create a file in /proc") if os.geteuid() == 0 else (2, "/proc is not writable")
    assert (proc.returncode, proc.stderr.count("\n")) == (expected[0], 1) and expected[1] in proc.stderr


@pytest.mark.parametrize("name", ["../models/x", "/tmp/evil", "evil.npz", ".hidden", ""])
def test_a_header_that_names_a_model_by_path_is_refused(tmp_path, name):
    """A .eegz header names its model; a name that is a path (spec 2.1: no separators, no leading dot, no .npz)
    would let a file point the reader at a file of its choosing, so it is refused as damaged (exit 3), with
    the file's checksums right."""
    import json
    import zstandard
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.fuzz import build_v3, parse_v3
    good = tmp_path / "good.eegz"
    assert run_cli("compress", SMALL, "-o", good, "--codebooks", "3", "--device", "cpu", "-q").returncode == 0
    preamble, sections = parse_v3(good.read_bytes())
    for section in sections:
        if section[0] == b"HEAD":
            meta = json.loads(zstandard.ZstdDecompressor().decompress(section[1], max_output_size=1 << 26))
            meta["codec"]["model"] = name
            section[1] = zstandard.ZstdCompressor(level=3).compress(json.dumps(meta).encode())
    bad = tmp_path / "bad.eegz"
    bad.write_bytes(build_v3(preamble, sections))
    for command in (("info", bad), ("decompress", bad, "-o", tmp_path / "back.edf", "-q")):
        proc = run_cli(*command)
        assert proc.returncode == 3 and "codec" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "back.edf").exists()


def test_a_short_fuzz_run_finds_no_defect():
    """About a minute of benchmarks/fuzz.py over every target (the full run's counts are committed in
    benchmarks/results/fuzz.md). Set EEGZ_FUZZ_SEED to explore other inputs."""
    import os
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.fuzz import fuzz
    seed = int(os.environ.get("EEGZ_FUZZ_SEED", "20261126"))
    result = fuzz(1200, seed)
    defects = [d for r in result.values() for d in r["defects"]]
    assert not defects, defects[:5]
    for target, r in result.items():
        assert r["slowest_s"] < 10, target
        assert sum(r["counts"].values()) == r["cases"], target
    # the mutators reach past the checksums: many inputs are refused, and some decode
    exact = result["eegz-exact"]["counts"]
    assert exact.get("refused", 0) > 0.5 * result["eegz-exact"]["cases"] and exact.get("ok", 0) > 10


def _kill_at_moments(tmp_path, args, out: Path, check_complete) -> int:
    """Run the command 20 times, kill -9 each at a random moment within one uninterrupted run's time;
    returns how many were killed before their output was in place. After every kill the output path
    holds nothing or a complete file (a run killed after its rename, while Python shuts down)."""
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "eegz.cli", *map(str, args)], check=True, capture_output=True)
    duration = time.monotonic() - t0
    out.unlink()
    rng = random.Random(9)
    killed = 0
    for k in range(20):
        proc = subprocess.Popen([sys.executable, "-m", "eegz.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(duration * (0.05 + 0.95 * rng.random()))
        proc.send_signal(signal.SIGKILL)
        code = proc.wait(30)
        assert code in (0, -signal.SIGKILL), f"run {k}: exit {code}"
        if out.exists():
            assert check_complete(), f"kill {k}: a partial file is at the output path"
            out.unlink()
        else:
            killed += 1
    # a temporary file of a killed run is recognizable, and the next run for the target removes it
    subprocess.run([sys.executable, "-m", "eegz.cli", *map(str, args)], check=True, capture_output=True)
    assert check_complete()
    assert not list(out.parent.glob(f".{out.name}.*.eegz-partial"))
    return killed


def test_kill_9_never_leaves_a_file_at_the_output_path(tmp_path):
    src = tmp_path / "rec.edf"
    tiled_edf(src, 6)  # about 6 minutes of 21 channels
    out = tmp_path / "rec.eegz"

    def complete_eegz():
        return run_cli("info", out).returncode == 0

    killed = _kill_at_moments(tmp_path, ["compress", src, "-o", out, "--mode", "lossless", "-q"], out, complete_eegz)
    assert killed >= 10
    back = tmp_path / "back.edf"

    def complete_edf():
        return back.read_bytes() == src.read_bytes()

    killed = _kill_at_moments(tmp_path, ["decompress", out, "-o", back, "-q"], back, complete_edf)
    assert killed >= 10
