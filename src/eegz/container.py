"""The .eegz container (normative description: spec/eegz-format.md). Writes format 3, reads 1, 2 and 3.

Format 3, written front to back with no seek, so that a writer streams blocks as they are coded and a
pipe can carry the file:

    preamble (16 B) | HEAD section | EDFH section | BLCK section ... | SUMM section | TRLR section |
    INDX section | footer (32 B)

A section is a 4-byte tag, u64 n, n bytes of content and u64 xxh64(tag, n, content): every byte of the
file is covered by a checksum or checked against another field, so any change to any byte is refused.
What only the whole input tells (its SHA-256, the record count) goes in the SUMM section at the end. The
footer points at the index and the summary, so a reader seeks to the end, then reads only the blocks a
time range needs.

Formats 1 and 2 (read only): preamble | header | EDF header | trailer | payloads | index | footer, with
untagged sections (u64 n, content, u64 xxh64(content)) and the whole-file facts in the header.
Readers present every version in one shape (`Container.meta`: the version 1 header layout).
"""
from __future__ import annotations

import errno
import json
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import xxhash
import zstandard

from .errors import EegzError, FormatError, OutputError, OutputExistsError

MAGIC = b"\x89EEGZ\r\n\x1a"
FOOTER_MAGIC = b"EEGZEND\x00"
TOKEN_FORMAT_VERSION = 24  # what this code writes when a file holds token streams (4 added the band envelope,
# 5 moved it to the channel rate, 6 continued its first part's noise filling below 30 Hz, 7 added transform
# streams and the stream's scale to the noise seed, 8 added rotation streams, 9 the envelope's time profile,
# 10 the transform streams' constant runs and slope patches, 11 their stationary tones and rail limiter, 12 the
# token streams' stationary tones, 13 their envelope in 8.2's bands, with 0.5-Hz parts and noise in the mains bands,
# 14 their constant runs, 15 their rail limiter, 16 their 30-70 Hz time profile, 17 their envelope's 0.25-Hz parts,
# 18 their envelope's band edge at 70 Hz, their slow-band ceiling and their runs' edges, 20 their envelope's scaling
# above 64 Hz carried into the block's ends through its decoded context, 21 their time profile from 70 Hz up, 22 their
# envelope's skirt below 30 Hz filled only up to a floor, 23 the high band's bursts capped within its profile's parts,
# 24 its shaping repeated in rounds)
TRANSFORM_FORMAT_VERSION = 19  # transform files (they hold no token streams): 19 gave their envelope format 18's bands
# and their runs format 18's edges (token streams are unchanged in 19, so token files stayed 18 until 20; transform
# streams are unchanged in 20 to 24, so transform files stay 19)
FORMAT_VERSION = 24  # the newest version this code reads and writes
EXACT_FORMAT_VERSION = 3  # files with neither are unchanged since format 3: eegz 0.2 reads them
READABLE_VERSIONS = tuple(range(1, FORMAT_VERSION + 1))


def format_version(mode: str, tokens: bool) -> int:
    """The version a new file is written as: the oldest whose layout holds what it holds (tokens: whether it
    holds token streams; a transform file holds none)."""
    if tokens:
        return TOKEN_FORMAT_VERSION
    return TRANSFORM_FORMAT_VERSION if mode == "transform" else EXACT_FORMAT_VERSION


PREAMBLE = struct.Struct("<8sHHI")  # magic, version, flags, reserved
FOOTER = struct.Struct("<QQQ8s")  # v3: index offset, index section length, summary offset, magic
INDEX_ENTRY = struct.Struct("<QIIIQIQ")  # offset, length, first_record, record_count, first_sample, sample_count, xxh64
BLOCK_HEAD = struct.Struct("<IIIQI")  # v3 block section: index, first_record, record_count, first_sample, sample_count
STREAM_ENTRY = struct.Struct("<HBBI")  # signal index, kind, flags, byte length
SECTION_HEAD = struct.Struct("<4sQ")
CHECKSUM = struct.Struct("<Q")
MAX_JSON_BYTES = 64 << 20  # a header or summary larger than this is not one eegz wrote

