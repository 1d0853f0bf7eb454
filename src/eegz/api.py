"""The Python API: compress, decompress, read a time range, info and verify. Options, paths, checks.

This module imports neither torch nor dac: the neural codec is loaded only when a lossy stream is
written or read, so the exact modes and `eegz info` start fast and work without a model.
"""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np

from .channels import NEURAL
from .container import FORMAT_VERSION, AtomicFile, Container, stream_sizes
from .decode import decode_blocks, decode_records, edf_header_of
from .edf import EdfReader, records_to_bytes, split_records, with_record_count
from .errors import EegzError, FormatError, VerifyError

__all__ = ["compress", "decompress", "read_signals", "info", "verify"]


def default_output(path: Path, suffix: str) -> Path:
    path = Path(path)
    if suffix == ".eegz":
        return path.with_name(path.name + ".eegz") if path.suffix.lower() == ".eegz" else path.with_suffix(".eegz")
    stem = path.with_suffix("") if path.suffix.lower() == ".eegz" else path
    if stem.suffix.lower() in (".edf", ".bdf"):
        return stem
    return stem.with_suffix(".bdf" if suffix == ".bdf" else ".edf")


def _open_input(path: Path):
    try:
        f = open(path, "rb")
    except OSError as e:
        raise EegzError(f"cannot read {path}: {e.strerror}") from None
    if not os.path.isfile(path):
        f.close()
        raise EegzError(f"cannot read {path}: not a regular file")
    return f


def compress(in_path, out_path=None, mode: str = "lossy", codebooks: int = 6, device: str = "auto",
             model: str | None = None, max_error_uv: float | None = None, max_error_lsb: int | None = None,
             with_tokens: bool = False, exact_labels: tuple[str, ...] = (), force: bool = False,
             quiet: bool = True, workers: int = 0) -> dict:
    """Compress an EDF/BDF file into a .eegz container; returns the summary that `info` gives."""
    from .encode import EncodeOptions, encode
    options = EncodeOptions(mode=mode, codebooks=codebooks, max_error_uv=max_error_uv, max_error_lsb=max_error_lsb,
                            with_tokens=with_tokens, exact_labels=tuple(exact_labels), model=model, device=device,
                            workers=workers)
    options.check()
    in_path = Path(in_path)
    out_path = Path(out_path) if out_path else default_output(in_path, ".eegz")
    with _open_input(in_path) as source:
        reader = EdfReader(source, str(in_path), os.fstat(source.fileno()).st_size)
        with AtomicFile(out_path, force, inputs=(in_path,)) as out:
            meta, sizes, blocks = encode(reader, out, in_path.name, options, quiet)
    return _summary(out_path, meta, sizes, out_path.stat().st_size, FORMAT_VERSION, blocks)


def _record_range(meta: dict, start: float | None, end: float | None) -> tuple[int, int]:
    n, dur = meta["edf"]["records"], meta["edf"]["record_duration"]
    if start is None and end is None:
        return 0, n
    for value in (start, end):
        if value is not None and not math.isfinite(value):
            raise EegzError("--start and --end must be finite numbers of seconds")
    if dur <= 0:
        raise EegzError("this recording has no time axis (record duration 0): --start/--end cannot apply")
    start = 0.0 if start is None else start
    end = n * dur if end is None else end
    if start < 0 or end <= start:
        raise EegzError(f"empty or negative time range {start}..{end} s")
    if start >= n * dur:
        raise EegzError(f"--start {start} s lies beyond the recording's end ({n * dur:g} s)")
    return int(math.floor(start / dur + 1e-9)), min(n, int(math.ceil(end / dur - 1e-9)))


def decompress(in_path, out_path=None, start: float | None = None, end: float | None = None,
               device: str = "auto", model: str | None = None, force: bool = False, quiet: bool = True,
               workers: int = 0) -> dict:
    """Decode a .eegz file to EDF/BDF; a time range gives the whole records that cover it."""
    in_path = Path(in_path)
    with Container(in_path) as container:
        meta = container.meta
        kind = meta["edf"]["kind"]
        out_path = Path(out_path) if out_path else default_output(in_path, ".bdf" if kind == "BDF" else ".edf")
        first, stop = _record_range(meta, start, end)
        full = (first, stop) == (0, meta["edf"]["records"])
        header = edf_header_of(container)
        header_raw = container.edf_header if full else with_record_count(container.edf_header, stop - first)
        digest = hashlib.sha256(header_raw)
        size = len(header_raw)
        def records(entry, values) -> bytes:
            """The block's data records within [first, stop), as EDF bytes (run on the decode pool)."""
            lo, hi = max(first, entry.first_record), min(stop, entry.first_record + entry.record_count)
            cut = [values[i][(lo - entry.first_record) * s.samples_per_record:(hi - entry.first_record) * s.samples_per_record]
                   for i, s in enumerate(header.signals)]
            return records_to_bytes(header, cut, hi - lo)

        with AtomicFile(out_path, force, inputs=(in_path,)) as out:
            out.write(header_raw)
            for _, body in decode_blocks(container, first, stop, device, model, workers, quiet, finish=records):
                digest.update(body)
                out.write(body)
                size += len(body)
            if full:
                out.write(container.trailer)
                digest.update(container.trailer)
                size += len(container.trailer)
                if meta["mode"] == "lossless" and digest.hexdigest() != meta["source"]["sha256"]:
                    raise FormatError(f"{in_path.name}: the decoded EDF does not match the original's SHA-256")
    return {"output": str(out_path), "records": stop - first, "first_record": first, "bytes": size,
            "mode": meta["mode"]}


