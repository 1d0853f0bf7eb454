"""The decode pipeline: a .eegz container's blocks back to digital samples, in order, a few at a time.

`decode_blocks` yields each block's samples per signal. Exact blocks decode on a thread pool (the C
kernels release the GIL); neural blocks decode in order with their neighbours' tokens as context, read
one block ahead. Only the blocks a record range touches are read (plus one neighbour on each side in
lossy files), and memory holds a handful of blocks whatever the recording's length.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

import numpy as np

from .channels import NEURAL
from .container import (ALL_SIGNALS, ANNOTATION_BYTES, AUX_TOKENS, LOSSLESS, NEAR_LOSSLESS, NEURAL_TOKENS,
                        RECORD_BYTES, ROTATION, TRANSFORM, BlockEntry, Container, Stream, unzstd)
from .edf import EdfError, EdfHeader, bytes_to_digital, parse_header, split_records
from .errors import FormatError, ModelError
from .exact import Expected, decode_group
from .parallel import cpu_budget
from .progress import Progress


def edf_header_of(container: Container) -> EdfHeader:
    """The stored EDF header, checked against the container's channel table (a reader trusts neither alone)."""
    try:
        header = parse_header(container.edf_header)
    except EdfError as e:
        raise FormatError(f"{container.name}: the stored EDF header is damaged ({e})") from None
    channels, edf = container.meta["channels"], container.meta["edf"]
    same = (len(header.raw) == len(container.edf_header) and len(header.signals) == len(channels)
            and header.sample_width == edf["sample_width"] and header.record_duration == edf["record_duration"]
            and all(s.samples_per_record == c["samples_per_record"] and s.digital_min == c["digital_min"]
                    and s.digital_max == c["digital_max"] and s.is_annotation == (c["role"] == "annotation")
                    for s, c in zip(header.signals, channels)))
    if not same:
        raise FormatError(f"{container.name} is damaged (the EDF header and the channel table disagree)")
    return header


class _Block:
    """A block's entry and its streams, sorted by what decodes them."""

    def __init__(self, index: int, entry: BlockEntry, streams: list[Stream], header: EdfHeader, name: str,
                 transform_version: int = 0):
        self.index, self.entry = index, entry
        self.record_bytes: Stream | None = None
        self.annotations: dict[int, Stream] = {}
        self.exact: list[Stream] = []
        self.tokens: dict[int, Stream] = {}
        self.transform: list[Stream] = []
        self.rotations: list[Stream] = []
        where = f"{name}: block {index}"
        n_signals = len(header.signals)
        seen: set[int] = set()
        for s in streams:
            primary = not (s.kind == NEURAL_TOKENS and s.flags == AUX_TOKENS)
            if s.flags not in (0, AUX_TOKENS) or (s.flags and s.kind != NEURAL_TOKENS):
                raise FormatError(f"{where} has a stream with unknown flags")
            if s.kind == RECORD_BYTES:
                if s.signal != ALL_SIGNALS or len(streams) != 1:
                    raise FormatError(f"{where} mixes record bytes with other streams")
                self.record_bytes = s
                return
            if s.signal >= n_signals or s.kind > ROTATION or (s.kind == TRANSFORM and not transform_version) \
                    or (s.kind == ROTATION and transform_version < 8):
                raise FormatError(f"{where} has a stream of an unknown signal or kind")
            if s.kind == ROTATION:  # no signal's primary stream: its signal is its group's first member (8.1)
                self.rotations.append(s)
                continue
            if not primary:
                continue
            if s.signal in seen:
                raise FormatError(f"{where} has two streams for signal {s.signal + 1}")
            seen.add(s.signal)
            is_annotation = header.signals[s.signal].is_annotation
            if (s.kind == ANNOTATION_BYTES) != is_annotation:
                raise FormatError(f"{where}: signal {s.signal + 1} has a stream of the wrong kind")
            if s.kind == ANNOTATION_BYTES:
                self.annotations[s.signal] = s
            elif s.kind in (LOSSLESS, NEAR_LOSSLESS):
                self.exact.append(s)
            elif s.kind == TRANSFORM:
                self.transform.append(s)
            else:
                self.tokens[s.signal] = s
        if len(seen) != n_signals:
            missing = min(set(range(n_signals)) - seen)
            raise FormatError(f"{where} has no stream for signal {missing + 1} ({header.signals[missing].label})")


