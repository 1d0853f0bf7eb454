"""Fuzz harness: mutated .eegz files through `info` and `decompress`, mutated EDF files through `compress`
in every mode (issue 10). A defect is any exception other than eegz's documented errors, a case that runs
past the time limit, memory beyond a fixed headroom, or a wrong answer the oracle can see:

- a byte change with no checksum recomputed that is accepted (every byte of a .eegz is checked);
- a lossless compress whose decode is not byte-identical to its input;
- a near-lossless compress whose decode leaves its bound;
- a NaN cast to samples (numpy's "invalid value encountered in cast" is raised as an error in the workers): a
  decoded or re-quantized sample that no rule chose (seed 18 found a token stream with scale 0 so).

Structure-aware mutators rebuild every checksum, offset and index entry after changing a field, so the
parser behind the checksums is what gets tested: JSON members set to values of other types and hostile
sizes, EDF header bytes, stream tables and stream headers set to boundary integers, index entries moved,
blocks duplicated, dropped or swapped, zstd frames that claim huge sizes.

Each worker process runs cases in order from a seeded generator (case k of a seed is reproducible:
`python benchmarks/fuzz.py --replay TARGET SEED K`). The parent kills a worker whose case runs past the
limit, records the hang and starts a new worker at the next case. Workers cap their address space at
their warmed-up size plus a headroom, so an allocation sized by an untrusted field fails loudly.

Usage: python benchmarks/fuzz.py [--cases N] [--seed S] [--out benchmarks/results/fuzz]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import resource
import struct
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import xxhash
import zstandard

ROOT = Path(__file__).resolve().parents[1]
SMALL_EDF = ROOT / "tests" / "fixtures" / "small.edf"
OLD_FIXTURES = sorted((ROOT / "tests" / "fixtures").glob("v[12]/*.eegz"))
TIME_LIMIT_S = 10.0
HEADROOM = 2 << 30  # address space a worker may add to its warmed-up size

INTERESTING_INTS = [0, 1, 2, 3, 7, 8, 15, 16, 255, 256, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
                    0xFFFFFFFF, 4194324, 1 << 40, (1 << 63) - 1, (1 << 64) - 1]
INTERESTING_JSON = [None, True, False, -1, 0, 1, 2, 64, 65, 1 << 31, 1 << 32, 1 << 63, -(1 << 63), 1e308, -1e308,
                    0.5, "", "x", "EDF", "BDF", "lossless", "lossy", "neural", "exact", "annotation", [], [0], {},
                    {"a": 1}, "ff" * 32]
EDF_NUMBERS = [b"0", b"-1", b"1", b"2", b"inf", b"-inf", b"nan", b"1e308", b"-1e308", b"99999999", b"", b"abc",
               b"0.5", b"1e-9", b"+3", b"0x10", b"-0", b"3.", b"16777216", b"65536", b"-32768", b"32767",
               b"-8388608", b"8388607", b"2147483648"]


# ---------------------------------------------------------------- format 3 files as sections

def _checksum(*parts: bytes) -> int:
    h = xxhash.xxh64()
    for p in parts:
        h.update(p)
    return h.intdigest()


def _section(tag: bytes, content: bytes) -> bytes:
    head = struct.pack("<4sQ", tag, len(content))
    return head + content + struct.pack("<Q", _checksum(head, content))


def parse_v3(data: bytes) -> tuple[bytes, list[list]]:
    """(preamble, [[tag, content], ...]) of a well-formed format 3 file."""
    pos, sections = 16, []
    while pos < len(data) - 32:
        tag, n = struct.unpack_from("<4sQ", data, pos)
        sections.append([tag, data[pos + 12:pos + 12 + n]])
        pos += 12 + n + 8
    return data[:16], sections


def build_v3(preamble: bytes, sections: list[list], fix_index: bool = True) -> bytes:
    """The file of these sections, with the index's offsets, lengths and checksums (and the footer)
    recomputed for the BLCK sections as laid out; the index's other fields are kept as given."""
    out = bytearray(preamble)
    blocks, summary_offset, index_offset = [], None, None
    body = []
    for tag, content in sections:
        if tag == b"INDX":
            continue
        if tag == b"SUMM":
            summary_offset = len(out)
        data = _section(tag, content)
        if tag == b"BLCK":
            blocks.append((len(out), len(data), _checksum(data)))
        out += data
        body.append(tag)
    index = next((c for t, c in sections if t == b"INDX"), b"")
    if fix_index:
        entries = [list(struct.unpack_from("<QIIIQIQ", index, i)) for i in range(0, len(index) - len(index) % 40, 40)]
        for entry, (offset, length, check) in zip(entries, blocks):
            entry[0], entry[1], entry[6] = offset, length, check
        index = b"".join(struct.pack("<QIIIQIQ", *e) for e in entries) + index[len(entries) * 40:]
    index_offset = len(out)
    data = _section(b"INDX", index)
    out += data
    out += struct.pack("<QQQ8s", index_offset, len(data), summary_offset or 0, b"EEGZEND\x00")
    return bytes(out)


