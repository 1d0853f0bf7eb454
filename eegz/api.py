"""The Python API: compress, decompress, read a time range, info and verify.

This module imports neither torch nor dac: the neural codec is loaded only when a lossy stream is
written or read, so the exact modes and `eegz info` start fast and work without a model.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zstandard

from . import __version__
from .channels import ANNOTATION, EXACT, NEURAL, channel_roles
from .container import (ALL_SIGNALS, ANNOTATION_BYTES, RECORD_BYTES, LOSSLESS, NEAR_LOSSLESS, NEURAL_TOKENS, STREAM_ENTRY,
                        ContainerReader, ContainerWriter, Stream, pack_block, write_atomically)
from .dsp import microvolt_factor
from .edf import EdfHeader, EdfRecording, bytes_to_digital, digital_to_bytes, parse_header, parse_recording, \
    records_to_bytes, split_records, with_record_count
from .errors import EegzError, FormatError, ModelError, OutputExistsError
from .exact import ExactItem, decode_items, encode_items
from .progress import Progress

MODES = ("lossy", "lossless", "near-lossless")
TARGET_BLOCK_SECONDS = 16.0
MIN_CODEBOOKS, MAX_CODEBOOKS = 3, 9
ENCODE_QUEUE_SAMPLES = 1 << 21  # codec-rate samples gathered from several channels per model call
AUX_TOKENS = 1  # stream flag: neural tokens carried beside an exact stream (--with-tokens)


@dataclass
class BlockPlan:
    first_record: int
    record_count: int


def plan_blocks(n_records: int, record_duration: float, frame_seconds: float | None) -> list[BlockPlan]:
    """Runs of whole records of about TARGET_BLOCK_SECONDS; with a codec, block starts fall on frames."""
    if n_records == 0:
        return []
    if record_duration <= 0:
        return [BlockPlan(0, n_records)]
    base = max(1, round(TARGET_BLOCK_SECONDS / record_duration))
    per_block = n_records
    for r in range(base, 4 * base + 1):
        if frame_seconds is None or abs(r * record_duration / frame_seconds - round(r * record_duration / frame_seconds)) < 1e-6:
            per_block = r
            break
    return [BlockPlan(i, min(per_block, n_records - i)) for i in range(0, n_records, per_block)]


def default_output(path: Path, suffix: str) -> Path:
    path = Path(path)
    if suffix == ".eegz":
        return path.with_name(path.name + ".eegz") if path.suffix.lower() == ".eegz" else path.with_suffix(".eegz")
    stem = path.with_suffix("") if path.suffix.lower() == ".eegz" else path
    if stem.suffix.lower() in (".edf", ".bdf"):
        return stem
    return stem.with_suffix(".bdf" if suffix == ".bdf" else ".edf")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _channel_bounds(header: EdfHeader, roles: list[str], mode: str, max_error_uv: float | None,
                    max_error_lsb: int | None) -> list[int]:
    """Per signal, the near-lossless bound K in digital steps (0: exact)."""
    bounds = []
    for s, role in zip(header.signals, roles):
        k = 0
        if mode == "near-lossless" and role != ANNOTATION:
            if max_error_lsb is not None:
                k = int(max_error_lsb)
            elif max_error_uv is not None and microvolt_factor(s.physical_dimension) and s.gain:
                k = int(math.floor(max_error_uv / abs(s.gain * microvolt_factor(s.physical_dimension)) + 1e-9))
        bounds.append(max(k, 0))
    return bounds


def _sample_range(header: EdfHeader) -> tuple[int, int]:
    bits = 8 * header.sample_width
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _records_slice(rec: EdfRecording, signal: int, plan: BlockPlan) -> np.ndarray:
    spr = rec.header.signals[signal].samples_per_record
    return rec.digital[signal][plan.first_record * spr:(plan.first_record + plan.record_count) * spr]


def _check_options(mode: str, codebooks: int, max_error_uv, max_error_lsb) -> None:
    if mode not in MODES:
        raise EegzError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    if not MIN_CODEBOOKS <= codebooks <= MAX_CODEBOOKS:
        raise EegzError(f"--codebooks must be between {MIN_CODEBOOKS} and {MAX_CODEBOOKS}, got {codebooks}")
    if mode == "near-lossless" and max_error_uv is None and max_error_lsb is None:
        raise EegzError("near-lossless mode needs --max-error (µV) or --max-error-lsb")
    if (max_error_uv is not None and max_error_uv < 0) or (max_error_lsb is not None and max_error_lsb < 0):
        raise EegzError("the error bound must not be negative")


def compress(in_path, out_path=None, mode: str = "lossy", codebooks: int = 6, device: str = "auto",
             model: str | None = None, max_error_uv: float | None = None, max_error_lsb: int | None = None,
             with_tokens: bool = False, exact_labels: tuple[str, ...] = (), force: bool = False,
             quiet: bool = True) -> dict:
    """Compress an EDF/BDF file into a .eegz container; returns the summary that `info` gives."""
    _check_options(mode, codebooks, max_error_uv, max_error_lsb)
    in_path = Path(in_path)
    out_path = Path(out_path) if out_path else default_output(in_path, ".eegz")
    if out_path.exists() and not force:
        raise OutputExistsError(f"{out_path} exists; use --force to overwrite it")
    raw = _read_bytes(in_path)
    rec = parse_recording(raw, str(in_path))
    header = rec.header
    roles = channel_roles(header.signals, exact_labels)
    bounds = _channel_bounds(header, roles, mode, max_error_uv, max_error_lsb)
    neural_signals = [i for i, r in enumerate(roles) if r == NEURAL] if (mode == "lossy" or with_tokens) else []
    codec = None
    if neural_signals and rec.n_records:
        from .neural import NeuralCodec
        codec = NeuralCodec.load(model, device)
    frame_seconds = codec.config.hop / codec.config.sample_rate if codec else None
    blocks = plan_blocks(rec.n_records, header.record_duration, frame_seconds)

    tokens, context = {}, 0
    if codec:
        tokens, context = _encode_neural(rec, neural_signals, blocks, codec, codebooks, quiet)
    coded_by_tokens = set(tokens) if mode == "lossy" else set()
    exact_streams = _encode_exact(rec, roles, bounds, blocks, coded_by_tokens)

    meta = _header_json(in_path, raw, rec, roles, bounds, mode, codec, codebooks, context, blocks, with_tokens)
    zc = zstandard.ZstdCompressor(level=19)
    max_spr = max((s.samples_per_record for s in header.signals), default=0)
    with ContainerWriter(out_path, meta, header.raw, rec.trailing, force) as writer:
        for b, plan in enumerate(blocks):
            streams = []
            fallback = _record_bytes_fallback(raw, rec, plan, exact_streams, b, zc) if mode == "lossless" else None
            if fallback is not None:
                writer.add_block(pack_block([fallback]), plan.first_record, plan.record_count,
                                 plan.first_record * max_spr, plan.record_count * max_spr)
                continue
            for i, role in enumerate(roles):
                if role == ANNOTATION:
                    data = digital_to_bytes(_records_slice(rec, i, plan), header.sample_width).tobytes()
                    streams.append(Stream(i, ANNOTATION_BYTES, zc.compress(data)))
                    continue
                if (b, i) in exact_streams:
                    kind = NEAR_LOSSLESS if bounds[i] else LOSSLESS
                    streams.append(Stream(i, kind, exact_streams[(b, i)]))
                if (b, i) in tokens:
                    flags = 0 if (b, i) in coded_by_tokens else AUX_TOKENS
                    streams.append(Stream(i, NEURAL_TOKENS, tokens[(b, i)], flags))
            writer.add_block(pack_block(streams), plan.first_record, plan.record_count,
                             plan.first_record * max_spr, plan.record_count * max_spr)
        writer.finish()
    return info(out_path)


def _record_bytes_fallback(raw: bytes, rec: EdfRecording, plan: BlockPlan, exact_streams: dict,
                           b: int, zc) -> Stream | None:
    """A block whose 'samples' predict badly (byte-shifted, mangled files) kept as its record bytes under
    zstd when that is smaller: lossless mode should never lose to a general-purpose compressor."""
    coded = sum(len(v) for (blk, _), v in exact_streams.items() if blk == b)
    n_samples = sum(s.samples_per_record for s in rec.header.signals) * plan.record_count
    if 8 * coded <= 10 * n_samples:  # prediction works (below 10 bits a sample): no need to try
        return None
    start = len(rec.header.raw) + plan.first_record * rec.header.record_bytes
    body = zc.compress(raw[start:start + plan.record_count * rec.header.record_bytes])
    return Stream(ALL_SIGNALS, RECORD_BYTES, body) if len(body) < coded else None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise EegzError(f"cannot read {path}: {e.strerror}") from None


def _encode_neural(rec, neural_signals, blocks, codec, codebooks, quiet):
    from .lossy import block_is_codable, context_frames, encode_jobs, pack_tokens, plan_channel
    header = rec.header
    hop, rate = codec.config.hop, codec.config.sample_rate
    context = context_frames([header.signals[i] for i in neural_signals], rate, hop)
    starts = [p.first_record * header.record_duration for p in blocks]
    tokens = {}
    pending: list = []  # (channel, job): channels are batched together through the model

    def flush():
        codes = codec.encode([job.segment for _, job in pending], codebooks)
        for (i, job), c in zip(pending, codes):
            for b, offset, scale, own in job.blocks:
                tokens[(b, i)] = pack_tokens(c[:, own], offset, scale, codec.config.bits_per_code,
                                             codec.token_counts)
        pending.clear()

    queued = 0  # samples in pending
    with Progress(len(neural_signals), "compress", quiet) as bar:
        for i in neural_signals:
            s = header.signals[i]
            codable = [b for b, p in enumerate(blocks) if block_is_codable(_records_slice(rec, i, p), s)]
            if codable:
                plan = plan_channel(s, s.to_physical(rec.digital[i]), starts, rate, hop)
                jobs = encode_jobs(plan, codable, hop, context)
                pending += [(i, job) for job in jobs]
                queued += sum(len(job.segment) for job in jobs)
            if queued >= ENCODE_QUEUE_SAMPLES:
                flush()
                queued = 0
            bar.update(1, s.label)
        flush()
    return tokens, context


def _encode_exact(rec, roles, bounds, blocks, coded_by_tokens) -> dict:
    lo, hi = _sample_range(rec.header)
    keys, items = [], []
    for b, plan in enumerate(blocks):
        for i, role in enumerate(roles):
            if role == ANNOTATION or (b, i) in coded_by_tokens:
                continue
            keys.append((b, i))
            items.append(ExactItem(_records_slice(rec, i, plan), bounds[i], b, lo, hi))
    return dict(zip(keys, encode_items(items)))


def format_version_for(codec, mode: str) -> int:
    """Version 2 only where decoding needs what version 1 readers lack (DAC-MC channel mixing)."""
    return 2 if codec is not None and mode == "lossy" and codec.config.is_multichannel else 1


def _header_json(in_path, raw, rec, roles, bounds, mode, codec, codebooks, context, blocks, with_tokens):
    header = rec.header
    channels = []
    for s, role, k in zip(header.signals, roles, bounds):
        channels.append({
            "index": s.index, "label": s.label, "transducer": s.transducer,
            "physical_dimension": s.physical_dimension, "physical_min": s.physical_min,
            "physical_max": s.physical_max, "digital_min": s.digital_min, "digital_max": s.digital_max,
            "prefilter": s.prefilter, "sample_rate": s.sample_rate, "samples_per_record": s.samples_per_record,
            "role": role if (role != NEURAL or mode == "lossy") else EXACT,
            "style_index": codec.style_index(s.label) if (codec and role == NEURAL and mode == "lossy") else None,
            "max_error_lsb": k,
        })
    codec_meta = None
    if codec:
        codec_meta = {"variant": codec.config.variant, "model": codec.name, "config": codec.config.dac_arguments(),
                      "weights_sha256": codec.sha256, "n_codebooks": codebooks, "context_frames": context}
    return {
        "format": "eegz", "format_version": format_version_for(codec, mode), "writer": f"eegz {__version__}", "mode": mode,
        "source": {"name": Path(in_path).name, "bytes": len(raw), "sha256": _sha256(raw)},
        "edf": {"kind": "BDF" if header.is_bdf else "EDF", "reserved": header.reserved,
                "declared_records": header.n_records, "records": rec.n_records,
                "record_duration": header.record_duration, "sample_width": header.sample_width,
                "header_bytes": len(header.raw), "data_bytes": rec.n_records * header.record_bytes,
                "trailing_bytes": len(rec.trailing)},
        "channels": channels, "codec": codec_meta, "with_tokens": bool(with_tokens and codec),
        "blocks": {"count": len(blocks), "records_per_block": blocks[0].record_count if blocks else 0},
    }


# ---------------------------------------------------------------- decoding

@dataclass
class Decoded:
    header: EdfHeader
    first_record: int
    n_records: int
    digital: list[np.ndarray]


def _record_range(meta: dict, start: float | None, end: float | None) -> tuple[int, int]:
    n, dur = meta["edf"]["records"], meta["edf"]["record_duration"]
    if start is None and end is None:
        return 0, n
    if dur <= 0:
        raise EegzError("this recording has no time axis (record duration 0): --start/--end cannot apply")
    start = 0.0 if start is None else start
    end = n * dur if end is None else end
    if start < 0 or end <= start:
        raise EegzError(f"empty or negative time range {start}..{end} s")
    if start >= n * dur:
        raise EegzError(f"--start {start} s lies beyond the recording's end ({n * dur:g} s)")
    return int(math.floor(start / dur + 1e-9)), min(n, int(math.ceil(end / dur - 1e-9)))


def decode_records(reader: ContainerReader, first: int, stop: int, device: str = "auto",
                   model: str | None = None, quiet: bool = True) -> Decoded:
    """Digital samples of every signal for records [first, stop), decoding only the blocks needed."""
    meta = reader.header
    header = parse_header(reader.edf_header)
    targets = reader.blocks_for_records(first, stop)
    codec_meta = meta.get("codec")
    wanted = set(targets)
    if codec_meta and meta["mode"] == "lossy":
        wanted |= {b + d for b in targets for d in (-1, 1) if 0 <= b + d < len(reader.blocks)}
    streams = {b: {(s.signal, s.kind): s for s in reader.read_block(b)} for b in sorted(wanted)}
    width = header.sample_width
    zd = zstandard.ZstdDecompressor()
    whole_records = {b: split_records(header, zd.decompress(streams[b][(ALL_SIGNALS, RECORD_BYTES)].data),
                                      reader.blocks[b].record_count)
                     for b in targets if (ALL_SIGNALS, RECORD_BYTES) in streams[b]}
    pieces: dict[int, list[np.ndarray]] = {i: [] for i in range(len(header.signals))}

    exact_keys = [(b, key) for b in targets for key in streams[b] if key[1] in (LOSSLESS, NEAR_LOSSLESS)]
    exact_values = decode_items([streams[b][k].data for b, k in exact_keys], [b for b, _ in exact_keys])
    exact = {(b, k[0]): v for (b, k), v in zip(exact_keys, exact_values)}
    neural = _decode_neural(reader, streams, targets, header, device, model, quiet) \
        if codec_meta and meta["mode"] == "lossy" else {}
    for b in targets:
        for i, s in enumerate(header.signals):
            if b in whole_records:
                pieces[i].append(whole_records[b][i])
            elif (b, i) in exact:
                pieces[i].append(exact[(b, i)].astype(np.int32))
            elif (b, i) in neural:
                pieces[i].append(neural[(b, i)])
            elif (i, ANNOTATION_BYTES) in streams[b]:
                data = np.frombuffer(zd.decompress(streams[b][(i, ANNOTATION_BYTES)].data), np.uint8)
                pieces[i].append(bytes_to_digital(data, width))
            else:
                raise FormatError(f"block {b} has no stream for signal {i + 1} ({s.label})")
    block_first = reader.blocks[targets[0]].first_record if targets else first
    digital = []
    for i, s in enumerate(header.signals):
        whole = np.concatenate(pieces[i]) if pieces[i] else np.zeros(0, np.int32)
        spr = s.samples_per_record
        digital.append(whole[(first - block_first) * spr:(stop - block_first) * spr])
    return Decoded(header, first, stop - first, digital)


def _decode_neural(reader, streams, targets, header, device, model, quiet) -> dict:
    from .lossy import to_channel_samples, unpack_tokens, with_context
    from .neural import NeuralCodec
    meta = reader.header["codec"]
    needed = any(k[1] == NEURAL_TOKENS for b in targets for k in streams[b])
    if not needed:
        return {}
    try:
        codec = NeuralCodec.load(model or meta["model"], device, expect_sha256=meta["weights_sha256"])
    except ModelError as e:
        raise ModelError(f"{e}; this file needs model {meta['model']!r} with weights "
                         f"{meta['weights_sha256'][:12]}…: pass it with --model PATH.npz") from None
    hop, rate, bits = codec.config.hop, codec.config.sample_rate, codec.config.bits_per_code
    context = meta["context_frames"]
    styles = [c.get("style_index") for c in reader.header["channels"]]
    dur = header.record_duration
    unpacked: dict = {}

    def tokens_of(b, i):
        if (b, i) not in unpacked:
            s = streams.get(b, {}).get((i, NEURAL_TOKENS))
            unpacked[(b, i)] = unpack_tokens(s.data, bits, meta["n_codebooks"], codec.token_counts) \
                if s is not None and not s.flags else None
        return unpacked[(b, i)]

    out = {}
    with Progress(len(targets), "decompress", quiet) as bar:
        for b in targets:
            entry = reader.blocks[b]
            first_frame = int(round(entry.first_record * dur * rate / hop))
            jobs = []
            for i, s in enumerate(header.signals):
                own = tokens_of(b, i)
                if own is None:
                    continue
                left, right = tokens_of(b - 1, i), tokens_of(b + 1, i)
                codes, n_left = with_context(own[0], left[0] if left else None, right[0] if right else None,
                                             context)
                jobs.append((i, codes, n_left, own[1], own[2]))
            waves = codec.decode_block([(codes, n_left, styles[i] or 0) for i, codes, n_left, _, _ in jobs])
            for (i, _, n_left, offset, scale), wave in zip(jobs, waves):
                s = header.signals[i]
                spr = s.samples_per_record
                phys = to_channel_samples(wave, n_left, offset, scale, first_frame, s,
                                          entry.first_record * spr, entry.record_count * spr, rate, hop)
                out[(b, i)] = s.to_digital(phys)
            bar.update(1)
    return out


def decompress(in_path, out_path=None, start: float | None = None, end: float | None = None,
               device: str = "auto", model: str | None = None, force: bool = False, quiet: bool = True) -> dict:
    in_path = Path(in_path)
    with ContainerReader(in_path) as reader:
        meta = reader.header
        kind = meta.get("edf", {}).get("kind", "EDF")
        out_path = Path(out_path) if out_path else default_output(in_path, ".bdf" if kind == "BDF" else ".edf")
        if out_path.exists() and not force:
            raise OutputExistsError(f"{out_path} exists; use --force to overwrite it")
        first, stop = _record_range(meta, start, end)
        decoded = decode_records(reader, first, stop, device, model, quiet)
        full = (first, stop) == (0, meta["edf"]["records"])
        header_raw = reader.edf_header
        trailer = reader.trailer if full else b""
    if not full:
        header_raw = with_record_count(header_raw, decoded.n_records)
    body = records_to_bytes(decoded.header, decoded.digital, decoded.n_records)
    if full and meta["mode"] == "lossless":
        digest = hashlib.sha256(header_raw + body + trailer).hexdigest()
        if digest != meta["source"]["sha256"]:
            raise FormatError(f"{in_path.name}: the decoded EDF does not match the original's SHA-256")
    write_atomically(out_path, [header_raw, body, trailer], force)
    return {"output": str(out_path), "records": decoded.n_records, "first_record": first,
            "bytes": len(header_raw) + len(body) + len(trailer), "mode": meta["mode"]}


def read_signals(in_path, start: float | None = None, end: float | None = None, device: str = "auto",
                 model: str | None = None) -> dict:
    """Physical signals of a time range as numpy arrays, keyed by label (the Python API's reader)."""
    with ContainerReader(Path(in_path)) as reader:
        first, stop = _record_range(reader.header, start, end)
        decoded = decode_records(reader, first, stop, device, model)
    return {s.label: s.to_physical(d) for s, d in zip(decoded.header.signals, decoded.digital)
            if not s.is_annotation}


def info(in_path) -> dict:
    in_path = Path(in_path)
    with ContainerReader(in_path) as reader:
        meta = reader.header
        sizes = _stream_sizes(reader)
    edf = meta["edf"]
    duration = edf["records"] * edf["record_duration"]
    neural = [c for c in meta["channels"] if c["role"] == NEURAL]
    file_bytes = in_path.stat().st_size
    bps = None
    if meta.get("codec") and neural and duration > 0:
        bps = 8 * sizes["neural"] / duration / len(neural)
    return {
        "file": str(in_path), "format_version": meta["format_version"], "mode": meta["mode"],
        "source": meta["source"]["name"], "source_bytes": meta["source"]["bytes"], "bytes": file_bytes,
        "compression_ratio": meta["source"]["bytes"] / file_bytes,
        "data_compression_ratio": edf["data_bytes"] / max(file_bytes - edf["header_bytes"], 1),
        "duration_s": duration, "records": edf["records"], "record_duration_s": edf["record_duration"],
        "kind": edf["kind"], "n_channels": len(meta["channels"]),
        "channels": [{k: c[k] for k in ("label", "sample_rate", "physical_dimension", "role", "max_error_lsb",
                                        "style_index")} for c in meta["channels"]],
        "codec": meta.get("codec"), "codebooks": (meta.get("codec") or {}).get("n_codebooks"),
        "model": (meta.get("codec") or {}).get("model"), "bits_per_second_per_channel": bps,
        "blocks": len(reader.blocks), "stream_bytes": sizes,
    }


def _stream_sizes(reader: ContainerReader) -> dict:
    """Bytes per stream kind, each with its share of the block's stream table."""
    import struct
    names = {ANNOTATION_BYTES: "annotations", LOSSLESS: "exact", RECORD_BYTES: "exact", NEAR_LOSSLESS: "exact",
             NEURAL_TOKENS: "neural"}
    sizes = {"annotations": 0, "exact": 0, "neural": 0, "aux_tokens": 0}
    for b in reader.blocks:
        reader.f.seek(b.offset)
        head = reader.f.read(4)
        if len(head) < 4:
            raise FormatError(f"{reader.path.name} is truncated")
        (n,) = struct.unpack("<I", head)
        table = reader.f.read(n * STREAM_ENTRY.size)
        for j in range(n):
            _, kind, flags, length = STREAM_ENTRY.unpack_from(table, j * STREAM_ENTRY.size)
            name = "aux_tokens" if (kind == NEURAL_TOKENS and flags & AUX_TOKENS) else names.get(kind, "exact")
            sizes[name] += length + STREAM_ENTRY.size
    return sizes


def verify(eegz_path, edf_path, device: str = "auto", model: str | None = None) -> dict:
    """Decode the file and check every sample against the original EDF: exact or within the bound."""
    from .errors import VerifyError
    raw = _read_bytes(Path(edf_path))
    original = parse_recording(raw, str(edf_path))
    with ContainerReader(Path(eegz_path)) as reader:
        meta = reader.header
        if _sha256(raw) != meta["source"]["sha256"]:
            raise VerifyError(f"{edf_path} is not the file that {Path(eegz_path).name} was made from")
        decoded = decode_records(reader, 0, meta["edf"]["records"], device, model)
    report = []
    for c, orig, dec in zip(meta["channels"], original.digital, decoded.digital):
        err = int(np.max(np.abs(orig.astype(np.int64) - dec))) if len(orig) else 0
        bound = c["max_error_lsb"] if c["role"] != NEURAL else None
        ok = bound is None or err <= bound
        report.append({"label": c["label"], "max_error_lsb": err, "bound_lsb": bound, "ok": ok})
    bad = [r for r in report if not r["ok"]]
    if bad:
        raise VerifyError(f"{len(bad)} channel(s) exceed their error bound, first {bad[0]['label']!r}: "
                          f"{bad[0]['max_error_lsb']} > {bad[0]['bound_lsb']} steps")
    return {"ok": True, "mode": meta["mode"], "channels": report}