class _ExactDecoder:
    """Everything of a block but its neural streams (thread-safe)."""

    def __init__(self, header: EdfHeader, meta: dict, version: int):
        self.header, self.version = header, version
        bits = 8 * header.sample_width
        self.lo, self.hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        self.bounds = [c["max_error_lsb"] for c in meta["channels"]]
        self.roles = [c["role"] for c in meta["channels"]]

    def __call__(self, block: _Block) -> dict[int, np.ndarray]:
        e, width = block.entry, self.header.sample_width
        if block.record_bytes is not None:
            raw = stream_bytes(block.record_bytes.data, e.record_count * self.header.record_bytes, "record bytes")
            return dict(enumerate(split_records(self.header, raw, e.record_count)))
        out = {}
        for i, s in block.annotations.items():
            n = e.record_count * self.header.signals[i].samples_per_record
            out[i] = bytes_to_digital(np.frombuffer(stream_bytes(s.data, n * width, "annotation"), np.uint8), width)
        expected = []
        for s in block.exact:
            spr = self.header.signals[s.signal].samples_per_record
            if s.kind == LOSSLESS and self.bounds[s.signal]:
                raise FormatError(f"block {block.index}: a lossless stream for a bounded channel")
            expected.append(Expected(e.record_count * spr, self.lo, self.hi, s.kind == LOSSLESS))
        if self.version >= 3:
            values = decode_group([s.data for s in block.exact], expected)
        else:
            values = _decode_v1([s.data for s in block.exact], expected)
        out.update({s.signal: v for s, v in zip(block.exact, values)})
        if block.transform:
            from .transform import decode_streams
            if any(self.roles[s.signal] != NEURAL for s in block.transform):
                raise FormatError(f"block {block.index}: a transform stream for a channel that is not EEG")
            signals = self.header.signals
            out.update(decode_streams({s.signal: s.data for s in block.transform}, [(s.signal, s.data) for s in block.rotations],
                                      signals, lambda i: e.record_count * signals[i].samples_per_record,
                                      e.first_record, self.version))
        elif block.rotations:
            raise FormatError(f"block {block.index}: a rotation stream without transform streams")
        return out


def _decode_v1(streams: list[bytes], expected: list[Expected]) -> list[np.ndarray]:
    from .legacy.exact import decode_items
    try:
        values = decode_items(streams, [0] * len(streams))
    except FormatError:
        raise
    except Exception:  # any failure of an old stream's parser means a damaged stream
        raise FormatError("damaged exact stream") from None
    if any(len(v) != exp.n for v, exp in zip(values, expected)):
        raise FormatError("damaged exact stream (sample count)")
    return [v.astype(np.int32) for v in values]


def stream_bytes(data: bytes, size: int, what: str) -> bytes:
    raw = unzstd(data, size, f"{what} stream")
    if len(raw) != size:
        raise FormatError(f"damaged {what} stream ({len(raw)} bytes where {size} belong)")
    return raw


def load_codec(meta: dict, model: str | None, device: str, quiet: bool = True):
    """The neural model a file names, checked by the SHA-256 of its weights."""
    from .neural import NeuralCodec
    codec_meta = meta["codec"]
    try:
        return NeuralCodec.load(model or codec_meta["model"], device, expect_sha256=codec_meta["weights_sha256"],
                                quiet=quiet)
    except ModelError as e:
        raise ModelError(f"{e}; this file needs model {codec_meta['model']!r} with weights "
                         f"{codec_meta['weights_sha256'][:12]}…: pass it with --model PATH.npz") from None


