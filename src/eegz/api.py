"""The Python API: compress, decompress, read a time range, info and verify. Options, paths, checks.

This module imports neither torch nor dac: the neural codec is loaded only when a lossy stream is
written or read, so the exact modes and `eegz info` start fast and work without a model.
"""
from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np

from .channels import NEURAL
from .container import Container, add_stream_sizes, is_stdio, open_output, spooled_input, stream_sizes
from .decode import decode_blocks, decode_records, edf_header_of
from .edf import EdfReader, records_to_bytes, split_records, with_record_count
from .errors import EegzError, FormatError, VerifyError

__all__ = ["compress", "decompress", "recode", "read_signals", "info", "verify", "check"]


def default_output(path: Path, suffix: str) -> Path:
    path = Path(path)
    if suffix == ".eegz":
        return path.with_name(path.name + ".eegz") if path.suffix.lower() == ".eegz" else path.with_suffix(".eegz")
    stem = path.with_suffix("") if path.suffix.lower() == ".eegz" else path
    if stem.suffix.lower() in (".edf", ".bdf"):
        return stem
    return stem.with_suffix(".bdf" if suffix == ".bdf" else ".edf")


def _open_input(path: Path):
    if is_stdio(path):
        import contextlib
        import sys
        return contextlib.nullcontext(sys.stdin.buffer)
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
             quiet: bool = True, workers: int = 0, anonymize: bool = False, drop_annotation_text: bool = False,
             passphrase: bytes | None = None, band_envelope: bool = True, quality: float | None = None,
             bitrate: float | None = None, rotate_channels: bool = True) -> dict:
    """Compress an EDF/BDF file into a .eegz container; returns the summary that `info` gives.

    anonymize replaces the patient and recording identification (and the start date, by 01.01.85);
    passphrase also keeps the original identification, encrypted (AES-256-GCM, scrypt key);
    drop_annotation_text replaces every EDF+ annotation text by 'X'; band_envelope (lossy) carries each
    block's power above beta so that decoding restores it; quality (lossy) keeps, per block and channel, the
    fewest codebooks (3..9) whose block PRDN and delta..beta band powers are within `quality` percent.
    mode="transform" codes the EEG channels with the transform codec instead of the neural one, within
    `bitrate` bits per second per channel (default 250) or at `quality` (each block's coarsest step that
    meets it); rotate_channels (transform) codes the principal components of each block's EEG channels
    instead of each channel apart (smaller for the same error; decoding one channel then decodes them all)."""
    from .encode import EncodeOptions, encode
    options = EncodeOptions(mode=mode, codebooks=codebooks, max_error_uv=max_error_uv, max_error_lsb=max_error_lsb,
                            with_tokens=with_tokens, exact_labels=tuple(exact_labels), model=model, device=device,
                            workers=workers, anonymize=anonymize, drop_annotation_text=drop_annotation_text,
                            passphrase=passphrase, band_envelope=band_envelope, quality=quality, bitrate=bitrate,
                            rotate_channels=rotate_channels)
    options.check()
    in_path = Path(in_path)
    out_path = _output_path(in_path, out_path, ".eegz")
    with _open_input(in_path) as source:
        size = None if is_stdio(in_path) else os.fstat(source.fileno()).st_size
        reader = EdfReader(source, "standard input" if is_stdio(in_path) else str(in_path), size)
        with open_output(out_path, force, inputs=(in_path,)) as out:
            meta, sizes, blocks = encode(reader, out, "stdin" if is_stdio(in_path) else in_path.name, options, quiet)
    return _summary(out_path, meta, sizes, out.bytes_written, meta["format_version"], blocks)


def _output_path(in_path: Path, out_path, suffix: str) -> Path:
    if out_path is not None:
        return Path(out_path)
    if is_stdio(in_path):
        raise EegzError("reading standard input: name the output with -o (or -o - for standard output)")
    return default_output(in_path, suffix)


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
    if start < 0:
        raise EegzError(f"--start {start:g} s is before the recording's start (0 s)")
    if start >= n * dur:
        raise EegzError(f"--start {start:g} s lies beyond the recording's end ({n * dur:g} s)")
    if end <= start:
        raise EegzError(f"empty or negative time range {start:g}..{end:g} s")
    return int(math.floor(start / dur + 1e-9)), min(n, int(math.ceil(end / dur - 1e-9)))