# Stream kinds inside a block (spec section 4).
ANNOTATION_BYTES, LOSSLESS, NEAR_LOSSLESS, NEURAL_TOKENS, RECORD_BYTES, TRANSFORM, ROTATION = range(7)
MODES = ("lossy", "lossless", "near-lossless", "transform")
ALL_SIGNALS = 0xFFFF  # the signal index of a RECORD_BYTES stream
AUX_TOKENS = 1  # stream flag: neural tokens carried beside an exact stream (--with-tokens)


def checksum(*parts: bytes) -> int:
    h = xxhash.xxh64()
    for p in parts:
        h.update(p)
    return h.intdigest()


@dataclass
class BlockEntry:
    offset: int
    length: int
    first_record: int
    record_count: int
    first_sample: int
    sample_count: int
    checksum: int


@dataclass
class Stream:
    signal: int
    kind: int
    data: bytes
    flags: int = 0


def pack_block(streams: list[Stream]) -> bytes:
    table = b"".join(STREAM_ENTRY.pack(s.signal, s.kind, s.flags, len(s.data)) for s in streams)
    return struct.pack("<I", len(streams)) + table + b"".join(s.data for s in streams)


def unpack_block(payload: bytes, what: str = "block") -> list[Stream]:
    """The streams of a block payload; the table must describe the payload exactly."""
    if len(payload) < 4:
        raise FormatError(f"damaged {what} (no stream table)")
    (n,) = struct.unpack_from("<I", payload, 0)
    pos = 4 + n * STREAM_ENTRY.size
    if pos > len(payload):
        raise FormatError(f"damaged {what} (stream table longer than the block)")
    streams = []
    for j in range(n):
        signal, kind, flags, length = STREAM_ENTRY.unpack_from(payload, 4 + j * STREAM_ENTRY.size)
        if pos + length > len(payload):
            raise FormatError(f"damaged {what} (a stream runs past the block end)")
        streams.append(Stream(signal, kind, payload[pos:pos + length], flags))
        pos += length
    if pos != len(payload):
        raise FormatError(f"damaged {what} (bytes after its last stream)")
    return streams


def stream_sizes(blocks) -> dict:
    """Bytes by what they hold, over the stream lists of blocks."""
    sizes = {"annotations": 0, "exact": 0, "neural": 0, "aux_tokens": 0, "transform": 0}
    for streams in blocks:
        add_stream_sizes(sizes, streams)
    return sizes


def add_stream_sizes(sizes: dict, streams) -> None:
    """Add one block's stream bytes to `sizes` (as stream_sizes makes it): for writers and readers that see
    the blocks one at a time."""
    names = {ANNOTATION_BYTES: "annotations", NEURAL_TOKENS: "neural", TRANSFORM: "transform", ROTATION: "transform"}
    for s in streams:
        name = "aux_tokens" if (s.kind == NEURAL_TOKENS and s.flags & AUX_TOKENS) else names.get(s.kind, "exact")
        sizes[name] += len(s.data)


_LOCAL = threading.local()


def zstd(data: bytes, level: int = 19) -> bytes:
    """One zstd frame of data. Compressors are kept per thread and level: a compressor may not be shared
    between threads, and building one (MBs of tables at level 19) costs more than compressing a block."""
    cache = _LOCAL.__dict__.setdefault("compressors", {})
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level)
    return cache[level].compress(data)