def read_signals(in_path, start: float | None = None, end: float | None = None, device: str = "auto",
                 model: str | None = None) -> dict:
    """Physical signals of a time range as numpy arrays, keyed by label; reads only the blocks needed."""
    with Container(Path(in_path)) as container:
        first, stop = _record_range(container.meta, start, end)
        header = edf_header_of(container)
        digital = decode_records(container, first, stop, device, model)
    return {s.label: s.to_physical(d) for s, d in zip(header.signals, digital) if not s.is_annotation}


def info(in_path) -> dict:
    """What a file holds, with every block read and checked (sizes by stream kind come from the blocks)."""
    in_path = Path(in_path)
    with Container(in_path) as container:
        sizes = stream_sizes(container.read_block(k) for k in range(len(container.blocks)))
        return _summary(in_path, container.meta, sizes, container.size, container.version, len(container.blocks))


def _summary(path: Path, meta: dict, sizes: dict, file_bytes: int, version: int, blocks: int) -> dict:
    edf = meta["edf"]
    duration = edf["records"] * edf["record_duration"]
    neural = [c for c in meta["channels"] if c["role"] == NEURAL]
    bps = 8 * sizes["neural"] / duration / len(neural) if (meta.get("codec") and neural and duration > 0) else None
    return {
        "file": str(path), "format_version": version, "mode": meta["mode"],
        "source": meta["source"].get("name"), "source_bytes": meta["source"]["bytes"], "bytes": file_bytes,
        "compression_ratio": meta["source"]["bytes"] / file_bytes,
        "duration_s": duration, "records": edf["records"], "record_duration_s": edf["record_duration"],
        "kind": edf["kind"], "n_channels": len(meta["channels"]),
        "channels": [{k: c.get(k) for k in ("label", "sample_rate", "physical_dimension", "role", "max_error_lsb",
                                            "style_index")} for c in meta["channels"]],
        "codec": meta.get("codec"), "codebooks": (meta.get("codec") or {}).get("n_codebooks"),
        "model": (meta.get("codec") or {}).get("model"), "bits_per_second_per_channel": bps,
        "blocks": blocks, "stream_bytes": sizes,
    }


def verify(eegz_path, edf_path, device: str = "auto", model: str | None = None) -> dict:
    """Decode the file and check every sample against the original EDF: exact, or within the bound."""
    eegz_path, edf_path = Path(eegz_path), Path(edf_path)
    with Container(eegz_path) as container, _open_input(edf_path) as source:
        meta = container.meta
        if os.fstat(source.fileno()).st_size != meta["source"]["bytes"]:
            raise VerifyError(f"{edf_path} is not the file that {eegz_path.name} was made from (size differs)")
        reader = EdfReader(source, str(edf_path), meta["source"]["bytes"])
        header = edf_header_of(container)
        if reader.header.raw != container.edf_header:
            raise VerifyError(f"{edf_path} is not the file that {eegz_path.name} was made from (header differs)")
        worst = [0] * len(header.signals)
        for entry, values in decode_blocks(container, 0, meta["edf"]["records"], device, model):
            raw, count = reader.read_records(entry.record_count)
            original = split_records(reader.header, raw, count)
            for i, (a, b) in enumerate(zip(original, (values[i] for i in range(len(header.signals))))):
                if len(a):
                    worst[i] = max(worst[i], int(np.max(np.abs(a.astype(np.int64) - b))))
        reader.trailing()
        if reader.sha256.hexdigest() != meta["source"]["sha256"]:
            raise VerifyError(f"{edf_path} is not the file that {eegz_path.name} was made from")
    report = []
    for c, err in zip(meta["channels"], worst):
        bound = c["max_error_lsb"] if c["role"] != NEURAL else None
        report.append({"label": c["label"], "max_error_lsb": err, "bound_lsb": bound, "ok": bound is None or err <= bound})
    bad = [r for r in report if not r["ok"]]
    if bad:
        raise VerifyError(f"{len(bad)} channel(s) exceed their error bound, first {bad[0]['label']!r}: "
                          f"{bad[0]['max_error_lsb']} > {bad[0]['bound_lsb']} steps")
    return {"ok": True, "mode": meta["mode"], "channels": report}