def decompress(in_path, out_path=None, start: float | None = None, end: float | None = None,
               device: str = "auto", model: str | None = None, force: bool = False, quiet: bool = True,
               workers: int = 0, passphrase: bytes | None = None, codebooks: int | None = None) -> dict:
    """Decode a .eegz file to EDF/BDF; a time range gives the whole records that cover it, starting at
    their true time. With the passphrase of an encrypted identity, the original identification comes back
    (and a full lossless decode is then byte-identical to the original). codebooks: a quick preview of a
    lossy file from its first codebooks only. "-" reads standard input or writes standard output."""
    in_path = Path(in_path)
    with spooled_input(in_path) as readable, Container(readable) as container:
        meta = container.meta
        kind = meta["edf"]["kind"]
        out_path = _output_path(in_path, out_path, ".bdf" if kind == "BDF" else ".edf")
        _check_output_kind(out_path, kind)
        _check_codebooks(meta, codebooks)
        first, stop = _record_range(meta, start, end)
        full = (first, stop) == (0, meta["edf"]["records"])
        header = edf_header_of(container)
        header_raw, expected_sha = _restored_header(container, passphrase)
        shift = 0 if full else _whole_seconds(first * meta["edf"]["record_duration"])
        if not full:
            header_raw = _excerpt_header(header_raw, stop - first, shift)
        digest = hashlib.sha256(header_raw)
        size = len(header_raw)

        def records(entry, values) -> bytes:
            """The block's data records within [first, stop), as EDF bytes (run on the decode pool)."""
            lo, hi = max(first, entry.first_record), min(stop, entry.first_record + entry.record_count)
            cut = [values[i][(lo - entry.first_record) * s.samples_per_record:(hi - entry.first_record) * s.samples_per_record]
                   for i, s in enumerate(header.signals)]
            if shift:
                cut = [_shift_annotations(s, c, header.sample_width, shift) if s.is_annotation else c
                       for s, c in zip(header.signals, cut)]
            return records_to_bytes(header, cut, hi - lo)

        with open_output(out_path, force, inputs=(in_path,)) as out:
            out.write(header_raw)
            for _, body in decode_blocks(container, first, stop, device, model, workers, quiet, finish=records,
                                         codebooks=codebooks):
                digest.update(body)
                out.write(body)
                size += len(body)
            if full:
                out.write(container.trailer)
                digest.update(container.trailer)
                size += len(container.trailer)
                if meta["mode"] == "lossless" and digest.hexdigest() != expected_sha:
                    raise FormatError(f"{in_path.name}: the decoded EDF does not match the original's SHA-256")
    return {"output": str(out_path), "records": stop - first, "first_record": first, "bytes": size,
            "mode": meta["mode"]}


def _check_output_kind(out_path, kind: str) -> None:
    """An EDF recording written to a .bdf name (or a BDF one to .edf) would be misread as 24-bit (16-bit) samples
    by the next tool: other names are the user's choice."""
    suffix = Path(str(out_path)).suffix.lower()
    if not is_stdio(out_path) and suffix in (".edf", ".bdf") and suffix != f".{kind.lower()}":
        article = "an" if kind == "EDF" else "a"
        raise EegzError(f"the file holds {article} {kind} recording: name its output .{kind.lower()}, not {suffix}")


def _check_codebooks(meta: dict, codebooks: int | None) -> None:
    if codebooks is None:
        return
    stored = (meta.get("codec") or {}).get("n_codebooks")
    if meta["mode"] != "lossy" or stored is None:
        raise EegzError("--codebooks applies to lossy files only")
    if not 1 <= codebooks <= stored:
        raise EegzError(f"the file keeps {stored} codebooks: --codebooks must be 1 to {stored}")


def recode(in_path, out_path, codebooks: int, model: str | None = None, force: bool = False) -> dict:
    """A lossy file with only its first `codebooks` codebooks kept, without running the encoder (a
    retention tier); the result equals compressing at that many codebooks."""
    from .recoding import recode as run
    in_path, out_path = Path(in_path), Path(out_path)
    with Container(in_path) as container, open_output(out_path, force, inputs=(in_path,)) as out:
        meta, sizes, blocks = run(container, out, codebooks, model)
    return _summary(out_path, meta, sizes, out.bytes_written, meta["format_version"], blocks)


def check(in_path, device: str = "auto", model: str | None = None) -> dict:
    """Read and decode every block of a file (checksums, stream structure, neural decode) and, for a
    lossless file, compare the decoded EDF's SHA-256 with the one stored: what can be verified without
    the original."""
    in_path = Path(in_path)
    with Container(in_path) as container:
        meta = container.meta
        records = meta["edf"]["records"]
        digest = hashlib.sha256(container.edf_header)
        header = edf_header_of(container)

        def body(entry, values) -> bytes:
            return records_to_bytes(header, [values[i] for i in range(len(header.signals))], entry.record_count)

        for _, data in decode_blocks(container, 0, records, device, model, finish=body):
            digest.update(data)
        digest.update(container.trailer)
        if meta["mode"] == "lossless" and digest.hexdigest() != meta["source"]["sha256"]:
            raise FormatError(f"{in_path.name}: the decoded EDF does not match the stored SHA-256")
    return {"ok": True, "file": str(in_path), "mode": meta["mode"], "records": records}