def unzstd(data: bytes, limit: int, what: str) -> bytes:
    """One zstd frame's content, refused (FormatError) when it is not valid zstd or would exceed `limit`
    bytes; memory is bounded by `limit` whatever the frame's header claims."""
    try:
        size = zstandard.frame_content_size(data)
        if size > limit:
            raise FormatError(f"damaged {what} (zstd frame claims {size} bytes)")
        if size >= 0:
            return zstandard.ZstdDecompressor().decompress(data)
        out = bytearray()  # no size in the frame header: read it in pieces, never past the limit
        with zstandard.ZstdDecompressor().stream_reader(data) as reader:
            while chunk := reader.read(1 << 16):
                out += chunk
                if len(out) > limit:
                    raise FormatError(f"damaged {what} (zstd frame larger than {limit} bytes)")
        return bytes(out)
    except zstandard.ZstdError:
        raise FormatError(f"damaged {what} (not valid zstd data)") from None


# ---------------------------------------------------------------- writing

def section(tag: bytes, content: bytes) -> bytes:
    head = SECTION_HEAD.pack(tag, len(content))
    return head + content + CHECKSUM.pack(checksum(head, content))


class ContainerWriter:
    """Writes format 3 to a binary file object, front to back (it never seeks).

    open with the header and the EDF header bytes, add blocks in time order, then finish with the
    summary and the trailer. The preamble's version is the header's format_version."""

    def __init__(self, out, header: dict, edf_header: bytes):
        self.out = out
        self.pos = 0
        self.blocks: list[BlockEntry] = []
        self.next_record = 0
        self._write(PREAMBLE.pack(MAGIC, header["format_version"], 0, 0))
        self._write(section(b"HEAD", zstd(json.dumps(header, sort_keys=True).encode("utf-8"))))
        self._write(section(b"EDFH", zstd(edf_header)))

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.pos += len(data)

    def add_block(self, payload: bytes, first_record: int, record_count: int, samples_per_record: int) -> None:
        if first_record != self.next_record or record_count < 1:
            raise ValueError("blocks must cover the records in order")
        head = BLOCK_HEAD.pack(len(self.blocks), first_record, record_count, first_record * samples_per_record,
                               record_count * samples_per_record)
        data = section(b"BLCK", head + payload)
        self.blocks.append(BlockEntry(self.pos, len(data), first_record, record_count,
                                      first_record * samples_per_record, record_count * samples_per_record,
                                      checksum(data)))
        self.next_record += record_count
        self._write(data)

    def finish(self, summary: dict, trailer: bytes, identity: bytes | None = None) -> int:
        """Write summary, trailer, the encrypted identity (if any), index and footer; returns the file size."""
        summary_offset = self.pos
        self._write(section(b"SUMM", zstd(json.dumps({**summary, "blocks": len(self.blocks)},
                                                      sort_keys=True).encode("utf-8"))))
        self._write(section(b"TRLR", zstd(trailer)))
        if identity is not None:
            self._write(section(b"IDNT", identity))
        index = b"".join(INDEX_ENTRY.pack(b.offset, b.length, b.first_record, b.record_count, b.first_sample,
                                          b.sample_count, b.checksum) for b in self.blocks)
        index_offset = self.pos
        data = section(b"INDX", index)
        self._write(data)
        self._write(FOOTER.pack(index_offset, len(data), summary_offset, FOOTER_MAGIC))
        return self.pos


# ---------------------------------------------------------------- reading

