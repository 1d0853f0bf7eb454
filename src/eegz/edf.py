"""EDF / EDF+ / BDF / BDF+ reading and writing at the byte level.

The header is parsed for what the codec needs but always kept as the exact bytes of the file, and data
records are split into per-signal digital samples with numpy, so that writing them back reproduces the
input byte for byte. pyedflib is stricter than real files (it rejects wrong start-date separators, EDF+D,
single-record BioSemi files); reading records ourselves keeps those files too.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from .errors import EegzError

EDF_VERSION = b"0       "
BDF_VERSION = b"\xffBIOSEMI"
ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")

# Per-signal header fields in file order, with their widths in bytes.
SIGNAL_FIELDS = (
    ("label", 16), ("transducer", 80), ("physical_dimension", 8), ("physical_min", 8),
    ("physical_max", 8), ("digital_min", 8), ("digital_max", 8), ("prefilter", 80),
    ("samples_per_record", 8), ("reserved", 32),
)


class EdfError(EegzError):
    """The input is not a readable EDF/BDF file."""


@dataclass
class Signal:
    """One signal's header fields, decoded from ASCII."""
    index: int
    label: str
    transducer: str
    physical_dimension: str
    physical_min: float
    physical_max: float
    digital_min: int
    digital_max: int
    prefilter: str
    samples_per_record: int
    sample_rate: float  # samples per second; 0 when the record duration is 0

    @property
    def is_annotation(self) -> bool:
        return self.label in ANNOTATION_LABELS

    @property
    def gain(self) -> float:
        """Physical units per digital step (0 for a degenerate range)."""
        span = self.digital_max - self.digital_min
        return (self.physical_max - self.physical_min) / span if span else 0.0

    def to_physical(self, digital: np.ndarray) -> np.ndarray:
        return (digital.astype(np.float64) - self.digital_min) * self.gain + self.physical_min

    def to_digital(self, physical: np.ndarray) -> np.ndarray:
        """Re-quantize with the original gain and offset, clipped to the digital range."""
        if self.gain == 0.0:
            return np.full(np.shape(physical), self.digital_min, dtype=np.int32)
        return self.requantized(self.digital_values(physical))

    def digital_values(self, physical: np.ndarray) -> np.ndarray:
        """Physical values in digital units, not yet rounded (gain must not be 0)."""
        return (np.asarray(physical, np.float64) - self.physical_min) / self.gain + self.digital_min

    def requantized(self, values: np.ndarray) -> np.ndarray:
        """Digital-unit values rounded (half to even) and clipped to the digital range."""
        return np.clip(np.round(values), self.digital_min, self.digital_max).astype(np.int32)


@dataclass
class EdfHeader:
    raw: bytes  # the whole header, 256 × (ns + 1) bytes, verbatim
    is_bdf: bool
    reserved: str
    n_records: int  # as declared (-1 allowed by the standard while recording)
    record_duration: float
    signals: list[Signal]

    @property
    def sample_width(self) -> int:
        return 3 if self.is_bdf else 2

    @property
    def record_bytes(self) -> int:
        return sum(s.samples_per_record for s in self.signals) * self.sample_width


@dataclass
class EdfRecording:
    header: EdfHeader
    n_records: int  # records actually present in the file
    digital: list[np.ndarray]  # per signal: int32 samples (annotation signals too, as their raw ints)
    trailing: bytes = field(default=b"")  # bytes after the last whole record, kept verbatim

    @property
    def duration(self) -> float:
        return self.n_records * self.header.record_duration


def _ascii(raw: bytes) -> str:
    return raw.decode("latin-1").strip()


def _number(raw: bytes, what: str, kind=float):
    text = _ascii(raw)
    try:
        value = float(text)
    except ValueError:
        raise EdfError(f"bad {what} field {text!r} in the EDF header") from None
    if not math.isfinite(value) or abs(value) > 1e15:
        raise EdfError(f"bad {what} field {text!r} in the EDF header (not a finite number within ±1e15)")
    if kind is int:
        if value != int(value):
            raise EdfError(f"bad {what} field {text!r} in the EDF header (not a whole number)")
        return int(value)
    return value


