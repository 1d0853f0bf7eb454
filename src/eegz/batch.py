"""Whole folders: one task per file, run on local worker processes or on a Dask cluster.

A rerun resumes: a file whose output exists and checks out is skipped, one whose output is missing or
damaged is done again. One failing file never stops the others; the report has one entry per file.
Each local worker gets an equal share of the cores (EEGZ_THREADS and the BLAS/OpenMP variables), so
N workers never oversubscribe them.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EegzError

INPUT_SUFFIXES = {"compress": (".edf", ".bdf"), "decompress": (".eegz",), "verify": (".eegz",), "recode": (".eegz",)}
EXIT_SEVERAL_KINDS = 9  # failures of more than one kind (the report says which file failed how)
LOSSY_WORKER_BYTES = 1200 << 20  # peak memory of one lossy worker (torch and the model included)


@dataclass
class Task:
    command: str
    input: str
    output: str | None
    options: dict = field(default_factory=dict)
    force: bool = False


def plan(command: str, paths, recursive: bool, out_dir: Path | None, options: dict, force: bool) -> list[Task]:
    """One task per input file. Folders give the files with the command's suffixes (their subfolders too
    with recursive); outputs go beside the inputs, or under out_dir mirroring each folder's layout."""
    from .api import default_output
    tasks = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(p for p in path.glob(pattern) if p.is_file() and not p.name.startswith(".")
                           and p.suffix.lower() in INPUT_SUFFIXES[command])
            root = path
        elif path.exists():
            files, root = [path], path.parent
        else:
            raise EegzError(f"cannot read {path}: No such file or directory")
        for f in files:
            out = None
            if command != "verify":
                if out_dir is not None:
                    out = _mirrored(out_dir / f.relative_to(root), command, f)
                elif command == "recode":
                    raise EegzError("recode writes new files: name an output folder with -o DIR")
                else:
                    out = default_output(f, ".eegz" if command == "compress" else _decoded_suffix(f))
            tasks.append(Task(command, str(f), str(out) if out else None, dict(options), force))
    return _distinct_outputs(tasks)


def _distinct_outputs(tasks: list[Task]) -> list[Task]:
    """Inputs that would share an output (rec.edf and rec.bdf side by side) keep their whole names
    (rec.edf.eegz, rec.bdf.eegz, which decode back to rec.edf and rec.bdf)."""
    from collections import Counter
    counts = Counter(t.output for t in tasks if t.output)
    for t in tasks:
        if t.output and counts[t.output] > 1:
            if t.command != "compress":
                raise EegzError(f"{t.output} would be written for several inputs; give each its own folder")
            t.output = str(Path(t.output).with_name(Path(t.input).name + ".eegz"))
    return tasks


def _mirrored(path: Path, command: str, source: Path) -> Path:
    from .api import default_output
    if command == "recode":
        return path
    return default_output(path, ".eegz" if command == "compress" else _decoded_suffix(source))


def _decoded_suffix(path: Path) -> str:
    """.bdf for a file that holds a BDF recording, else .edf (a damaged file fails later, on its own)."""
    from .container import Container
    try:
        with Container(path) as c:
            return ".bdf" if c.meta["edf"]["kind"] == "BDF" else ".edf"
    except EegzError:
        return ".edf"


# ---------------------------------------------------------------- one task (runs in a worker)

def run_task(task: Task) -> dict:
    """Do one file; never raises: the outcome is in the returned report entry."""
    t0 = time.perf_counter()
    entry = {"input": task.input, "output": task.output, "status": "ok", "error": None, "exit_code": 0,
             "input_bytes": _size(task.input)}
    try:
        redo = False
        if task.output and Path(task.output).exists() and not task.force:
            if _output_checks_out(task):
                entry["status"] = "skipped"
                entry["output_bytes"] = _size(task.output)
                return _finished(entry, t0)
            redo = True  # missing or damaged work of an earlier run: done again
        if task.output:  # a mirrored layout under -o DIR: its folders are made as needed
            Path(task.output).parent.mkdir(parents=True, exist_ok=True)
        _run(task, force=task.force or redo)
        entry["output_bytes"] = _size(task.output) if task.output else None
    except EegzError as e:
        entry.update(status="failed", error=str(e), exit_code=e.exit_code)
    except MemoryError:
        entry.update(status="failed", error="out of memory", exit_code=1)
    except Exception as e:  # noqa: BLE001 - a bug must not stop the other files
        entry.update(status="failed", error=f"internal error ({type(e).__name__}: {e})", exit_code=1)
    return _finished(entry, t0)


def _run(task: Task, force: bool) -> None:
    from . import api
    o = task.options
    if task.command == "compress":
        api.compress(task.input, task.output, force=force, **o)
    elif task.command == "decompress":
        api.decompress(task.input, task.output, force=force, **o)
    elif task.command == "recode":
        api.recode(task.input, task.output, force=force, **o)
    else:
        api.check(task.input, **o)