class Container:
    """Random access to a .eegz file of any readable version: meta, EDF header, trailer, checked blocks.

    Everything outside the block payloads is read and validated on opening; a block is checked when it
    is read. No allocation is larger than the file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.name = self.path.name
        try:
            self.f = open(self.path, "rb")
        except OSError as e:  # a missing or unreadable file is bad input (2), not a damaged one (3)
            raise EegzError(f"cannot read {path}: {e.strerror}") from None
        if not self.path.is_file():
            self.f.close()
            raise EegzError(f"cannot read {path}: not a regular file")
        try:
            self.size = os.fstat(self.f.fileno()).st_size
            self._open()
        except BaseException:
            self.f.close()
            raise

    def _fail(self, why: str) -> FormatError:
        return FormatError(f"{self.name} {why}")

    def _read_at(self, offset: int, length: int, what: str) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise self._fail(f"is truncated or damaged ({what} outside the file)")
        self.f.seek(offset)
        data = self.f.read(length)
        if len(data) != length:
            raise self._fail(f"is truncated ({what})")
        return data

    def _open(self) -> None:
        if self.size < PREAMBLE.size:
            raise self._fail("is not an .eegz file (too short)")
        magic, version, flags, reserved = PREAMBLE.unpack(self._read_at(0, PREAMBLE.size, "preamble"))
        if magic != MAGIC:
            raise self._fail("is not an .eegz file (bad magic bytes)")
        if version not in READABLE_VERSIONS:
            raise self._fail(f"uses .eegz format version {version}; this eegz reads versions "
                             f"{', '.join(map(str, READABLE_VERSIONS))} (upgrade eegz to read it)")
        if flags or reserved:
            raise self._fail("is damaged (nonzero reserved preamble fields)")
        if self.size < PREAMBLE.size + FOOTER.size:
            raise self._fail("is truncated (no footer)")
        self.version = version
        if version >= 3:
            self._open_v3()
        else:
            self._open_v1()
        _validate_meta(self.meta, self._fail)
        self._check_blocks()

    # -- format 3

    def _section(self, offset: int, tag: bytes, what: str) -> tuple[bytes, int]:
        """(content, offset after the section) of the section at offset, checked."""
        head = self._read_at(offset, SECTION_HEAD.size, what)
        found, length = SECTION_HEAD.unpack(head)
        if found != tag:
            raise self._fail(f"is damaged (no {what} section where one belongs)")
        content = self._read_at(offset + SECTION_HEAD.size, length, what)
        (stored,) = CHECKSUM.unpack(self._read_at(offset + SECTION_HEAD.size + length, CHECKSUM.size, what))
        if stored != checksum(head, content):
            raise self._fail(f": checksum mismatch in the {what} section (the file is damaged)")
        return content, offset + SECTION_HEAD.size + length + CHECKSUM.size

    def _open_v3(self) -> None:
        index_offset, index_length, summary_offset, end_magic = FOOTER.unpack(
            self._read_at(self.size - FOOTER.size, FOOTER.size, "footer"))
        if end_magic != FOOTER_MAGIC:
            raise self._fail("is truncated or damaged (footer not found)")
        if index_offset + index_length != self.size - FOOTER.size or not PREAMBLE.size < summary_offset < index_offset:
            raise self._fail("is damaged (footer offsets do not fit the file)")
        header, pos = self._section(PREAMBLE.size, b"HEAD", "header")
        header = self._json(header, "header")
        self.edf_header, self.blocks_start = self._section(pos, b"EDFH", "EDF header")
        self.edf_header = self._unzstd(self.edf_header, "EDF header")
        summary, pos = self._section(summary_offset, b"SUMM", "summary")
        summary = self._json(summary, "summary")
        trailer, trailer_end = self._section(pos, b"TRLR", "trailer")
        self.trailer = self._unzstd(trailer, "trailer")
        self.identity = None
        if trailer_end != index_offset:  # the optional encrypted identity sits between trailer and index
            self.identity, identity_end = self._section(trailer_end, b"IDNT", "encrypted identity")
            if identity_end != index_offset:
                raise self._fail("is damaged (sections do not follow each other)")
        index, pos = self._section(index_offset, b"INDX", "block index")
        if pos != self.size - FOOTER.size:
            raise self._fail("is damaged (index length)")
        self.blocks_end = summary_offset
        self.blocks = self._entries(index)
        for obj, key in ((header, "edf"), (header, "source"), (header, "blocks"), (summary, "source")):
            if not isinstance(obj.get(key), dict):
                raise self._fail(f"is damaged (bad header field: {key})")
        self.meta = _merge_v3(header, summary)
        self.head, self.summary = header, summary  # as stored (a recode copies them)
        if (self.identity is not None) != (self.meta.get("identity") == "encrypted"):
            raise self._fail("is damaged (the encrypted identity and the header disagree)")

    # -- formats 1 and 2

    def _untagged(self, offset: int, what: str) -> tuple[bytes, int]:
        (length,) = struct.unpack("<Q", self._read_at(offset, 8, what))
        content = self._read_at(offset + 8, length, what)
        (stored,) = CHECKSUM.unpack(self._read_at(offset + 8 + length, 8, what))
        if stored != checksum(content):
            raise self._fail(f": checksum mismatch in the {what} section (file is damaged)")
        return content, offset + 16 + length

    def _open_v1(self) -> None:
        index_offset, index_length, header_offset, end_magic = FOOTER.unpack(
            self._read_at(self.size - FOOTER.size, FOOTER.size, "footer"))
        if end_magic != FOOTER_MAGIC:
            raise self._fail("is truncated or damaged (footer not found)")
        if header_offset != PREAMBLE.size or index_offset + index_length != self.size - FOOTER.size:
            raise self._fail("is damaged (footer offsets do not fit the file)")
        header, pos = self._untagged(PREAMBLE.size, "header")
        header = self._json(self._unzstd(header, "header"), "header")
        edf_header, pos = self._untagged(pos, "EDF header")
        self.edf_header = self._unzstd(edf_header, "EDF header")
        trailer, self.blocks_start = self._untagged(pos, "trailer")
        self.trailer = self._unzstd(trailer, "trailer")
        index, pos = self._untagged(index_offset, "block index")
        if pos != self.size - FOOTER.size:
            raise self._fail("is damaged (index length)")
        self.blocks_end = index_offset
        self.blocks = self._entries(index)
        if header.get("format_version") != self.version:
            raise self._fail("is damaged (header and preamble disagree on the version)")
        self.meta = header
        self.identity = None

    # -- shared

    def _unzstd(self, data: bytes, what: str) -> bytes:
        try:  # header sections compress a few dozen times at most: a larger claim is a forged frame
            return unzstd(data, min(MAX_JSON_BYTES, max(1 << 20, 1000 * len(data))), f"{what} section")
        except FormatError as e:
            raise self._fail(f": {e}") from None

    def _json(self, data: bytes, what: str) -> dict:
        if self.version >= 3:
            data = self._unzstd(data, what)
        try:
            value = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise self._fail(f": the JSON {what} is not valid") from None
        if not isinstance(value, dict):
            raise self._fail(f": the JSON {what} is not an object")
        return value

    def _entries(self, index: bytes) -> list[BlockEntry]:
        if len(index) % INDEX_ENTRY.size:
            raise self._fail(": block index has a partial entry")
        return [BlockEntry(*INDEX_ENTRY.unpack_from(index, i)) for i in range(0, len(index), INDEX_ENTRY.size)]

    def _check_blocks(self) -> None:
        """The index must tile the block area in order and partition the records, with the record-based
        fields every version defines."""
        meta = self.meta
        spr = max((c["samples_per_record"] for c in meta["channels"]), default=0)
        if len(self.blocks) != meta["blocks"]["count"]:
            raise self._fail("is damaged (block count differs from the index)")
        pos, record = self.blocks_start, 0
        for k, b in enumerate(self.blocks):
            if (b.offset != pos or b.length < 1 or b.first_record != record or b.record_count < 1
                    or b.first_sample != b.first_record * spr or b.sample_count != b.record_count * spr):
                raise self._fail(f"is damaged (index entry of block {k} does not fit)")
            pos += b.length
            record += b.record_count
        if pos != self.blocks_end or record != meta["edf"]["records"]:
            raise self._fail("is damaged (the blocks do not cover the recording)")

    def read_block(self, k: int) -> list[Stream]:
        b = self.blocks[k]
        data = self._read_at(b.offset, b.length, f"block {k}")
        where = f"block {k} (records {b.first_record}-{b.first_record + b.record_count - 1})"
        if checksum(data) != b.checksum:
            raise self._fail(f": checksum mismatch in {where}; the file is damaged")
        if self.version < 3:
            return unpack_block(data, where)
        head = SECTION_HEAD.size
        tag, length = SECTION_HEAD.unpack_from(data, 0)
        if tag != b"BLCK" or length != len(data) - head - CHECKSUM.size or length < BLOCK_HEAD.size:
            raise self._fail(f"is damaged ({where} framing)")
        if CHECKSUM.unpack_from(data, len(data) - CHECKSUM.size)[0] != checksum(data[:-CHECKSUM.size]):
            raise self._fail(f": checksum mismatch in {where}; the file is damaged")
        fields = BLOCK_HEAD.unpack_from(data, head)
        if fields != (k, b.first_record, b.record_count, b.first_sample, b.sample_count):
            raise self._fail(f"is damaged ({where} disagrees with the index)")
        return unpack_block(data[head + BLOCK_HEAD.size:-CHECKSUM.size], where)

    def blocks_for_records(self, first: int, stop: int) -> list[int]:
        """Indices of the blocks that hold any record in [first, stop)."""
        return [k for k, b in enumerate(self.blocks) if b.first_record < stop and b.first_record + b.record_count > first]

    def close(self) -> None:
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _merge_v3(header: dict, summary: dict) -> dict:
    """A format 3 header and summary in the version 1 header's shape, the one shape the code reads."""
    meta = dict(header)
    edf = dict(header["edf"])
    for key in ("records", "data_bytes", "trailing_bytes"):
        edf[key] = summary.get(key)
    meta["edf"] = edf
    meta["source"] = {**header["source"], **summary["source"]}
    meta["blocks"] = {**header["blocks"], "count": summary.get("blocks")}
    return meta