def parse_header(data: bytes) -> EdfHeader:
    if len(data) < 256:
        raise EdfError("not an EDF/BDF file: shorter than the 256-byte header")
    version = data[:8]
    if version not in (EDF_VERSION, BDF_VERSION):
        raise EdfError("not an EDF/BDF file: the version field is neither '0' nor BIOSEMI")
    is_bdf = version == BDF_VERSION
    header_bytes = _number(data[184:192], "header size", int)
    n_signals = _number(data[252:256], "number of signals", int)
    if n_signals < 0 or n_signals > 65535 or header_bytes != 256 * (n_signals + 1):
        raise EdfError(f"inconsistent EDF header: {header_bytes} header bytes for {n_signals} signals")
    if len(data) < header_bytes:
        raise EdfError(f"truncated EDF: the header needs {header_bytes} bytes, the file has {len(data)}")
    n_records = _number(data[236:244], "number of data records", int)
    if n_records < -1:
        raise EdfError(f"bad number of data records {n_records}")
    record_duration = _number(data[244:252], "record duration", float)
    if record_duration < 0:
        raise EdfError(f"negative record duration {record_duration}")
    columns = _signal_columns(data[256:header_bytes], n_signals)
    signals = []
    for i in range(n_signals):
        col = {name: values[i] for name, values in columns.items()}
        spr = _number(col["samples_per_record"], "samples per record", int)
        if not 0 <= spr <= 1 << 24:
            raise EdfError(f"signal {i + 1}: samples per record {spr} out of range")
        signals.append(Signal(
            index=i, label=_ascii(col["label"]), transducer=_ascii(col["transducer"]),
            physical_dimension=_ascii(col["physical_dimension"]),
            physical_min=_number(col["physical_min"], "physical minimum"),
            physical_max=_number(col["physical_max"], "physical maximum"),
            digital_min=_number(col["digital_min"], "digital minimum", int),
            digital_max=_number(col["digital_max"], "digital maximum", int),
            prefilter=_ascii(col["prefilter"]), samples_per_record=spr,
            sample_rate=spr / record_duration if record_duration > 0 else 0.0,
        ))
    return EdfHeader(raw=bytes(data[:header_bytes]), is_bdf=is_bdf, reserved=_ascii(data[192:236]),
                     n_records=n_records, record_duration=record_duration, signals=signals)


def _signal_columns(raw: bytes, n_signals: int) -> dict[str, list[bytes]]:
    columns, pos = {}, 0
    for name, width in SIGNAL_FIELDS:
        columns[name] = [raw[pos + i * width: pos + (i + 1) * width] for i in range(n_signals)]
        pos += width * n_signals
    return columns


def bytes_to_digital(raw: np.ndarray, width: int) -> np.ndarray:
    """Little-endian two's-complement samples of 2 or 3 bytes to int32."""
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    if width == 2:
        return raw.view("<i2").astype(np.int32)
    b = raw.reshape(-1, 3).astype(np.int32)
    value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    return np.where(value >= 1 << 23, value - (1 << 24), value).astype(np.int32)


def digital_to_bytes(samples: np.ndarray, width: int) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.int32)
    if width == 2:
        return samples.astype("<i2").view(np.uint8)
    u = samples.astype(np.uint32) & 0xFFFFFF
    return np.stack([u & 0xFF, (u >> 8) & 0xFF, (u >> 16) & 0xFF], axis=1).astype(np.uint8).reshape(-1)


def _digital_range_check(header: EdfHeader) -> None:
    lo, hi = -(1 << (8 * header.sample_width - 1)), (1 << (8 * header.sample_width - 1)) - 1
    for s in header.signals:
        if not (lo <= s.digital_min <= hi and lo <= s.digital_max <= hi):
            raise EdfError(f"signal {s.index + 1} ({s.label}): digital range {s.digital_min}..{s.digital_max} "
                           f"outside the {8 * header.sample_width}-bit sample range")