def _index_entries(sections) -> list[list]:
    index = next(c for t, c in sections if t == b"INDX")
    return [list(struct.unpack_from("<QIIIQIQ", index, i)) for i in range(0, len(index), 40)]


def _set_index(sections, entries) -> None:
    for s in sections:
        if s[0] == b"INDX":
            s[1] = b"".join(struct.pack("<QIIIQIQ", *e) for e in entries)


# ---------------------------------------------------------------- mutators

def _rand_int(rng: random.Random) -> int:
    return rng.choice(INTERESTING_INTS) if rng.random() < 0.8 else rng.getrandbits(rng.choice([8, 16, 32, 64]))


def _put_int(buf: bytearray, pos: int, rng: random.Random) -> None:
    width = rng.choice([1, 2, 4, 8])
    if pos + width > len(buf):
        return
    buf[pos:pos + width] = (_rand_int(rng) & ((1 << (8 * width)) - 1)).to_bytes(width, "little")


def _flip_bytes(data: bytes, rng: random.Random, n: int | None = None) -> bytes:
    buf = bytearray(data)
    for _ in range(n or rng.choice([1, 1, 2, 4])):
        if buf:
            i = rng.randrange(len(buf))
            buf[i] = rng.choice([buf[i] ^ (1 << rng.randrange(8)), rng.randrange(256), 0, 255])
    return bytes(buf)


def _json_paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _json_paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:8]):
            yield from _json_paths(v, path + (i,))


def _mutate_json(obj, rng: random.Random):
    paths = [p for p in _json_paths(obj) if p]
    path = rng.choice(paths)
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    r = rng.random()
    if r < 0.15 and isinstance(parent, dict):
        del parent[key]
    elif r < 0.25 and isinstance(parent[key], list) and parent[key]:
        parent[key] = parent[key] + parent[key][:rng.randint(1, 3)]  # duplicated entries
    elif r < 0.35 and isinstance(parent[key], list) and parent[key]:
        parent[key] = parent[key][:-1]
    elif r < 0.5 and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
        parent[key] = parent[key] + rng.choice([-1, 1, -2, 2]) if rng.random() < 0.7 else -parent[key]
    else:
        parent[key] = rng.choice(INTERESTING_JSON)
    return obj


def _mutate_json_section(content: bytes, rng: random.Random) -> bytes:
    obj = json.loads(zstandard.ZstdDecompressor().decompress(content, max_output_size=64 << 20))
    return zstandard.ZstdCompressor(level=3).compress(json.dumps(_mutate_json(obj, rng)).encode("utf-8"))


def _zstd_claiming(size: int, rng: random.Random) -> bytes:
    """A zstd frame whose header claims `size` bytes but holds few (or a real frame of many zeros)."""
    if rng.random() < 0.5:
        return zstandard.ZstdCompressor(level=1).compress(b"\x00" * min(size, 200 << 20))
    frame = bytearray(zstandard.ZstdCompressor(level=1, write_content_size=True).compress(b"abc"))
    # frame header descriptor: single segment with an 8-byte content size
    return bytes(frame[:4]) + bytes([0xE0]) + size.to_bytes(8, "little") + bytes(frame[6:])


