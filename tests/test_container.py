"""The container: every byte counts, old versions stay readable, the layout is what the spec says."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from eegz import api
from eegz.container import FOOTER, INDEX_ENTRY, MAGIC, PREAMBLE, SECTION_HEAD, Container
from eegz.edf import SIGNAL_FIELDS, read_edf
from eegz.errors import FormatError

from .conftest import assert_near_reference

FIXTURES = Path(__file__).parent / "fixtures"
VECTORS = Path(__file__).parents[1] / "spec" / "vectors"
SMALL = FIXTURES / "small.edf"


def tiny_edf(path: Path, records: int = 3) -> None:
    """Two records' worth of the small fixture's first signal and its annotations: a file of ~1 kB."""
    rec = read_edf(SMALL)
    raw, ns = rec.header.raw, len(rec.header.signals)
    keep = [0, ns - 1]
    head = bytearray(raw[:256])
    head[184:192] = str(256 * (len(keep) + 1)).ljust(8).encode()
    head[236:244] = str(records).ljust(8).encode()
    head[252:256] = str(len(keep)).ljust(4).encode()
    pos, cols = 256, []
    for _, width in SIGNAL_FIELDS:
        cols.append(b"".join(raw[pos + i * width:pos + (i + 1) * width] for i in keep))
        pos += width * ns
    body = b""
    for r in range(records):
        for i in keep:
            spr = rec.header.signals[i].samples_per_record
            body += rec.digital[i][r * spr:(r + 1) * spr].astype("<i2").tobytes()
    path.write_bytes(bytes(head) + b"".join(cols) + body)


def test_every_single_byte_change_is_refused(tmp_path):
    """Any one changed byte anywhere in a file: decoding refuses it as damaged (FormatError, exit 3)."""
    tiny = tmp_path / "tiny.edf"
    tiny_edf(tiny)
    good = tmp_path / "tiny.eegz"
    api.compress(tiny, good, mode="lossless")
    data = good.read_bytes()
    bad = tmp_path / "bad.eegz"
    for pos in range(len(data)):
        for flip in (0x01, 0x80):
            changed = bytearray(data)
            changed[pos] ^= flip
            bad.write_bytes(bytes(changed))
            with pytest.raises(FormatError):
                api.decompress(bad, tmp_path / "out.edf", force=True)
            assert not (tmp_path / "out.edf").exists()


def test_layout_follows_the_spec():
    """Preamble, tagged sections in order, block sections tiling the space to the summary, footer."""
    path = VECTORS / "lossless.eegz"
    data = path.read_bytes()
    magic, version, flags, reserved = PREAMBLE.unpack_from(data, 0)
    assert (magic, version, flags, reserved) == (MAGIC, 3, 0, 0)
    index_offset, index_length, summary_offset, end = FOOTER.unpack_from(data, len(data) - FOOTER.size)
    assert end == b"EEGZEND\x00" and index_offset + index_length == len(data) - FOOTER.size
    pos, tags = PREAMBLE.size, []
    while pos < len(data) - FOOTER.size:
        tag, n = SECTION_HEAD.unpack_from(data, pos)
        tags.append(tag)
        pos += SECTION_HEAD.size + n + 8
    assert tags[:2] == [b"HEAD", b"EDFH"] and tags[-3:] == [b"SUMM", b"TRLR", b"INDX"]
    assert set(tags[2:-3]) == {b"BLCK"} and pos == len(data) - FOOTER.size
    with Container(path) as c:  # the index entries tile the block sections and partition the records
        entries = [INDEX_ENTRY.unpack_from(data, index_offset + SECTION_HEAD.size + k * INDEX_ENTRY.size)
                   for k in range(len(c.blocks))]
        assert entries[0][0] == c.blocks_start and entries[-1][0] + entries[-1][1] == summary_offset
        assert entries[0][2] == 0 and all(a[2] + a[3] == b[2] for a, b in zip(entries, entries[1:]))


@pytest.mark.parametrize("name", ["v1/lossless.eegz", "v1/near_lossless.eegz", "v1/lossless_tokens.eegz"])
def test_version_1_files_decode_as_they_did(name, tmp_path):
    expected = json.loads((FIXTURES / "old_versions.json").read_text())[name]
    out = tmp_path / "out.edf"
    api.decompress(FIXTURES / name, out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == expected["decoded_edf_sha256"]
    if name.startswith("v1/lossless"):
        assert out.read_bytes() == SMALL.read_bytes()
    assert api.info(FIXTURES / name)["format_version"] == 1


@pytest.mark.parametrize("name", ["v1/lossy_sc_6.eegz", "v2/lossy_mc_3.eegz"])
def test_lossy_files_of_versions_1_and_2_decode(name, tmp_path):
    """The old neural files decode with the models that wrote them (still shipped): as version 0.1 decoded them,
    or, where float arithmetic differs in the last bit (another CPU), within a digital step of the reference
    that eegz 0.12 recorded on such a CPU."""
    expected = json.loads((FIXTURES / "old_versions.json").read_text())[name]
    out = tmp_path / "out.edf"
    api.decompress(FIXTURES / name, out, device="cpu")
    decoded = read_edf(out)
    original = read_edf(SMALL)
    assert len(out.read_bytes()) == SMALL.stat().st_size
    for s, a, b in zip(original.header.signals, original.digital, decoded.digital):
        assert len(a) == len(b)
    digest = hashlib.sha256(b"".join(np.asarray(d, "<i4").tobytes() for d in decoded.digital)).hexdigest()
    if digest != expected["decoded_digital_sha256"]:  # allowed: last-bit float differences, never more
        assert_near_reference(out, expected["decoded_reference"])