def is_model_name(name) -> bool:
    """A header's model name is a name, never a path (spec 2.1): a file must not point a reader at a file of its
    choosing. No path separator or NUL, no leading dot, not ending in .npz, at most 255 characters."""
    return (isinstance(name, str) and 0 < len(name) <= 255 and not name.startswith(".")
            and not any(c in name for c in "/\\\0") and not name.lower().endswith(".npz"))


def _validate_meta(meta: dict, fail) -> None:
    """Every field the decoder uses, checked for type and range before it is trusted."""
    def need(cond, what):
        if not cond:
            raise fail(f"is damaged (bad header field: {what})")

    def is_int(v, lo=-(1 << 62), hi=1 << 62):
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

    def is_num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) < 1e300

    need(meta.get("format") == "eegz", "format")
    need(meta.get("mode") in MODES, "mode")
    edf = meta.get("edf")
    need(isinstance(edf, dict), "edf")
    need(edf.get("kind") in ("EDF", "BDF") and edf.get("sample_width") == (3 if edf.get("kind") == "BDF" else 2), "edf.kind")
    need(is_int(edf.get("records"), 0, 1 << 31), "edf.records")
    need(is_num(edf.get("record_duration")) and edf["record_duration"] >= 0, "edf.record_duration")
    for key in ("data_bytes", "trailing_bytes", "header_bytes"):
        need(is_int(edf.get(key), 0), f"edf.{key}")
    source = meta.get("source")
    need(isinstance(source, dict) and isinstance(source.get("sha256"), str) and is_int(source.get("bytes"), 0), "source")
    channels = meta.get("channels")
    need(isinstance(channels, list) and len(channels) <= 65535, "channels")
    width = edf["sample_width"]
    lo, hi = -(1 << (8 * width - 1)), (1 << (8 * width - 1)) - 1
    for i, c in enumerate(channels):
        need(isinstance(c, dict), f"channels[{i}]")
        need(c.get("index") == i and isinstance(c.get("label"), str), f"channels[{i}].index")
        need(c.get("role") in ("neural", "exact", "annotation"), f"channels[{i}].role")
        need(is_int(c.get("samples_per_record"), 0, 1 << 24), f"channels[{i}].samples_per_record")
        need(is_int(c.get("digital_min"), lo, hi) and is_int(c.get("digital_max"), lo, hi), f"channels[{i}].digital range")
        for key in ("physical_min", "physical_max", "sample_rate"):
            need(is_num(c.get(key)), f"channels[{i}].{key}")
        need(is_int(c.get("max_error_lsb"), 0, hi - lo), f"channels[{i}].max_error_lsb")
        need(c.get("style_index") is None or is_int(c.get("style_index"), 0, 1 << 16), f"channels[{i}].style_index")
        for key in ("transducer", "physical_dimension", "prefilter"):
            need(isinstance(c.get(key, ""), str), f"channels[{i}].{key}")
    record_bytes = width * sum(c["samples_per_record"] for c in channels)
    need(edf["data_bytes"] == edf["records"] * record_bytes, "edf.data_bytes")
    need(edf["header_bytes"] == 256 * (len(channels) + 1), "edf.header_bytes")
    need(source["bytes"] == edf["header_bytes"] + edf["data_bytes"] + edf["trailing_bytes"], "source.bytes")
    blocks = meta.get("blocks")
    need(isinstance(blocks, dict) and is_int(blocks.get("count"), 0, 1 << 31), "blocks")
    codec = meta.get("codec")
    if codec is not None:
        need(isinstance(codec, dict) and is_model_name(codec.get("model"))
             and isinstance(codec.get("weights_sha256"), str) and isinstance(codec.get("config"), dict), "codec")
        need(is_int(codec.get("n_codebooks"), 1, 64) and is_int(codec.get("context_frames"), 0, 1 << 16), "codec")
    need(codec is not None or meta["mode"] == "transform" or all(c["role"] != "neural" for c in channels),
         "codec missing for neural channels")
    if meta["mode"] == "transform":
        transform = meta.get("transform")
        need(isinstance(transform, dict) and (is_num(transform.get("bitrate")) or is_num(transform.get("quality"))),
             "transform")
    need(meta.get("identity", "clear") in ("clear", "anonymized", "encrypted"), "identity")
    need(meta.get("annotation_text", "kept") in ("kept", "dropped"), "annotation_text")


