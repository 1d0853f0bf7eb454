"""The recode pipeline: a lossy file thinned to fewer codebooks without running the encoder.

Residual vector quantization picks codebook q from what codebooks 0..q-1 left, so the first N codebooks
of a stream coded with more are exactly what coding with N would have picked: recoding keeps them,
re-entropy-codes each token stream, and copies everything else (exact streams, annotations, the EDF
header, the summary, an encrypted identity) as it is. The result equals compressing at N codebooks.
"""
from __future__ import annotations

from . import __version__
from .container import NEURAL_TOKENS, Container, ContainerWriter, Stream, add_stream_sizes, pack_block, stream_sizes
from .errors import EegzError


def recode(container: Container, out, codebooks: int, model: str | None = None) -> tuple[dict, dict, int]:
    """Write `container` to `out` with the first `codebooks` codebooks of every token stream; returns
    (the new header and summary merged, bytes by stream kind, blocks)."""
    from .lossy import frame_of, hop_of
    from .tokens import pack_tokens, token_tables, unpack_tokens
    from .neural import read_token_counts
    meta = container.meta
    codec = meta.get("codec")
    if container.version < 3:
        raise EegzError(f"{container.name} is format {container.version}: recode reads format 3 files "
                        "(decompress and compress it again to update it)")
    if codec is None:
        raise EegzError(f"{container.name} holds no neural tokens to recode")
    if not 1 <= codebooks <= codec["n_codebooks"]:
        raise EegzError(f"{container.name} keeps {codec['n_codebooks']} codebooks: recode can keep 1 to "
                        f"{codec['n_codebooks']}, not {codebooks}")
    tables = token_tables(read_token_counts(model or codec["model"], codec["weights_sha256"]))
    rate, hop = codec["config"]["sample_rate"], hop_of(codec["config"])
    duration = meta["edf"]["record_duration"]
    head = {**container.head, "writer": f"eegz {__version__}", "codec": {**container.head["codec"], "n_codebooks": codebooks}}
    writer = ContainerWriter(out, head, container.edf_header)
    max_spr = max((c["samples_per_record"] for c in meta["channels"]), default=0)
    sizes = stream_sizes([])
    for k, entry in enumerate(container.blocks):
        frames = (frame_of(entry.first_record + entry.record_count, duration, rate, hop)
                  - frame_of(entry.first_record, duration, rate, hop))
        streams = []
        for s in container.read_block(k):
            if s.kind == NEURAL_TOKENS:
                t = unpack_tokens(s.data, tables, frames, codec["n_codebooks"], container.version,
                                  entry.record_count * duration)
                t = t._replace(codes=t.codes[:codebooks])  # the envelope stays: it is the input's, not the codes'
                s = Stream(s.signal, s.kind, pack_tokens(t, tables, container.version), s.flags)
            streams.append(s)
        writer.add_block(pack_block(streams), entry.first_record, entry.record_count, max_spr)
        add_stream_sizes(sizes, streams)
    summary = {key: value for key, value in container.summary.items() if key != "blocks"}
    writer.finish(summary, container.trailer, container.identity)
    merged = {**meta, "codec": head["codec"], "writer": head["writer"]}
    return merged, sizes, len(writer.blocks)

