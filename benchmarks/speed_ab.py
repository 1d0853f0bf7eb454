"""Speed of this working tree against an earlier commit, interleaved (a ratio, not an absolute time).

The machine is shared: an absolute encode time moves by 10 % between runs of neural_speed.py, so a change's cost is
measured here as the ratio of this tree's time to REF's, both timed in turns in fresh processes (3 rounds, best of
4 calls within each, the model loaded by the first). REF is checked out as a git worktree in a temporary folder,
with this tree's built C extension copied in (the extension must not differ between the two).

Usage: python benchmarks/speed_ab.py REF [EDF] ; EEGZ_BENCH_OPTIONS: compress options as JSON (default
{"codebooks": 6}). Writes benchmarks/results/speed_ab.{json,md} (EEGZ_BENCH_TAG: another name). REF is recorded as
its commit; this tree as its HEAD, with "+ changes" where it differs from HEAD.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = json.loads(os.environ.get("EEGZ_BENCH_OPTIONS", '{"codebooks": 6}'))
TAG = os.environ.get("EEGZ_BENCH_TAG", "speed_ab")
ROUNDS, CALLS = 3, 4
TIMER = '''
import sys, time, tempfile
sys.path.insert(0, {src!r})
from pathlib import Path
from eegz import api
folder = Path(tempfile.mkdtemp()); encode = decode = 1e9
for _ in range({calls}):
    t0 = time.perf_counter()
    api.compress({edf!r}, folder / "a.eegz", device="cpu", force=True, quiet=True, **{options!r})
    encode = min(encode, time.perf_counter() - t0)
    t0 = time.perf_counter()
    api.decompress(folder / "a.eegz", folder / "a.edf", device="cpu", force=True)
    decode = min(decode, time.perf_counter() - t0)
print(encode, decode)
'''


def timed(src: Path, edf: Path) -> tuple[float, float]:
    """(best encode s, best decode s) of one fresh process importing eegz from `src`."""
    code = TIMER.format(src=str(src), calls=CALLS, edf=str(edf), options=OPTIONS)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "EEGZ_THREADS": os.environ.get("EEGZ_THREADS", "2")})
    encode, decode = map(float, out.stdout.split()[-2:])
    return encode, decode


def main() -> None:
    ref = sys.argv[1]
    edf = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT.parent / "shared" / "data" / "eegmat" / "Subject00_1.edf"
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "ref"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], check=True,
                       capture_output=True)
        try:
            for built in (ROOT / "src" / "eegz").glob("_core*.so"):
                shutil.copy(built, tree / "src" / "eegz")
            times = {"ref": [], "this": []}
            for _ in range(ROUNDS):
                times["ref"].append(timed(tree / "src", edf))
                times["this"].append(timed(ROOT / "src", edf))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
    best = {k: (min(e for e, _ in v), min(d for _, d in v)) for k, v in times.items()}
    ratio = (best["this"][0] / best["ref"][0], best["this"][1] / best["ref"][1])
    ref, head = commit(ref), commit("HEAD")
    if subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "src"],
                      capture_output=True, text=True).stdout.strip():
        head += " + changes"
    out = ROOT / "benchmarks" / "results"
    (out / f"{TAG}.json").write_text(json.dumps({"date": str(date.today()), "ref": ref, "this": head, "edf": edf.name,
                                                  "options": OPTIONS, "times": times, "ratio": ratio}, indent=1) + "\n")
    (out / f"{TAG}.md").write_text(
        f"# Speed against {ref} ({date.today()}, {platform.machine()}, {os.cpu_count()} cores)\n\n"
        f"{edf.name}, compress options {OPTIONS}, {os.environ.get('EEGZ_THREADS', '2')} threads; {ROUNDS} rounds, "
        f"each timing {ref} then this tree ({head}) in fresh processes, best of {CALLS} calls. "
        "benchmarks/speed_ab.py.\n\n| tree | encode s | decode s |\n|---|---|---|\n"
        f"| {ref} | {best['ref'][0]:.3f} | {best['ref'][1]:.3f} |\n| this ({head}) | {best['this'][0]:.3f} | "
        f"{best['this'][1]:.3f} |\n| ratio | {ratio[0]:.3f} | {ratio[1]:.3f} |\n")
    print((out / f"{TAG}.md").read_text())


def commit(ref: str) -> str:
    """A ref's short commit hash."""
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref], capture_output=True,
                          text=True).stdout.strip()


if __name__ == "__main__":
    main()