# ---------------------------------------------------------------- output files

TEMP_SUFFIX = ".eegz-partial"  # temporary outputs: .NAME.PID.eegz-partial beside the target
# what a write can meet that is no bug: a full disk, a quota, a file-size limit, storage that turned read-only (an
# OSError of the input's reading keeps its own report)
WRITE_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


class AtomicFile:
    """An output written through a temporary file beside its target and renamed into place on success, so
    that the target never holds a partial file. The checks come before any work: the folder exists and is
    writable, the target is not one of the inputs (even with force), and it exists only with force.
    Temporary files of runs that died (kill -9) are removed by the next run for the same target."""

    def __init__(self, path: Path, force: bool = False, inputs: tuple = ()):
        self.path = Path(path)
        folder = self.path.parent
        if not folder.is_dir():
            raise EegzError(f"the output folder {folder} does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise EegzError(f"the output folder {folder} is not writable")
        if self.path.is_dir():
            raise EegzError(f"{self.path} is a folder")
        for source in inputs:
            if source is not None and self.path.exists() and Path(source).exists() and os.path.samefile(self.path, source):
                raise EegzError(f"refusing to write the output over the input {source}")
        if self.path.exists() and not force:
            raise OutputExistsError(f"{self.path} exists; use --force to overwrite it")
        self.f = None
        self.tmp = folder / f".{self.path.name}.{os.getpid()}{TEMP_SUFFIX}"

    def __enter__(self):
        _remove_stale_temporaries(self.path)
        _LIVE.add(self.tmp)  # before the file exists: a SIGTERM right after its creation must remove it too
        # os.open's mode goes through the umask: outputs get the permissions the user's umask gives
        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        except OSError as e:
            _LIVE.discard(self.tmp)
            raise OutputError(f"cannot create a file in {self.path.parent}: {e.strerror}") from None
        self.f = os.fdopen(fd, "wb", buffering=1 << 20)
        self.sink = _Counting(self.f)
        return self.sink

    def __exit__(self, exc_type, exc, traceback):
        try:
            if exc_type is None:
                self.f.flush()
                os.fsync(self.f.fileno())
                self.f.close()
                os.replace(self.tmp, self.path)
                _sync_folder(self.path.parent)
        except OSError as e:
            exc = e
        finally:
            try:
                self.f.close()  # a buffer that cannot be flushed (the disk is full) raises again here
            except OSError:
                pass
            self.tmp.unlink(missing_ok=True)
            _LIVE.discard(self.tmp)
        _reraise(exc, exc_type, f"{self.path}", " (nothing was left there)")


def _reraise(exc, exc_type, target: str, after: str = "") -> None:
    """At an output's close: a write failure (WRITE_FAILURES) of the body or of the close as an OutputError, and
    the close's other errors as they are (the body's own exception goes on by itself)."""
    if isinstance(exc, OSError) and exc.errno in WRITE_FAILURES:
        raise OutputError(f"cannot write {target}: {exc.strerror}{after}") from None
    if exc is not None and exc_type is None:
        raise exc


class _Counting:
    """A write-only binary stream that counts what goes through it (it never seeks)."""

    def __init__(self, f):
        self.f, self.bytes_written = f, 0

    def write(self, data) -> int:
        self.f.write(data)
        self.bytes_written += len(data)
        return len(data)

    def flush(self) -> None:
        self.f.flush()


STDIO = "-"  # a path of "-": standard input or output


def is_stdio(path) -> bool:
    return str(path) == STDIO


class _StandardOutput:
    """Standard output as an output: written as it comes (a reader downstream must check eegz's exit
    status, since a failure cannot take back what was written)."""

    def __enter__(self):
        import sys
        self.sink = _Counting(sys.stdout.buffer)
        return self.sink

    def __exit__(self, exc_type, exc, traceback):
        try:
            self.sink.flush()
        except OSError as e:
            exc = exc or e
        _reraise(exc, exc_type, "to standard output")


def open_output(path, force: bool = False, inputs: tuple = ()):
    """The output of a command: standard output for "-", else an AtomicFile."""
    if is_stdio(path):
        return _StandardOutput()
    return AtomicFile(Path(path), force, inputs=tuple(p for p in inputs if not is_stdio(p)))


class spooled_input:  # noqa: N801 - used like open()
    """A .eegz input as a path: itself, or for "-" standard input copied to a temporary file (a reader
    needs the footer first, so a pipe is read to its end; memory stays constant)."""

    def __init__(self, path):
        self.path, self.tmp = Path(path), None

    def __enter__(self) -> Path:
        if not is_stdio(self.path):
            return self.path
        import shutil
        import sys
        import tempfile
        fd, name = tempfile.mkstemp(prefix=".eegz-stdin-", suffix=".eegz")
        self.tmp = Path(name)
        _LIVE.add(self.tmp)
        try:
            with os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
        except OSError as e:
            if e.errno not in WRITE_FAILURES:
                raise
            self.__exit__()
            raise OutputError(f"cannot copy standard input to {Path(name).parent}: {e.strerror}") from None
        return self.tmp

    def __exit__(self, *exc):
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            _LIVE.discard(self.tmp)


_LIVE: set = set()  # temporary files of this process, removed on SIGTERM too (see remove_temporaries)


def remove_temporaries() -> None:
    """Remove this process's temporary outputs (the CLI calls it on SIGTERM and SIGINT)."""
    for tmp in list(_LIVE):
        Path(tmp).unlink(missing_ok=True)
        _LIVE.discard(tmp)


def _sync_folder(folder: Path) -> None:
    """Make a rename durable: after a power loss the folder holds the new file, not nothing."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def _remove_stale_temporaries(target: Path) -> None:
    for tmp in target.parent.glob(f".{target.name}.*{TEMP_SUFFIX}"):
        pid = tmp.name[len(target.name) + 2:-len(TEMP_SUFFIX)]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
