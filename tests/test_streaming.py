"""Streaming: memory that does not grow with the recording, a writer that never seeks, pipes as input."""
import io
import tracemalloc

import pytest

from eegz import api
from eegz.edf import EdfReader, read_edf
from eegz.encode import EncodeOptions, encode

from .conftest import EXAMPLE


def tiled_edf(path, repeats: int) -> None:
    """The example's data records repeated `repeats` times (a longer recording of the same EEG)."""
    data = EXAMPLE.read_bytes()
    rec = read_edf(EXAMPLE)
    header = bytearray(rec.header.raw)
    header[236:244] = str(rec.n_records * repeats).ljust(8).encode()
    body = data[len(rec.header.raw):len(rec.header.raw) + rec.n_records * rec.header.record_bytes]
    path.write_bytes(bytes(header) + body * repeats)


def traced_peak(action) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("mode", ["lossless", "near-lossless"])
def test_memory_does_not_grow_with_length(tmp_path, mode):
    """Python's traced peak for 2 and 8 minutes of EEG: the same, within a margin (it was 40× the file)."""
    kw = {"max_error_lsb": 2} if mode == "near-lossless" else {}
    peaks = {}
    for repeats in (2, 8):
        edf = tmp_path / f"r{repeats}.edf"
        tiled_edf(edf, repeats)
        out = tmp_path / f"r{repeats}.eegz"
        peaks[("compress", repeats)] = traced_peak(lambda: api.compress(edf, out, mode=mode, workers=2, **kw))
        back = tmp_path / f"r{repeats}.back.edf"
        peaks[("decompress", repeats)] = traced_peak(lambda: api.decompress(out, back, workers=2))
        if mode == "lossless":
            assert back.read_bytes() == edf.read_bytes()
    for step in ("compress", "decompress"):
        short, long = peaks[(step, 2)], peaks[(step, 8)]
        assert long < 1.25 * short + (1 << 20), (step, short, long)  # measured within 10 %
        assert long < 40 << 20, (step, long)  # a few blocks in flight: about 10 MB here


class _Pipe(io.RawIOBase):
    """A write-only stream that cannot seek or tell, like a pipe."""

    def __init__(self):
        self.data = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.data += bytes(b)
        return len(b)

    def seekable(self):
        return False


class _ReadPipe(io.RawIOBase):
    def __init__(self, data: bytes):
        self.buf = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, b):
        chunk = self.buf.read(min(len(b), 4096))  # short reads, as from a pipe
        b[:len(chunk)] = chunk
        return len(chunk)


def test_writer_never_seeks_and_the_reader_needs_no_file_size(tmp_path):
    pipe = _Pipe()
    reader = EdfReader(io.BufferedReader(_ReadPipe(EXAMPLE.read_bytes())), "stdin", None)
    encode(reader, pipe, "example.edf", EncodeOptions(mode="lossless"))
    out = tmp_path / "piped.eegz"
    out.write_bytes(bytes(pipe.data))
    api.decompress(out, tmp_path / "back.edf")
    assert (tmp_path / "back.edf").read_bytes() == EXAMPLE.read_bytes()
    assert api.info(out)["source_bytes"] == EXAMPLE.stat().st_size


def test_unknown_record_count_takes_every_whole_record_and_keeps_the_rest(tmp_path):
    """Header record count -1 (still recording): whole records are data, a partial one is trailing bytes."""
    raw = bytearray(EXAMPLE.read_bytes())
    raw[236:244] = b"-1      "
    src = tmp_path / "open.edf"
    src.write_bytes(bytes(raw) + b"partial record")
    reader = EdfReader(io.BufferedReader(_ReadPipe(src.read_bytes())), "stdin", None)
    pipe = _Pipe()
    encode(reader, pipe, "open.edf", EncodeOptions(mode="lossless"))
    (tmp_path / "open.eegz").write_bytes(bytes(pipe.data))
    info = api.info(tmp_path / "open.eegz")
    assert info["records"] == 62
    api.decompress(tmp_path / "open.eegz", tmp_path / "back.edf")
    assert (tmp_path / "back.edf").read_bytes() == src.read_bytes()