def _mutate_stream_header(payload: bytes, rng: random.Random) -> bytes:
    """A block's payload with its stream table or the first bytes of one stream set to hostile values."""
    buf = bytearray(payload)
    if len(buf) < 4:
        return bytes(buf)
    (n,) = struct.unpack_from("<I", buf, 0)
    table_end = 4 + 8 * n
    r = rng.random()
    if r < 0.15:
        _put_int(buf, 0, rng)  # stream count
    elif r < 0.45 and n and table_end <= len(buf):
        entry = 4 + 8 * rng.randrange(n)
        field = rng.choice([(0, 2), (2, 1), (3, 1), (4, 4)])  # signal, kind, flags, length
        value = _rand_int(rng) if rng.random() < 0.6 else rng.randrange(8)
        buf[entry + field[0]:entry + sum(field)] = (value & ((1 << (8 * field[1])) - 1)).to_bytes(field[1], "little")
    elif n and table_end <= len(buf):
        pos = table_end
        lengths = [struct.unpack_from("<I", buf, 4 + 8 * j + 4)[0] for j in range(n)]
        j = rng.randrange(n)
        pos += sum(lengths[:j])
        span = max(1, min(lengths[j], 48))
        for _ in range(rng.choice([1, 1, 2, 3])):
            at = pos + rng.randrange(span)
            _put_int(buf, at, rng) if rng.random() < 0.6 else buf.__setitem__(
                slice(at, at + 1), bytes([rng.randrange(256)])) if at < len(buf) else None
    return bytes(buf)


def mutate_v3(data: bytes, rng: random.Random) -> tuple[bytes, bool]:
    """(a mutated file, whether its checksums were left stale: then it must be refused)."""
    preamble, sections = parse_v3(data)
    tags = [t for t, _ in sections]
    kind = rng.choices(["raw", "truncate", "json", "edfh", "zstd", "block", "stream", "index", "structure",
                        "trailer", "preamble"], [12, 3, 16, 8, 4, 8, 24, 8, 8, 3, 2])[0]
    if kind == "raw":
        mutated = _flip_bytes(data, rng)
        return mutated, mutated != data
    if kind == "truncate":
        cut = rng.randrange(len(data))
        out = data[:cut] + (data[-32:] if rng.random() < 0.5 else b"")
        return out, out != data  # cutting at the footer and putting the footer back gives the file itself
    if kind == "preamble":
        buf = bytearray(preamble)
        _put_int(buf, rng.choice([8, 10, 12]), rng)
        return build_v3(bytes(buf), sections), False
    if kind == "json":
        i = tags.index(rng.choice([b"HEAD", b"SUMM"]))
        sections[i][1] = _mutate_json_section(sections[i][1], rng)
    elif kind == "edfh":
        i = tags.index(b"EDFH")
        raw = zstandard.ZstdDecompressor().decompress(sections[i][1])
        sections[i][1] = zstandard.ZstdCompressor(level=3).compress(_mutate_edf_header_bytes(raw, rng))
    elif kind == "zstd":
        i = rng.choice([k for k, t in enumerate(tags) if t in (b"HEAD", b"EDFH", b"SUMM", b"TRLR")])
        sections[i][1] = _zstd_claiming(rng.choice([1 << 20, 1 << 27, 1 << 31, 1 << 40, (1 << 64) - 1]), rng)
    elif kind in ("block", "stream"):
        blocks = [k for k, t in enumerate(tags) if t == b"BLCK"]
        if not blocks:
            return _flip_bytes(data, rng), True
        i = rng.choice(blocks)
        content = bytearray(sections[i][1])
        if kind == "block":  # the block's own header (index, records, samples)
            _put_int(content, rng.choice([0, 4, 8, 12, 20]), rng)
        else:
            content = content[:24] + _mutate_stream_header(bytes(content[24:]), rng)
        sections[i][1] = bytes(content)
    elif kind == "index":
        entries = _index_entries(sections)
        if entries:
            e = rng.choice(entries)
            field = rng.randrange(7)
            e[field] = _rand_int(rng) & ((1 << (64 if field in (0, 4, 6) else 32)) - 1) if rng.random() < 0.5 \
                else max(0, e[field] + rng.choice([-1, 1]))
            _set_index(sections, entries)
            return build_v3(preamble, sections, fix_index=field not in (0, 1, 6)), False
    elif kind == "structure":
        blocks = [k for k, t in enumerate(tags) if t == b"BLCK"]
        entries = _index_entries(sections)
        op = rng.choice(["duplicate", "drop", "swap", "reorder-index", "identity"])
        if op == "identity":
            sections.insert(len(sections) - 1, [b"IDNT", rng.choice([b"{}", b"x" * 100, b'{"kdf": "scrypt"}'])])
        elif blocks and op == "duplicate":
            k = rng.randrange(len(blocks))
            sections.insert(blocks[k] + 1, list(sections[blocks[k]]))
            entries.insert(k + 1, list(entries[k]))
        elif blocks and op == "drop":
            k = rng.randrange(len(blocks))
            del sections[blocks[k]]
            del entries[k]
        elif len(blocks) > 1 and op == "swap":
            a, b = rng.sample(range(len(blocks)), 2)
            sections[blocks[a]], sections[blocks[b]] = sections[blocks[b]], sections[blocks[a]]
            if rng.random() < 0.5:
                entries[a], entries[b] = entries[b], entries[a]
        elif len(entries) > 1:
            entries.reverse()
        _set_index(sections, entries)
    elif kind == "trailer":
        i = tags.index(b"TRLR")
        sections[i][1] = zstandard.ZstdCompressor(level=3).compress(os.urandom(rng.randrange(0, 600)))
    return build_v3(preamble, sections), False