class EdfReader:
    """Reads an EDF/BDF file front to back in runs of data records, never all of it at once, and hashes
    every byte it reads (the container records the source's SHA-256). `source` is a binary file object;
    `size` its length when known (a file), None for a pipe."""

    def __init__(self, source, name: str = "input", size: int | None = None):
        self.source, self.name, self.size = source, name, size
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0
        first = self._read(256)
        if len(first) < 256:
            raise EdfError("not an EDF/BDF file: shorter than the 256-byte header")
        ns_field = first[252:256]
        if first[:8] not in (EDF_VERSION, BDF_VERSION):
            raise EdfError("not an EDF/BDF file: the version field is neither '0' nor BIOSEMI")
        n_signals = _number(ns_field, "number of signals", int)
        if not 0 <= n_signals <= 65535:
            raise EdfError(f"bad number of signals {n_signals}")
        rest = self._read(256 * n_signals)
        self.header = parse_header(first + rest)
        _digital_range_check(self.header)
        self.record_bytes = self.header.record_bytes
        body = None if size is None else size - len(self.header.raw)
        declared = self.header.n_records
        if self.record_bytes == 0:
            self.n_records = 0
        elif declared >= 0:
            if body is not None and body < declared * self.record_bytes:
                raise EdfError(f"truncated EDF: {name} declares {declared} data records but holds "
                               f"{body / self.record_bytes:.3g}")
            self.n_records = declared
        else:  # -1: take every whole record present
            self.n_records = None if body is None else body // self.record_bytes
        self.records_read = 0

    def _read(self, n: int) -> bytes:
        data = self.source.read(n) if n else b""
        self.sha256.update(data)
        self.bytes_read += len(data)
        return data

    def read_records(self, count: int) -> tuple[bytes, int]:
        """(bytes, records) of up to `count` next whole records; (b"", 0) at the end of the data."""
        if self.n_records is not None:
            count = min(count, self.n_records - self.records_read)
        if count <= 0 or self.record_bytes == 0:
            return b"", 0
        data = self._read(count * self.record_bytes)
        whole = len(data) // self.record_bytes
        if whole < count and self.n_records is not None:
            raise EdfError(f"truncated EDF: {self.name} ends inside data record {self.records_read + whole + 1}")
        if whole * self.record_bytes != len(data):  # a partial record at the end of a -1 file: trailing bytes
            self._pending = data[whole * self.record_bytes:]
            data = data[:whole * self.record_bytes]
        self.records_read += whole
        if whole < count:
            self.n_records = self.records_read
        return data, whole

    def trailing(self) -> bytes:
        """The bytes after the last whole record (read to the end of the input)."""
        head = getattr(self, "_pending", b"")
        self._pending = b""
        chunks = [head]
        while True:
            chunk = self._read(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def parse_recording(data: bytes, source: str = "input") -> EdfRecording:
    header = parse_header(data)
    _digital_range_check(header)
    record_bytes = header.record_bytes
    body = len(data) - len(header.raw)
    if record_bytes == 0:
        n_records, trailing_start = 0, len(header.raw)
    elif header.n_records >= 0:
        n_records = header.n_records
        if body < n_records * record_bytes:
            held = body / record_bytes
            raise EdfError(f"truncated EDF: {source} declares {n_records} data records but holds {held:.3g}")
        trailing_start = len(header.raw) + n_records * record_bytes
    else:  # -1: record count unknown, take every whole record present
        n_records = body // record_bytes
        trailing_start = len(header.raw) + n_records * record_bytes
    digital = split_records(header, data[len(header.raw):trailing_start], n_records)
    return EdfRecording(header=header, n_records=n_records, digital=digital, trailing=bytes(data[trailing_start:]))


def split_records(header: EdfHeader, body: bytes, n_records: int) -> list[np.ndarray]:
    """Per-signal digital samples from whole data records (the inverse of records_to_bytes)."""
    records = np.frombuffer(body, np.uint8, n_records * header.record_bytes).reshape(n_records, -1)
    digital, col = [], 0
    for s in header.signals:
        width = s.samples_per_record * header.sample_width
        digital.append(bytes_to_digital(records[:, col:col + width].reshape(-1), header.sample_width))
        col += width
    return digital


def read_edf(path) -> EdfRecording:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise EdfError(f"cannot read {path}: {e.strerror}") from None
    return parse_recording(data, str(path))


def records_to_bytes(header: EdfHeader, digital: list[np.ndarray], n_records: int) -> bytes:
    """Interleave per-signal samples back into data records."""
    width = header.sample_width
    parts = [digital_to_bytes(d, width).reshape(n_records, -1) for d in digital]
    if not parts or n_records == 0:
        return b""
    return np.concatenate(parts, axis=1).tobytes()


def with_record_count(header_raw: bytes, n_records: int) -> bytes:
    """The header with its 'number of data records' field replaced (for a time-range export)."""
    field_text = str(n_records).ljust(8).encode("ascii")
    return header_raw[:236] + field_text + header_raw[244:]


def encode_recording(rec: EdfRecording, header_raw: bytes | None = None) -> bytes:
    raw = rec.header.raw if header_raw is None else header_raw
    return raw + records_to_bytes(rec.header, rec.digital, rec.n_records) + rec.trailing
