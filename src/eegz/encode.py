"""The encode pipeline: an EDF/BDF input, block by block, into a .eegz container, in every mode.

Blocks of whole data records are read as they come (EdfReader), coded on a thread pool (the exact layer's
C kernels release the GIL; the neural codec batches its own work), and written in order as soon as they
are done. At most a few blocks are in memory at once, so memory does not grow with the recording.
"""
from __future__ import annotations

import hashlib
import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__, identity
from .channels import ANNOTATION, EXACT, NEURAL, channel_roles, check_exact_labels
from .container import (ALL_SIGNALS, ANNOTATION_BYTES, AUX_TOKENS, LOSSLESS, MODES, NEAR_LOSSLESS, NEURAL_TOKENS,
                        RECORD_BYTES, ROTATION, TRANSFORM, ContainerWriter, Stream, add_stream_sizes, format_version, pack_block,
                        stream_sizes, zstd)
from .dsp import microvolt_factor
from .edf import EdfHeader, EdfReader, split_records
from .errors import EegzError
from .exact import ExactItem, encode_group
from .lossy import BLOCK_SECONDS, MAX_RUN_BLOCKS, Block, TokenEncoder
from .parallel import cpu_budget
from .progress import Progress

MIN_CODEBOOKS, MAX_CODEBOOKS = 3, 9
DEFAULT_BITRATE = 250.0  # mode transform: bits per second per EEG channel, about what 6 codebooks take
MAX_BLOCK_BYTES = 32 << 20  # a block never holds more record bytes than this (many-channel, high-rate files)
FALLBACK_BITS = 10  # lossless: a block above this many bits a sample also tries its record bytes under zstd
ANNOTATION_LEVEL = 9  # zstd level of annotation bytes: level 19 took 1 ms a block for the same few hundred bytes