def _edf_number_fields(raw: bytes) -> list[tuple[int, int]]:
    """(offset, width) of the EDF header's numeric fields: date, time, header size, reserved (EDF+),
    records, duration, signal count, and each signal's physical and digital range and samples per record."""
    fields = [(168, 8), (176, 8), (184, 8), (192, 44), (236, 8), (244, 8), (252, 4)]
    try:
        ns = int(raw[252:256])
    except ValueError:
        return fields
    if not 0 < ns < 1000 or len(raw) < 256 * (ns + 1):
        return fields
    widths = {"label": 16, "transducer": 80, "dimension": 8, "physical_min": 8, "physical_max": 8,
              "digital_min": 8, "digital_max": 8, "prefilter": 80, "samples_per_record": 8, "reserved": 32}
    pos = 256
    for name, width in widths.items():
        if name in ("physical_min", "physical_max", "digital_min", "digital_max", "samples_per_record"):
            fields += [(pos + i * width, width) for i in range(ns)]
        pos += width * ns
    return fields


def _mutate_edf_header_bytes(raw: bytes, rng: random.Random) -> bytes:
    buf = bytearray(raw)
    start, width = rng.choice(_edf_number_fields(raw))
    if rng.random() < 0.85:
        buf[start:start + width] = rng.choice(EDF_NUMBERS).ljust(width)[:width]
    else:
        buf[start + rng.randrange(width)] = rng.randrange(256)
    return bytes(buf)


