"""The .eegz container, format version 1 (normative description: spec/eegz-format.md).

    preamble (16 B) | header section | EDF-header section | trailer section | block payloads ... |
    index section | footer (32 B)

A section is u64 length, the bytes, and their xxh64. The footer points at the index, so a writer streams
blocks and writes the index last; a reader seeks to the footer, reads the index and then only the blocks
a time range needs. Everything is little-endian. There is no pickle anywhere: the header is JSON.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import xxhash
import zstandard

from .errors import FormatError, OutputExistsError

MAGIC = b"\x89EEGZ\r\n\x1a"
FOOTER_MAGIC = b"EEGZEND\x00"
READABLE_VERSIONS = (1, 2)  # 2 = 1 + the DAC-MC codec variant; DAC-SC and exact files are still written as 1
FORMAT_VERSION = READABLE_VERSIONS[-1]  # the newest version this code reads and writes
PREAMBLE = struct.Struct("<8sHHI")  # magic, version, flags, reserved
FOOTER = struct.Struct("<QQQ8s")  # index offset, index length, header offset, magic
INDEX_ENTRY = struct.Struct("<QIIIQIQ")  # offset, length, first_record, record_count, first_sample, sample_count, xxh64
STREAM_ENTRY = struct.Struct("<HBBI")  # signal index, kind, flags, byte length

# Stream kinds inside a block (spec section "Streams").
ANNOTATION_BYTES, LOSSLESS, NEAR_LOSSLESS, NEURAL_TOKENS, RECORD_BYTES = range(5)
ALL_SIGNALS = 0xFFFF  # the signal index of a RECORD_BYTES stream


def checksum(data: bytes) -> int:
    return xxhash.xxh64_intdigest(data)


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


def unpack_block(payload: bytes) -> list[Stream]:
    try:
        (n,) = struct.unpack_from("<I", payload, 0)
        pos, entries = 4, []
        for _ in range(n):
            entries.append(STREAM_ENTRY.unpack_from(payload, pos))
            pos += STREAM_ENTRY.size
        streams = []
        for signal, kind, flags, length in entries:
            if pos + length > len(payload):
                raise FormatError("block stream table points past the block end")
            streams.append(Stream(signal, kind, payload[pos:pos + length], flags))
            pos += length
        return streams
    except struct.error:
        raise FormatError("malformed block stream table") from None


def _section(data: bytes) -> bytes:
    return struct.pack("<Q", len(data)) + data + struct.pack("<Q", checksum(data))


class ContainerWriter:
    """Writes to a temporary file beside the target and renames it into place on success only.

    The preamble's version is the header's `format_version`."""

    def __init__(self, path: Path, header: dict, edf_header: bytes, trailer: bytes, force: bool = False):
        self.path = Path(path)
        if self.path.exists() and not force:
            raise OutputExistsError(f"{self.path} exists; use --force to overwrite it")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent or ".")
        self.tmp = Path(tmp)
        self.f = os.fdopen(fd, "wb")
        self.blocks: list[BlockEntry] = []
        self.f.write(PREAMBLE.pack(MAGIC, header["format_version"], 0, 0))
        self.header_offset = self.f.tell()
        text = json.dumps(header, sort_keys=True).encode("utf-8")
        zc = zstandard.ZstdCompressor(level=19)
        for part in (text, edf_header, trailer):
            self.f.write(_section(zc.compress(part)))

    def add_block(self, payload: bytes, first_record: int, record_count: int, first_sample: int,
                  sample_count: int) -> None:
        entry = BlockEntry(self.f.tell(), len(payload), first_record, record_count, first_sample,
                           sample_count, checksum(payload))
        self.f.write(payload)
        self.blocks.append(entry)

    def finish(self) -> int:
        index = b"".join(INDEX_ENTRY.pack(b.offset, b.length, b.first_record, b.record_count, b.first_sample,
                                          b.sample_count, b.checksum) for b in self.blocks)
        index_offset = self.f.tell()
        self.f.write(_section(index))
        self.f.write(FOOTER.pack(index_offset, len(index) + 16, self.header_offset, FOOTER_MAGIC))
        size = self.f.tell()
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.path)
        return size

    def abort(self) -> None:
        if not self.f.closed:
            self.f.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            self.abort()


class ContainerReader:
    """Random access to a .eegz file: header, EDF header, trailer and checked blocks."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.f = open(self.path, "rb")
        except OSError as e:
            raise FormatError(f"cannot read {path}: {e.strerror}") from None
        self.size = os.fstat(self.f.fileno()).st_size
        if self.size < PREAMBLE.size:
            raise FormatError(f"{self.path.name} is not an .eegz file (too short)")
        magic, version, _, _ = PREAMBLE.unpack(self.f.read(PREAMBLE.size))
        if magic != MAGIC:
            raise FormatError(f"{self.path.name} is not an .eegz file (bad magic bytes)")
        if version not in READABLE_VERSIONS:
            raise FormatError(f"{self.path.name} uses .eegz format version {version}; this eegz reads "
                              f"versions {', '.join(map(str, READABLE_VERSIONS))} (upgrade eegz to read it)")
        if self.size < PREAMBLE.size + FOOTER.size:
            raise FormatError(f"{self.path.name} is truncated (no footer)")
        self.f.seek(self.size - FOOTER.size)
        index_offset, index_length, header_offset, end_magic = FOOTER.unpack(self.f.read(FOOTER.size))
        if end_magic != FOOTER_MAGIC or index_offset + index_length > self.size - FOOTER.size:
            raise FormatError(f"{self.path.name} is truncated or damaged (footer not found)")
        self.f.seek(header_offset)
        header_json = self._decompress(self._read_section("header"), "header")
        try:
            self.header = json.loads(header_json.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise FormatError(f"{self.path.name}: the JSON header is not valid") from None
        self.edf_header = self._decompress(self._read_section("EDF header"), "EDF header")
        self.trailer = self._decompress(self._read_section("trailer"), "trailer")
        self.f.seek(index_offset)
        index = self._read_section("block index")
        if len(index) % INDEX_ENTRY.size:
            raise FormatError(f"{self.path.name}: block index has a partial entry")
        self.blocks = [BlockEntry(*INDEX_ENTRY.unpack_from(index, i))
                       for i in range(0, len(index), INDEX_ENTRY.size)]
        for k, b in enumerate(self.blocks):
            if b.offset + b.length > index_offset:
                raise FormatError(f"{self.path.name}: block {k} lies outside the file")

    def _read_section(self, what: str) -> bytes:
        raw = self.f.read(8)
        if len(raw) < 8:
            raise FormatError(f"{self.path.name} is truncated (in the {what} section)")
        (length,) = struct.unpack("<Q", raw)
        if length > self.size:
            raise FormatError(f"{self.path.name} is damaged (impossible {what} length)")
        data = self.f.read(length)
        tail = self.f.read(8)
        if len(data) < length or len(tail) < 8:
            raise FormatError(f"{self.path.name} is truncated (in the {what} section)")
        if struct.unpack("<Q", tail)[0] != checksum(data):
            raise FormatError(f"{self.path.name}: checksum mismatch in the {what} section (file is damaged)")
        return data

    def _decompress(self, data: bytes, what: str) -> bytes:
        try:
            return zstandard.ZstdDecompressor().decompress(data)
        except zstandard.ZstdError:
            raise FormatError(f"{self.path.name}: the {what} section is not valid zstd data") from None

    def read_block(self, k: int) -> list[Stream]:
        b = self.blocks[k]
        self.f.seek(b.offset)
        payload = self.f.read(b.length)
        if len(payload) < b.length:
            raise FormatError(f"{self.path.name} is truncated (block {k})")
        if checksum(payload) != b.checksum:
            raise FormatError(f"{self.path.name}: checksum mismatch in block {k} (records "
                              f"{b.first_record}-{b.first_record + b.record_count - 1}); the file is damaged")
        return unpack_block(payload)

    def blocks_for_records(self, first: int, stop: int) -> list[int]:
        """Indices of the blocks that hold any record in [first, stop)."""
        return [k for k, b in enumerate(self.blocks)
                if b.first_record < stop and b.first_record + b.record_count > first]

    def close(self) -> None:
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_atomically(path: Path, data_parts, force: bool = False) -> None:
    """Write an output file through a temporary file and a rename (used for decoded EDFs)."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; use --force to overwrite it")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            for part in data_parts:
                f.write(part)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
