"""Who and when: the EDF header's identification and start time, and EDF+ annotation onsets.

- A time-range export starts at its true time: the header's start date and time move forward by the
  whole seconds skipped, and every EDF+ onset moves back by the same amount (the first record's
  timekeeping onset keeps the fraction), so pyedflib and MNE place the excerpt where it was recorded.
- `--anonymize` replaces the patient and recording identification following the EDF+ conventions ('X'
  for unknown subfields) and the start date by 01.01.85 (a date every EDF reader accepts; the time of
  day is kept); `--drop-annotation-text` replaces every annotation text by 'X' (onsets and durations stay).
- `--encrypt-identity` keeps the original identification recoverable with a passphrase only: AES-256-GCM
  under a key from scrypt (spec section 2.3). Signals decode without it.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
from decimal import Decimal

from .errors import EegzError

IDENTITY = slice(8, 184)  # patient (80), recording (80), start date (8) and time (8) of the EDF header
ANONYMOUS_DATE = dt.date(1985, 1, 1)  # EDF's two-digit years begin at 1985
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_TAL = re.compile(rb"([+-]\d+(?:\.\d*)?)((?:\x15\d+(?:\.\d*)?)?)\x14(.*?)\x00", re.S)
SCRYPT = {"n": 1 << 15, "r": 8, "p": 1}  # memory-hard: 32 MB and about 0.1 s a try


def is_edf_plus(header_raw: bytes) -> bool:
    return header_raw[192:196] in (b"EDF+", b"BDF+")


def _field(text: str, width: int) -> bytes:
    return text.ljust(width)[:width].encode("ascii")


def start_of(header_raw: bytes) -> dt.datetime | None:
    """The recording's start from the header (dd.mm.yy hh.mm.ss; years 85-99 are 19xx, 00-84 20xx; an
    EDF+ 'Startdate dd-MMM-yyyy' with a four-digit year takes precedence); None when unreadable."""
    try:
        day, month, year = (int(v) for v in header_raw[168:176].decode("ascii").split("."))
        hour, minute, second = (int(v) for v in header_raw[176:184].decode("ascii").split("."))
        year += 1900 if year >= 85 else 2000
        if is_edf_plus(header_raw):
            m = re.match(rb"Startdate (\d{2})-([A-Z]{3})-(\d{4})", header_raw[88:168])
            if m and m.group(2).decode() in _MONTHS:
                year = int(m.group(3))
        return dt.datetime(year, month, day, hour, minute, second)
    except (ValueError, UnicodeDecodeError):
        return None


def with_start(header_raw: bytes, start: dt.datetime) -> bytes:
    """The header with its start date and time (and an EDF+ recording field's Startdate) set to start."""
    out = bytearray(header_raw)
    out[168:176] = start.strftime("%d.%m.%y").encode("ascii")
    out[176:184] = start.strftime("%H.%M.%S").encode("ascii")
    if is_edf_plus(header_raw):
        recording = header_raw[88:168].decode("latin-1")
        date = f"{start.day:02d}-{_MONTHS[start.month - 1]}-{start.year:04d}"
        recording = re.sub(r"^Startdate \S+", f"Startdate {date}", recording) if recording.startswith("Startdate") \
            else f"Startdate {date} X X X"
        out[88:168] = _field(recording, 80)
    return bytes(out)


def anonymized(header_raw: bytes) -> bytes:
    """Patient and recording identification replaced ('X' for unknown EDF+ subfields), the start date set
    to 01.01.85; the time of day, the equipment-independent rest of the header and the signals stay."""
    out = bytearray(header_raw)
    plus = is_edf_plus(header_raw)
    out[8:88] = _field("X X X X" if plus else "X", 80)
    out[88:168] = _field("Startdate 01-JAN-1985 X X X" if plus else "X", 80)
    out[168:176] = b"01.01.85"
    return bytes(out)


def _shifted_onset(onset: bytes, seconds: int) -> bytes:
    value = Decimal(onset.decode("ascii")) - seconds
    text = format(value, "f")
    return (text if text.startswith("-") else "+" + text).encode("ascii")


def rewrite_annotations(data: bytes, record_bytes: int, shift: int = 0, drop_text: bool = False) -> bytes:
    """One annotation signal's bytes (records of record_bytes each) with every onset moved back by `shift`
    whole seconds and, with drop_text, every annotation text replaced by 'X'. Bytes that are not TALs
    are kept; a record that would overflow keeps its original bytes."""
    out = bytearray()
    for start in range(0, len(data), record_bytes):
        record = data[start:start + record_bytes]
        pieces, end = [], 0
        for m in _TAL.finditer(record):
            if m.start() != end:
                break
            onset, duration, texts = m.groups()
            if drop_text and texts:  # the timekeeping TAL has no text (b"") and keeps none
                texts = b"\x14".join(b"X" if t else b"" for t in texts.split(b"\x14"))
            pieces.append(_shifted_onset(onset, shift) + duration + b"\x14" + texts + b"\x00")
            end = m.end()
        rebuilt = b"".join(pieces) + record[end:].rstrip(b"\x00") if pieces else record
        out += rebuilt.ljust(len(record), b"\x00") if len(rebuilt) <= len(record) else record
    return bytes(out)


def annotations_in(data: bytes, record_bytes: int):
    """(onset, duration or None, text) of every annotation in an annotation signal's records; the
    records' timekeeping entries (no text) are left out."""
    for start in range(0, len(data), record_bytes):
        record = data[start:start + record_bytes]
        end = 0
        for m in _TAL.finditer(record):
            if m.start() != end:
                break
            end = m.end()
            onset, duration, texts = m.groups()
            for text in texts.split(b"\x14"):
                if text:
                    yield (float(onset), float(duration[1:]) if duration else None,
                           text.decode("utf-8", "replace"))


# ---------------------------------------------------------------- encrypted identity (spec 2.3)

def encrypt_identity(original: dict, passphrase: bytes, bound_to: bytes) -> bytes:
    """The IDNT section's content: JSON with scrypt parameters, a salt, a nonce and the AES-256-GCM
    ciphertext of `original` (JSON), authenticated together with `bound_to` (the stored, anonymized EDF
    header: the section cannot be moved to another file)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    salt, nonce = os.urandom(16), os.urandom(12)
    key = _key(passphrase, salt, SCRYPT)
    ciphertext = AESGCM(key).encrypt(nonce, json.dumps(original, sort_keys=True).encode("utf-8"), bound_to)
    return json.dumps({"kdf": "scrypt", **SCRYPT, "salt": salt.hex(), "cipher": "AES-256-GCM", "nonce": nonce.hex(),
                       "ciphertext": ciphertext.hex()}, sort_keys=True).encode("utf-8")


def decrypt_identity(content: bytes, passphrase: bytes, bound_to: bytes) -> dict:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    try:
        box = json.loads(content.decode("utf-8"))
        params = {k: int(box[k]) for k in ("n", "r", "p")}
        if box.get("kdf") != "scrypt" or box.get("cipher") != "AES-256-GCM" or not (
                1 < params["n"] <= 1 << 20 and params["r"] <= 32 and params["p"] <= 16):
            raise ValueError
        salt, nonce, ciphertext = (bytes.fromhex(box[k]) for k in ("salt", "nonce", "ciphertext"))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, AttributeError):
        from .errors import FormatError
        raise FormatError("the encrypted identity section is damaged") from None
    try:
        plain = AESGCM(_key(passphrase, salt, params)).decrypt(nonce, ciphertext, bound_to)
    except InvalidTag:
        raise EegzError("wrong passphrase (or a damaged identity section): the identity stays encrypted") from None
    return json.loads(plain.decode("utf-8"))


def _key(passphrase: bytes, salt: bytes, params: dict) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
    return Scrypt(salt=salt, length=32, n=params["n"], r=params["r"], p=params["p"]).derive(passphrase)


def read_passphrase(path) -> bytes:
    """A passphrase file's first line (without its line end)."""
    try:
        with open(path, "rb") as f:
            line = f.readline().rstrip(b"\r\n")
    except OSError as e:
        raise EegzError(f"cannot read the passphrase file {path}: {e.strerror}") from None
    if not line:
        raise EegzError(f"the passphrase file {path} is empty")
    return line