def mutate_edf(data: bytes, rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.6:
        return _mutate_edf_header_bytes(data, rng)
    if r < 0.7:
        return data[:rng.randrange(len(data))]
    if r < 0.8:
        return data + os.urandom(rng.randrange(1, 3000))
    if r < 0.9:  # data bytes: annotation records and samples
        return _flip_bytes(data, rng, n=rng.choice([1, 8, 64]))
    header = int(data[184:192])
    return data[:header] if rng.random() < 0.5 else _mutate_edf_header_bytes(data[:header], rng)


# ---------------------------------------------------------------- targets

def _is_documented(e: BaseException) -> bool:
    from eegz.errors import EegzError
    return isinstance(e, EegzError)


def _site(e: BaseException) -> str:
    """Where an exception came from: the innermost frame in eegz (or the innermost one)."""
    frames = traceback.extract_tb(e.__traceback__)
    ours = [f for f in frames if "eegz" in f.filename and "benchmarks" not in f.filename] or frames
    f = ours[-1] if ours else None
    return f"{type(e).__name__} at {Path(f.filename).name}:{f.lineno}" if f else type(e).__name__


def run_eegz_case(data: bytes, must_refuse: bool, folder: Path) -> str:
    """'ok', 'refused' or a defect description."""
    from eegz import api
    path = folder / "case.eegz"
    path.write_bytes(data)
    try:
        api.info(path)
        api.decompress(path, folder / "case.edf", force=True, device="cpu")
    except Exception as e:  # noqa: BLE001 - the point is to see every kind
        return "refused" if _is_documented(e) else "defect: " + _site(e)
    return "defect: a stale checksum was accepted" if must_refuse else "ok"


def run_edf_case(data: bytes, mode: str, folder: Path) -> str:
    from eegz import api
    src, out = folder / "case.edf", folder / "case_out.eegz"
    src.write_bytes(data)
    options = {"mode": mode, "device": "cpu"}
    if mode == "near-lossless":
        options["max_error_lsb"] = 3
    if mode == "lossy":
        options["codebooks"] = 3
    try:
        api.compress(src, out, force=True, **options)
    except Exception as e:  # noqa: BLE001
        return "refused" if _is_documented(e) else "defect: " + _site(e)
    try:
        if mode == "lossless":
            api.decompress(out, folder / "back.edf", force=True)
            if (folder / "back.edf").read_bytes() != data:
                return "defect: lossless round trip differs"
        elif mode == "near-lossless":
            if not api.verify(out, src)["ok"]:
                return "defect: near-lossless bound broken"
        else:
            api.decompress(out, folder / "back.edf", force=True, device="cpu")
    except Exception as e:  # noqa: BLE001
        return "defect (decoding its own output): " + _site(e)
    return "ok"


# ---------------------------------------------------------------- seeds

def make_seeds(folder: Path, lossy: bool) -> dict[str, bytes]:
    """Small files of every mode and stream kind, coded from the small EDF fixture."""
    from eegz import api
    seeds = {}
    specs = [("lossless", {"mode": "lossless"}), ("near-lossless", {"mode": "near-lossless", "max_error_lsb": 2}),
             ("tokens", {"mode": "lossless", "with_tokens": True}),
             ("encrypted", {"mode": "lossless", "passphrase": b"fuzz"}),
             ("transform", {"mode": "transform", "bitrate": 200.0}),
             ("transform-quality", {"mode": "transform", "quality": 20.0, "band_envelope": False})] if not lossy else \
        [("lossy-sc", {"mode": "lossy", "codebooks": 3}),
         ("lossy-mc", {"mode": "lossy", "codebooks": 3, "model": "eegz-dac-mc-256hz-hop64"})]
    for name, options in specs:
        out = folder / f"seed-{name}.eegz"
        api.compress(SMALL_EDF, out, force=True, device="cpu", **options)
        seeds[name] = out.read_bytes()
    def line(signal, digital):  # stationary tones (spec 6.6, 8.5): a 50.3-Hz line in every EEG signal
        if signal.sample_rate > 110:
            wave = 40 * np.cos(2 * np.pi * 50.3 * np.arange(len(digital)) / signal.sample_rate)
            digital[:] = np.clip(digital + np.rint(wave), signal.digital_min, signal.digital_max)
    if lossy:
        seeds["lossy-tones"] = _altered_seed(folder, "lossy-tones", line, mode="lossy", codebooks=6)
        return seeds

    def flat(signal, digital):  # constant runs (spec 8.4): a flat second and a padded end
        rate = int(round(signal.sample_rate))
        digital[rate:2 * rate] = digital[rate]
        digital[-rate // 2:] = 0
    seeds["transform-runs"] = _altered_seed(folder, "transform-runs", flat, mode="transform")
    seeds["transform-tones"] = _altered_seed(folder, "transform-tones", line, mode="transform", quality=15.0)
    return seeds


def _altered_seed(folder: Path, name: str, alter, **options) -> bytes:
    """The small EDF fixture with alter(signal, digital) applied to each of its signals but annotations, coded."""
    from eegz import api
    from eegz.edf import read_edf, records_to_bytes
    rec = read_edf(SMALL_EDF)
    for signal, digital in zip(rec.header.signals, rec.digital):
        if not signal.is_annotation:
            alter(signal, digital)
    source, out = folder / f"{name}.edf", folder / f"seed-{name}.eegz"
    source.write_bytes(rec.header.raw + records_to_bytes(rec.header, rec.digital, rec.n_records))
    api.compress(source, out, force=True, device="cpu", **options)
    return out.read_bytes()


# ---------------------------------------------------------------- worker and watchdog

TARGETS = {  # target: (share of cases, needs torch)
    "eegz-exact": (0.62, False),
    "eegz-old": (0.06, False),
    "eegz-lossy": (0.08, True),
    "edf-lossless": (0.10, False),
    "edf-near-lossless": (0.06, False),
    "edf-transform": (0.04, False),
    "edf-lossy": (0.04, True),
}


def case(target: str, seeds: dict, seed: int, k: int) -> tuple[str, bytes, object]:
    """The k-th input of a target: (kind, bytes, extra), reproducible from (seed, k)."""
    rng = random.Random(f"{target}:{seed}:{k}")
    if target.startswith("edf-"):
        return "edf", mutate_edf(SMALL_EDF.read_bytes(), rng), target[4:]
    if target == "eegz-old":
        data = rng.choice(OLD_FIXTURES).read_bytes()
        mutated = _flip_bytes(data, rng)
        return "eegz", mutated, mutated != data
    name = rng.choice(sorted(seeds))
    mutated, must_refuse = mutate_v3(seeds[name], rng)
    return "eegz", mutated, must_refuse


def _cap_memory() -> None:
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (size + HEADROOM, resource.RLIM_INFINITY))


def nan_casts_are_errors() -> None:
    """A NaN that reaches an integer cast (a sample no rule chose) raises instead of warning."""
    warnings.filterwarnings("error", message="invalid value encountered in cast", category=RuntimeWarning)


def worker(target: str, seed: int, first: int, stop: int, progress, results) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    nan_casts_are_errors()
    import torch  # noqa: F401 - loaded before the cap so that its libraries count as warm-up
    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="eegz-fuzz-"))
    seeds = make_seeds(folder, lossy=TARGETS[target][1] and target.startswith("eegz"))
    for k in range(3):  # warm-up (model load, thread pools) before the memory cap
        kind, data, extra = case(target, seeds, seed + 1_000_000, k)
        (run_eegz_case if kind == "eegz" else run_edf_case)(data, extra, folder)
    _cap_memory()
    for k in range(first, stop):
        progress[0], progress[1] = k, time.time()
        kind, data, extra = case(target, seeds, seed, k)
        t0 = time.perf_counter()
        try:
            verdict = (run_eegz_case if kind == "eegz" else run_edf_case)(data, extra, folder)
        except MemoryError:
            verdict = "defect: MemoryError (allocation beyond the headroom)"
        results.put((k, verdict, time.perf_counter() - t0))
    results.put(None)