def _same_header(original: bytes, stored: bytes, clear: bool) -> bool:
    """Whether the stored header is the original's (but for its identification, when that was anonymized)."""
    from .identity import IDENTITY
    if clear or len(original) != len(stored):
        return original == stored
    return original[:IDENTITY.start] == stored[:IDENTITY.start] and original[IDENTITY.stop:] == stored[IDENTITY.stop:]


def _restored_header(container: Container, passphrase: bytes | None) -> tuple[bytes, str]:
    """(the EDF header to write, the SHA-256 a full lossless decode must have): the stored header, or with
    the passphrase the original identification put back (and the original file's SHA-256)."""
    from . import identity
    if passphrase is None:
        return container.edf_header, container.meta["source"]["sha256"]
    if container.identity is None:
        raise EegzError(f"{container.name} holds no encrypted identity: decode it without a passphrase")
    original = identity.decrypt_identity(container.identity, passphrase, container.edf_header)
    try:
        fields = bytes.fromhex(original["header_fields"])
        sha = original.get("restored_sha256", original["source"]["sha256"])
    except (KeyError, ValueError, TypeError):
        raise FormatError(f"{container.name}: the encrypted identity is damaged") from None
    if len(fields) != identity.IDENTITY.stop - identity.IDENTITY.start:
        raise FormatError(f"{container.name}: the encrypted identity is damaged")
    raw = container.edf_header
    return raw[:identity.IDENTITY.start] + fields + raw[identity.IDENTITY.stop:], sha


def _whole_seconds(seconds: float) -> int:
    return int(math.floor(seconds + 1e-9))


def _excerpt_header(header_raw: bytes, n_records: int, shift: int) -> bytes:
    """A time-range export's header: its record count, and its start moved to the excerpt's (whole seconds;
    an EDF+ excerpt keeps the fraction in its first record's onset)."""
    from . import identity
    raw = with_record_count(header_raw, n_records)
    start = identity.start_of(raw)
    if start is not None and shift:
        import datetime as dt
        raw = identity.with_start(raw, start + dt.timedelta(seconds=shift))
    return raw


def _shift_annotations(signal, digital: np.ndarray, width: int, shift: int) -> np.ndarray:
    """An EDF+ annotation signal's records with every onset moved back by `shift` seconds."""
    from . import identity
    from .edf import bytes_to_digital, digital_to_bytes
    data = identity.rewrite_annotations(digital_to_bytes(digital, width).tobytes(), signal.samples_per_record * width,
                                        shift=shift)
    return bytes_to_digital(np.frombuffer(data, np.uint8), width)


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
    from .tokens import codebook_counts
    with Container(in_path) as container:
        sizes, counts = stream_sizes([]), Counter()
        for k in range(len(container.blocks)):  # one block in memory at a time
            streams = container.read_block(k)
            add_stream_sizes(sizes, streams)
            counts.update(codebook_counts(streams, container.version))
        counts = dict(sorted(counts.items()))
        summary = _summary(in_path, container.meta, sizes, container.size, container.version, len(container.blocks))
    if counts:
        summary["codebook_counts"] = counts  # token streams by the number of codebooks they keep
    return summary


def _summary(path: Path, meta: dict, sizes: dict, file_bytes: int, version: int, blocks: int) -> dict:
    edf = meta["edf"]
    duration = edf["records"] * edf["record_duration"]
    neural = [c for c in meta["channels"] if c["role"] == NEURAL]
    coded = sizes["neural"] + sizes.get("transform", 0)
    lossy = meta.get("codec") or meta["mode"] == "transform"
    bps = 8 * coded / duration / len(neural) if (lossy and neural and duration > 0) else None
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
        **({"transform": meta["transform"]} if meta.get("transform") else {}),
        "blocks": blocks, "stream_bytes": sizes,
        "identity": meta.get("identity", "clear"), "annotation_text": meta.get("annotation_text", "kept"),
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
        clear = meta.get("identity", "clear") == "clear"
        if not _same_header(reader.header.raw, container.edf_header, clear):
            raise VerifyError(f"{edf_path} is not the file that {eegz_path.name} was made from (header differs)")
        worst = [0] * len(header.signals)
        for entry, values in decode_blocks(container, 0, meta["edf"]["records"], device, model):
            raw, count = reader.read_records(entry.record_count)
            original = split_records(reader.header, raw, count)
            for i, (a, b) in enumerate(zip(original, (values[i] for i in range(len(header.signals))))):
                if len(a) and not (header.signals[i].is_annotation and meta.get("annotation_text") == "dropped"):
                    worst[i] = max(worst[i], int(np.max(np.abs(a.astype(np.int64) - b))))
        reader.trailing()
        if clear and reader.sha256.hexdigest() != meta["source"]["sha256"]:
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