@dataclass
class EncodeOptions:
    mode: str = "lossy"
    codebooks: int = 6
    max_error_uv: float | None = None
    max_error_lsb: int | None = None
    with_tokens: bool = False
    exact_labels: tuple = ()
    model: str | None = None
    device: str = "auto"
    workers: int = 0  # 0: one per core
    anonymize: bool = False  # replace the EDF header's identification (identity.anonymized)
    drop_annotation_text: bool = False  # replace every EDF+ annotation text by 'X'
    passphrase: bytes | None = None  # keep the original identification, encrypted with this (implies anonymize)
    band_envelope: bool = True  # carry each block's power above beta and restore it on decode (envelope.py)
    quality: float | None = None  # lossy: per block and channel the fewest codebooks (3..9) meeting this (lossy.py)
    bitrate: float | None = None  # transform: bits per second per EEG channel (transform.py)
    rotate_channels: bool = True  # transform: code the principal components of a block's channels (spec 8.1)

    @property
    def stored_codebooks(self) -> int:
        """The most codebooks a token stream holds: --codebooks, or all of them under --quality."""
        return MAX_CODEBOOKS if self.quality is not None else self.codebooks

    def check(self) -> None:
        if self.mode not in MODES:
            raise EegzError(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        if not MIN_CODEBOOKS <= self.codebooks <= MAX_CODEBOOKS:
            raise EegzError(f"--codebooks must be between {MIN_CODEBOOKS} and {MAX_CODEBOOKS}, got {self.codebooks}")
        if self.mode == "near-lossless" and self.max_error_uv is None and self.max_error_lsb is None:
            raise EegzError("near-lossless mode needs --max-error (µV) or --max-error-lsb")
        for bound in (self.max_error_uv, self.max_error_lsb):
            if bound is not None and not (bound >= 0 and math.isfinite(bound)):
                raise EegzError("the error bound must be a finite number, not negative")
        if self.quality is not None and not (0 < self.quality <= 100 and math.isfinite(self.quality)):
            raise EegzError(f"--quality is a block PRDN in percent, above 0 and at most 100, not {self.quality}")
        if self.bitrate is not None:
            if self.mode != "transform":
                raise EegzError("--bitrate applies to --mode transform (lossy mode's rate is --codebooks)")
            if self.quality is not None:
                raise EegzError("--bitrate and --quality exclude each other: pick a rate or a quality")
            if not (1 <= self.bitrate <= 1e6 and math.isfinite(self.bitrate)):
                raise EegzError(f"--bitrate is in bits per second per channel, 1 to 1000000, not {self.bitrate}")
        if self.mode == "transform" and self.with_tokens:
            raise EegzError("--with-tokens applies to the exact modes")
        if self.passphrase is not None and not self.passphrase:
            raise EegzError("the passphrase is empty")

    @property
    def transform_target(self) -> dict:
        """Mode transform's rate control: {"bitrate": B} or {"quality": Q}."""
        if self.quality is not None:
            return {"quality": self.quality}
        return {"bitrate": self.bitrate if self.bitrate is not None else DEFAULT_BITRATE}

    @property
    def transform_header(self) -> dict:
        """The header's `transform` member (spec 2.1): the rate control and whether the envelope is carried."""
        return {**self.transform_target, "band_envelope": self.band_envelope, "rotate_channels": self.rotate_channels}

    @property
    def identity(self) -> str:
        """What the file holds of the patient's identification: clear, anonymized or encrypted."""
        return "encrypted" if self.passphrase else "anonymized" if self.anonymize else "clear"


def sample_range(header: EdfHeader) -> tuple[int, int]:
    bits = 8 * header.sample_width
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def channel_bounds(header: EdfHeader, roles: list[str], options: EncodeOptions) -> list[int]:
    """Per signal, the near-lossless bound K in digital steps (0: exact), at most the sample range."""
    lo, hi = sample_range(header)
    bounds = []
    for s, role in zip(header.signals, roles):
        k = 0
        if options.mode == "near-lossless" and role != ANNOTATION:
            if options.max_error_lsb is not None:
                k = int(options.max_error_lsb)
            elif microvolt_factor(s.physical_dimension) and s.gain:
                k = int(math.floor(options.max_error_uv / abs(s.gain * microvolt_factor(s.physical_dimension)) + 1e-9))
        bounds.append(min(max(k, 0), hi - lo))
    return bounds


def records_per_block(header: EdfHeader, frame_seconds: float | None, n_records: int | None = None) -> int:
    """Whole records of about BLOCK_SECONDS, at most MAX_BLOCK_BYTES; with a codec, block starts fall on
    codec frames (a recording that fits in one block needs no other start than 0: Bonn's one 23.6-s record)."""
    cap = max(1, MAX_BLOCK_BYTES // max(header.record_bytes, 1))
    if header.record_duration <= 0:
        return min(cap, 64)
    base = max(1, min(cap, round(BLOCK_SECONDS / header.record_duration)))
    for r in range(base, 4 * base + 1):
        span = r * header.record_duration / frame_seconds if frame_seconds else 0.0
        if frame_seconds is None or abs(span - round(span)) < 1e-6:
            return r
    if n_records is not None and 0 < n_records <= cap:
        return n_records
    raise EegzError(f"record duration {header.record_duration} s never lines up with the codec's "
                    f"{frame_seconds} s frames: use --mode lossless or near-lossless")


def header_json(source_name: str, header: EdfHeader, roles, bounds, options: EncodeOptions, codec,
                context: int, per_block: int, version: int) -> dict:
    """The container's header: everything known before the first sample is read (spec 2)."""
    lossy = options.mode in ("lossy", "transform")  # EEG channels keep their role: coded, not exact
    channels = []
    for s, role, k in zip(header.signals, roles, bounds):
        channels.append({
            "index": s.index, "label": s.label, "transducer": s.transducer,
            "physical_dimension": s.physical_dimension, "physical_min": s.physical_min,
            "physical_max": s.physical_max, "digital_min": s.digital_min, "digital_max": s.digital_max,
            "prefilter": s.prefilter, "sample_rate": s.sample_rate, "samples_per_record": s.samples_per_record,
            "role": role if (role != NEURAL or lossy) else EXACT,
            "style_index": codec.style_index(s.label) if (codec and role == NEURAL and options.mode == "lossy") else None,
            "max_error_lsb": k,
        })
    codec_meta = None
    if codec:
        codec_meta = {"variant": codec.config.variant, "model": codec.name, "config": codec.config.to_json(),
                      "weights_sha256": codec.sha256, "n_codebooks": options.stored_codebooks, "context_frames": context}
        if options.quality is not None:
            codec_meta["quality"] = options.quality
    transform = options.transform_header if options.mode == "transform" else None
    return {
        "format": "eegz", "format_version": version,
        "writer": f"eegz {__version__}", "mode": options.mode, **({"transform": transform} if transform else {}),
        "source": {"name": source_name if options.identity == "clear" else "anonymized" + Path(source_name).suffix},
        "identity": options.identity, "annotation_text": "dropped" if options.drop_annotation_text else "kept",
        "edf": {"kind": "BDF" if header.is_bdf else "EDF", "reserved": header.reserved,
                "declared_records": header.n_records, "record_duration": header.record_duration,
                "sample_width": header.sample_width, "header_bytes": len(header.raw)},
        "channels": channels, "codec": codec_meta, "with_tokens": bool(options.with_tokens and codec),
        "blocks": {"records_per_block": per_block},
    }


class _Coder:
    """What a block needs besides its samples: roles, bounds, the sample range, which channels may be
    coded by tokens. Thread-safe (one zstd compressor per call)."""

    def __init__(self, header: EdfHeader, roles, bounds, options: EncodeOptions, neural: list[int], version: int):
        self.header, self.roles, self.bounds, self.options = header, roles, bounds, options
        self.version = version  # the file's format version, whose streams it writes
        self.lo, self.hi = sample_range(header)
        self.neural = neural
        self.lossy = options.mode == "lossy"
        self.transform = [i for i, r in enumerate(roles) if r == NEURAL] if options.mode == "transform" else []

    def token_coded(self, block: Block) -> set[int]:
        """The signals of this block that lossy mode codes with tokens (codable neural channels)."""
        if not self.lossy:
            return set()
        return {i for i in self.neural if block.is_codable(i, self.header.signals[i])}

    def exact_streams(self, block: Block, raw: bytes, coded_by_tokens: set[int]) -> list[Stream]:
        """Annotation, exact and transform streams of a block, in signal order (tokens are added later)."""
        by_transform, rotations = self._transform_streams(block)
        exact = [i for i, role in enumerate(self.roles)
                 if role != ANNOTATION and i not in coded_by_tokens and i not in by_transform]
        items = [ExactItem(block.digital[i], self.bounds[i], self.lo, self.hi) for i in exact]
        coded = dict(zip(exact, encode_group(items)))
        if self.options.mode == "lossless" and not self.options.drop_annotation_text:
            fallback = self._record_bytes(raw, coded)
            if fallback is not None:
                return [fallback]
        streams = []
        width = self.header.sample_width
        for i, role in enumerate(self.roles):
            if role == ANNOTATION:
                data = _sample_bytes(block.digital[i], width)
                streams.append(Stream(i, ANNOTATION_BYTES, zstd(data, ANNOTATION_LEVEL)))
            elif i in coded:
                streams.append(Stream(i, NEAR_LOSSLESS if self.bounds[i] else LOSSLESS, coded[i]))
            elif i in by_transform:
                streams.append(Stream(i, TRANSFORM, by_transform[i]))
            if i in rotations:
                streams.append(Stream(i, ROTATION, rotations[i]))
        return streams

    def _transform_streams(self, block: Block) -> tuple[dict, dict]:
        """({signal: transform stream}, {first member: rotation stream}) of the block's codable EEG channels,
        coded together where they share a rate (spec 8.1)."""
        if not self.transform:
            return {}, {}
        from . import transform
        target = self.options.transform_target
        groups: dict[int, list[int]] = {}
        for i in self.transform:
            if block.is_codable(i, self.header.signals[i]):
                groups.setdefault(self.header.signals[i].samples_per_record, []).append(i)
        coded, rotations = {}, {}
        for members in groups.values():
            rotation, streams = transform.encode_group(
                [block.digital[i] for i in members], [self.header.signals[i] for i in members], target.get("bitrate"),
                target.get("quality"), self.options.band_envelope, self.options.rotate_channels, version=self.version)
            coded.update(zip(members, streams))
            if rotation is not None:
                rotations[members[0]] = rotation
        return coded, rotations

    def _record_bytes(self, raw: bytes, coded: dict) -> Stream | None:
        """A block whose samples predict badly (byte-shifted, mangled files) kept as its record bytes under
        zstd when that is smaller: lossless mode should never lose to a general-purpose compressor."""
        n_samples = len(raw) // self.header.sample_width
        size = sum(len(v) for v in coded.values())
        if 8 * size <= FALLBACK_BITS * n_samples:
            return None
        body = zstd(raw)
        return Stream(ALL_SIGNALS, RECORD_BYTES, body) if len(body) < size else None


def _sample_bytes(digital: np.ndarray, width: int) -> bytes:
    from .edf import digital_to_bytes
    return digital_to_bytes(digital, width).tobytes()


def encode(reader: EdfReader, out, source_name: str, options: EncodeOptions, quiet: bool = True) -> tuple[dict, dict, int]:
    """Code the whole input into `out` (a binary file object); returns (the container's header and summary
    merged, bytes by stream kind, blocks)."""
    options.check()
    header = reader.header
    check_exact_labels(header.signals, options.exact_labels, source_name)
    roles = channel_roles(header.signals, options.exact_labels)
    bounds = channel_bounds(header, roles, options)
    neural = [i for i, r in enumerate(roles) if r == NEURAL] if (options.mode == "lossy" or options.with_tokens) else []
    codec = None
    if neural:
        from .neural import NeuralCodec
        codec = NeuralCodec.load(options.model, options.device, quiet=quiet)
    frame_seconds = codec.config.hop / codec.config.sample_rate if codec else None
    per_block = records_per_block(header, frame_seconds, reader.n_records)
    version = format_version(options.mode, codec is not None)  # every stream this file holds is written to it
    tokens = (TokenEncoder(codec, header.signals, neural, options.stored_codebooks, header.record_duration,
                           version, options.band_envelope, options.quality)
              if codec else None)
    context = tokens.context if tokens else 0
    meta = header_json(source_name, header, roles, bounds, options, codec, context, per_block, version)
    stored_header = header.raw if options.identity == "clear" else identity.anonymized(header.raw)
    writer = ContainerWriter(out, meta, stored_header)
    # what a decoder gives back: the input itself, or the input with its identification (and annotation
    # texts) replaced; its SHA-256 is what the summary records
    output_sha = None if stored_header == header.raw and not options.drop_annotation_text else hashlib.sha256(stored_header)
    # with the passphrase a decoder puts the identification back: the SHA-256 it must then find
    restored_sha = hashlib.sha256(header.raw) if options.passphrase and options.drop_annotation_text else None
    coder = _Coder(header, roles, bounds, options, neural, version)
    max_spr = max((s.samples_per_record for s in header.signals), default=0)
    workers = options.workers or cpu_budget()
    pending: deque = deque()  # [block, future of exact streams, token streams or None while awaited]
    by_index: dict[int, list] = {}
    sizes = stream_sizes([])

    def write_ready(limit: int) -> None:
        """Write finished blocks from the front; wait for the front while more than `limit` are pending.
        A block's tokens are always there by then: the token encoder holds back at most a run and one."""
        while pending and (len(pending) > limit or (pending[0][1].done() and pending[0][2] is not None)):
            block, future, streams = pending.popleft()
            by_index.pop(block.index)
            payload = future.result()
            if not (payload and payload[0].kind == RECORD_BYTES):  # a record-bytes block holds nothing else
                payload = sorted(payload + streams, key=_table_order)
            writer.add_block(pack_block(payload), block.first_record, block.record_count, max_spr)
            add_stream_sizes(sizes, payload)
            bar.update(block.record_count)

    def attach(done: list) -> None:
        for index, streams in done:
            entry = by_index[index]
            flags = 0 if options.mode == "lossy" else AUX_TOKENS
            entry[2] = [Stream(i, NEURAL_TOKENS, data, flags) for i, data in sorted(streams.items())]

    total = reader.n_records if reader.n_records is not None else 0
    with Progress(total, "compress", quiet) as bar, ThreadPoolExecutor(workers) as pool:
        index = 0
        while True:
            raw, count = reader.read_records(per_block)
            if count == 0:
                break
            block = Block(index, reader.records_read - count, count, split_records(header, raw, count))
            if options.drop_annotation_text:
                raw = _drop_annotation_text(header, block)
            for digest in (output_sha, restored_sha):
                if digest is not None:
                    digest.update(raw)
            by_token = coder.token_coded(block)
            entry = [block, pool.submit(coder.exact_streams, block, raw, by_token), [] if tokens is None else None]
            pending.append(entry)
            by_index[index] = entry
            if tokens is not None:
                attach(tokens.push(block))
            index += 1
            write_ready(2 * workers + (MAX_RUN_BLOCKS + 1 if tokens else 0))
        if tokens is not None:
            attach(tokens.finish())
        write_ready(0)
    trailing = reader.trailing()
    records = reader.records_read
    original = {"name": source_name, "bytes": reader.bytes_read, "sha256": reader.sha256.hexdigest()}
    for digest in (output_sha, restored_sha):
        if digest is not None:
            digest.update(trailing)
    summary = {"source": {"bytes": reader.bytes_read,
                          "sha256": output_sha.hexdigest() if output_sha is not None else original["sha256"]},
               "records": records, "data_bytes": records * header.record_bytes, "trailing_bytes": len(trailing)}
    box = None
    if options.passphrase:
        secret = {"header_fields": header.raw[identity.IDENTITY].hex(), "source": original,
                  "restored_sha256": (restored_sha or reader.sha256).hexdigest()}
        box = identity.encrypt_identity(secret, options.passphrase, stored_header)
    writer.finish(summary, trailing, box)
    return _merged(meta, summary, len(writer.blocks)), sizes, len(writer.blocks)


def _merged(meta: dict, summary: dict, blocks: int) -> dict:
    """The header and summary in the shape Container.meta gives (the version 1 header's)."""
    edf = {**meta["edf"], **{k: summary[k] for k in ("records", "data_bytes", "trailing_bytes")}}
    return {**meta, "edf": edf, "source": {**meta["source"], **summary["source"]},
            "blocks": {**meta["blocks"], "count": blocks}}


def _drop_annotation_text(header: EdfHeader, block: Block) -> bytes:
    """Replace the texts of the block's annotation signals (in place) and give its records' new bytes."""
    from .edf import bytes_to_digital, digital_to_bytes, records_to_bytes
    width = header.sample_width
    for s in header.signals:
        if s.is_annotation:
            data = digital_to_bytes(block.digital[s.index], width).tobytes()
            data = identity.rewrite_annotations(data, s.samples_per_record * width, drop_text=True)
            block.digital[s.index] = bytes_to_digital(np.frombuffer(data, np.uint8), width)
    return records_to_bytes(header, block.digital, block.record_count)


def _table_order(stream: Stream) -> tuple:
    """Streams in signal order; a signal's primary stream before its auxiliary tokens or rotation."""
    return stream.signal, stream.kind in (NEURAL_TOKENS, ROTATION)