def run_target(target: str, seed: int, n: int, log) -> dict:
    """Run n cases of a target under the watchdog; returns counts and defects."""
    ctx = mp.get_context("spawn")
    counts, defects, slow, k = Counter(), [], [], 0
    while k < n:
        progress = ctx.Array("d", [k, time.time() + 600])  # case being run, its start (warm-up allowed)
        results = ctx.Queue()
        proc = ctx.Process(target=worker, args=(target, seed, k, n, progress, results), daemon=True)
        proc.start()
        while True:
            try:
                item = results.get(timeout=0.5)
            except Exception:  # noqa: BLE001 - queue.Empty
                item = "wait"
            if item is None:
                k = n
                break
            if item != "wait":
                index, verdict, seconds = item
                counts[verdict.split(":")[0]] += 1
                slow = sorted(slow + [(round(seconds, 3), index)], reverse=True)[:5]
                if verdict.startswith("defect"):
                    defects.append({"target": target, "seed": seed, "case": index, "defect": verdict})
                k = index + 1
                if (k % 500) == 0:
                    log(f"{target}: {k}/{n} {dict(counts)}")
                continue
            if not proc.is_alive():
                defects.append({"target": target, "seed": seed, "case": int(progress[0]),
                                "defect": f"worker died (exit {proc.exitcode})"})
                counts["defect"] += 1
                k = int(progress[0]) + 1
                break
            if time.time() - progress[1] > TIME_LIMIT_S:
                proc.kill()
                defects.append({"target": target, "seed": seed, "case": int(progress[0]),
                                "defect": f"hang: over {TIME_LIMIT_S:.0f} s"})
                counts["defect"] += 1
                k = int(progress[0]) + 1
                break
        proc.join(5)
    return {"cases": n, "counts": dict(counts), "slowest_s": slow[0][0] if slow else 0.0, "slowest_cases": slow,
            "defects": defects}