def _output_checks_out(task: Task) -> bool:
    """Whether an existing output is complete work of this task: every section and block checksum holds
    and it was made from this input (its SHA-256), with the same settings."""
    from .container import Container
    from .errors import FormatError
    out = Path(task.output)
    try:
        if task.command in ("compress", "recode"):
            with Container(out) as c:
                for k in range(len(c.blocks)):
                    c.read_block(k)
                meta = c.meta
            if task.command == "recode":
                return (meta.get("codec") or {}).get("n_codebooks") == task.options.get("codebooks")
            wanted = task.options.get("mode", "lossy")
            if meta["mode"] != wanted or (wanted == "lossy" and meta["codec"]["n_codebooks"] != task.options.get("codebooks", 6)) \
                    or (wanted == "transform" and meta["transform"] != _transform_header(task.options)):
                raise EegzError(f"{out} exists, made with other settings; use --force to replace it")
            same_bytes = meta.get("identity", "clear") == "clear" and meta.get("annotation_text", "kept") == "kept"
            return (meta["source"]["bytes"] == _size(task.input)
                    and (not same_bytes or meta["source"]["sha256"] == _sha256(task.input)))
        if task.command == "decompress":
            with Container(Path(task.input)) as c:
                meta = c.meta
            if task.options.get("start") is not None or task.options.get("end") is not None:
                return False
            if _size(task.output) != meta["source"]["bytes"]:
                return False
            return meta["mode"] != "lossless" or _sha256(task.output) == meta["source"]["sha256"]
    except FormatError:
        return False
    return False


def _transform_header(options: dict) -> dict:
    """What a transform file made with these options records in its header."""
    from .encode import EncodeOptions
    return EncodeOptions(mode="transform", bitrate=options.get("bitrate"), quality=options.get("quality"),
                         band_envelope=options.get("band_envelope", True),
                         rotate_channels=options.get("rotate_channels", True)).transform_header


def _finished(entry: dict, t0: float) -> dict:
    entry["seconds"] = round(time.perf_counter() - t0, 3)
    if entry.get("output_bytes") and entry["input_bytes"]:
        entry["ratio"] = round(entry["input_bytes"] / entry["output_bytes"], 3)
    return entry


def _size(path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- running many

def default_jobs(command: str, options: dict) -> int:
    """As many workers as cores, fewer when lossy workers would not fit in the available memory."""
    from .parallel import cpu_budget
    jobs = cpu_budget()
    lossy = command == "compress" and options.get("mode", "lossy") == "lossy"
    if lossy or command in ("decompress", "verify", "recode"):
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            jobs = max(1, min(jobs, available // LOSSY_WORKER_BYTES))
        except (ValueError, OSError, AttributeError):
            pass
    return jobs


def run_local(tasks: list[Task], jobs: int, progress) -> list[dict]:
    """Tasks on `jobs` worker processes (each with an equal share of the cores); in input order."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    import multiprocessing
    from .parallel import THREADS_ENV, cpu_budget
    if jobs <= 1 or len(tasks) <= 1:
        results = []
        for t in tasks:
            results.append(run_task(t))
            progress(results[-1])
        return results
    share = str(max(1, cpu_budget() // jobs))
    saved = {k: os.environ.get(k) for k in (THREADS_ENV, "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({k: share for k in saved})  # inherited by the workers as they start
    try:
        results: list = [None] * len(tasks)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_task, t): k for k, t in enumerate(tasks)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                progress(results[futures[future]])
        return results
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def worker_identity(model: str | None = None) -> dict:
    """What a worker would code with: eegz's version and the model's SHA-256 (compared before a cluster
    run, so that every file of an archive is made by the same code and weights)."""
    from . import __version__
    identity = {"eegz": __version__, "model": None}
    try:
        from .neural import file_sha256, resolve_model_path
        identity["model"] = file_sha256(resolve_model_path(model))
    except EegzError:
        pass
    return identity


def run_dask(tasks: list[Task], scheduler: str, progress, model: str | None = None) -> list[dict]:
    """Tasks on a running Dask cluster, one file per task. Inputs and outputs must be on storage the
    workers share; every worker must run this eegz version with this model."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise EegzError('--scheduler needs Dask: pip install "eegz[dask]"') from None
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as e:
        raise EegzError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    with client:
        mine = worker_identity(model)
        theirs = client.run(worker_identity, model)
        if not theirs:
            raise EegzError(f"the Dask cluster at {scheduler} has no workers")
        for address, identity in theirs.items():
            if identity != mine:
                raise EegzError(f"Dask worker {address} runs eegz {identity['eegz']} with model "
                                f"{(identity['model'] or 'none')[:12]}, this one eegz {mine['eegz']} with model "
                                f"{(mine['model'] or 'none')[:12]}: install the same eegz on every worker")
        futures = client.map(run_task, tasks, pure=False)
        index = {f.key: k for k, f in enumerate(futures)}
        results: list = [None] * len(tasks)
        for future in as_completed(futures):
            results[index[future.key]] = future.result()
            progress(results[index[future.key]])
        return results


def summarize(command: str, results: list[dict], seconds: float) -> dict:
    counts = {s: sum(r["status"] == s for r in results) for s in ("ok", "skipped", "failed")}
    return {"command": command, "files": len(results), **counts, "seconds": round(seconds, 3), "results": results}


def exit_code(results: list[dict]) -> int:
    """0 when every file succeeded (or was already done); the failures' exit code when they share one;
    EXIT_SEVERAL_KINDS otherwise."""
    codes = {r["exit_code"] for r in results if r["status"] == "failed"}
    if not codes:
        return 0
    return codes.pop() if len(codes) == 1 else EXIT_SEVERAL_KINDS