def decode_blocks(container: Container, first: int, stop: int, device: str = "auto", model: str | None = None,
                  workers: int = 0, quiet: bool = True, finish=None,
                  codebooks: int | None = None) -> Iterator[tuple[BlockEntry, object]]:
    """(entry, {signal: digital samples}) of every block that holds a record in [first, stop), in order.
    codebooks: decode neural streams from their first `codebooks` codebooks only (a preview).

    finish(entry, samples), when given, turns a block's samples into what is yielded instead (such as its
    EDF record bytes); it runs on the pool for blocks without neural streams."""
    finish = finish or (lambda entry, values: values)
    meta = container.meta
    header = edf_header_of(container)
    targets = container.blocks_for_records(first, stop)
    lossy = meta["mode"] == "lossy" and any(c["role"] == NEURAL for c in meta["channels"])
    exact = _ExactDecoder(header, meta, container.version)
    tokens = None
    if lossy and targets:
        from .lossy import TokenDecoder
        codec = load_codec(meta, model, device, quiet)
        styles = [c.get("style_index") for c in meta["channels"]]
        tokens = TokenDecoder(codec, meta["codec"], header.signals, styles, header.record_duration, container.version,
                              codebooks)
    unpacked: dict[int, dict] = {}

    # a transform file's version (7 or later: older ones refuse the mode), 0 for others
    transform_version = container.version if meta["mode"] == "transform" else 0

    def read(k: int) -> _Block:
        return _Block(k, container.blocks[k], container.read_block(k), header, container.name, transform_version)

    def neighbours(k: int) -> dict:
        """Unpacked tokens of block k, read for context only (the blocks just outside a range)."""
        if k not in unpacked:
            if 0 <= k < len(container.blocks):
                unpacked[k] = unpack_all(read(k))
            else:
                unpacked[k] = {}
        return unpacked[k]

    def unpack_all(block: _Block) -> dict:
        e = block.entry
        return {i: tokens.unpack(s.data, e.first_record, e.record_count) for i, s in block.tokens.items()}

    workers = workers or cpu_budget()
    limit = 4 * workers
    with ThreadPoolExecutor(workers) as pool, Progress(len(targets), "decompress", quiet) as bar:
        queue: deque = deque()  # blocks read, their exact streams decoding on the pool
        done: deque = deque()  # (entry, future of what is yielded): a block's neural finish runs beside the next's model

        def ready(most: int):
            while len(done) > most or (done and done[0][1].done()):
                entry, future = done.popleft()
                bar.update(1)
                yield entry, future.result()
        for k in targets:
            block = read(k)
            if block.tokens and tokens is None:
                raise FormatError(f"{container.name}: block {k} holds neural streams in a file without a codec")
            job = (lambda b: finish(b.entry, exact(b))) if not block.tokens else exact
            queue.append((block, pool.submit(job, block)))
            if tokens is not None:
                unpacked[k] = unpack_all(block)
            while len(queue) > limit or (queue and tokens is None and queue[0][1].done()):
                done.append(_started(queue.popleft(), tokens, unpacked, neighbours, pool, finish))
                yield from ready(1)
        while queue:
            done.append(_started(queue.popleft(), tokens, unpacked, neighbours, pool, finish))
            yield from ready(1)
        yield from ready(0)


def _started(item, tokens, unpacked, neighbours, pool, finish) -> tuple[BlockEntry, Future]:
    """(entry, future of what decode_blocks yields for the block): a neural block's model runs here, and the rest of
    its decoding (spec 6.1 after the decoder: resampling, envelope, rounding) on the pool."""
    block, future = item
    if not block.tokens:
        return block.entry, future
    out = future.result()
    e, k = block.entry, block.index
    waves = tokens.waves(e.first_record, e.record_count, unpacked[k], neighbours(k - 1), neighbours(k + 1))
    unpacked.pop(k - 1, None)  # what lies behind is no longer needed
    return e, pool.submit(lambda: finish(e, {**out, **tokens.finish(waves)}))


def decode_records(container: Container, first: int, stop: int, device: str = "auto", model: str | None = None,
                   quiet: bool = True, codebooks: int | None = None) -> list[np.ndarray]:
    """Digital samples of every signal for records [first, stop) (the whole range in memory)."""
    header = edf_header_of(container)
    pieces: list[list] = [[] for _ in header.signals]
    for entry, values in decode_blocks(container, first, stop, device, model, quiet=quiet, codebooks=codebooks):
        lo, hi = max(first, entry.first_record), min(stop, entry.first_record + entry.record_count)
        for i, s in enumerate(header.signals):
            spr = s.samples_per_record
            pieces[i].append(values[i][(lo - entry.first_record) * spr:(hi - entry.first_record) * spr])
    return [np.concatenate(p) if p else np.zeros(0, np.int32) for p in pieces]