def fuzz(total: int, seed: int, log=lambda s: None, targets=None) -> dict:
    targets = targets or list(TARGETS)
    share = sum(TARGETS[t][0] for t in targets)
    return {t: run_target(t, seed, max(1, round(total * TARGETS[t][0] / share)), log) for t in targets}


def replay(target: str, seed: int, k: int) -> str:
    nan_casts_are_errors()
    folder = Path(tempfile.mkdtemp(prefix="eegz-replay-"))
    seeds = make_seeds(folder, lossy=TARGETS[target][1] and target.startswith("eegz"))
    kind, data, extra = case(target, seeds, seed, k)
    (folder / "input").write_bytes(data)
    print(f"input: {folder / 'input'}", file=sys.stderr)
    from eegz import api
    if kind == "eegz":
        api.info(folder / "input")
        api.decompress(folder / "input", folder / "out.edf", force=True, device="cpu")
        return "ok"
    return run_edf_case(data, extra, folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz"))
    parser.add_argument("--target", action="append", choices=sorted(TARGETS))
    parser.add_argument("--replay", nargs=3, metavar=("TARGET", "SEED", "K"))
    args = parser.parse_args()
    if args.replay:
        print(replay(args.replay[0], int(args.replay[1]), int(args.replay[2])))
        return
    t0 = time.time()
    result = fuzz(args.cases, args.seed, lambda s: print(s, file=sys.stderr, flush=True), args.target)
    seconds = time.time() - t0
    Path(args.out + ".json").write_text(json.dumps({"seed": args.seed, "seconds": round(seconds), "targets": result},
                                                   indent=1) + "\n")
    lines = [f"# Fuzzing (benchmarks/fuzz.py --cases {args.cases} --seed {args.seed})", "",
             f"{sum(r['cases'] for r in result.values())} inputs in {seconds / 60:.0f} min on this machine "
             f"({os.cpu_count()} cores, one worker; {os.environ.get('EEGZ_BENCH_NEIGHBOUR', 'other work beside it not noted')}). "
             f"A defect is an exception other than eegz's "
             f"documented errors, a case over {TIME_LIMIT_S:.0f} s, an allocation beyond {HEADROOM >> 30} GiB "
             "of headroom, or an oracle failure (see the script's docstring).", "",
             "| target | cases | ok | refused (documented error) | defects | slowest case (s) |", "|---|---|---|---|---|---|"]
    for t, r in result.items():
        c = r["counts"]
        lines.append(f"| {t} | {r['cases']} | {c.get('ok', 0)} | {c.get('refused', 0)} | {len(r['defects'])} | "
                     f"{r['slowest_s']} |")
    defects = [d for r in result.values() for d in r["defects"]]
    lines += ["", "Defects:" if defects else "No defects."]
    lines += [f"- {d['target']} case {d['case']}: {d['defect']}" for d in defects[:50]]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
