"""Formats 1 and 2: neural token streams (spec appendix A.3), decoding only."""
from __future__ import annotations

import struct

import numpy as np
from ..container import unzstd

from ..errors import FormatError
from .entropy import counts_model, unpack_bits

_TOKENS_HEAD = struct.Struct("<ffB")  # offset, scale (float32), flags
_ZSTD = 1  # flag: the packed codes are zstd-compressed
_ANS = 2  # flag: u32 n_frames, then rANS-coded codes with the model's per-codebook usage tables
_MODELS: dict = {}


def _token_model(token_counts: np.ndarray, q: int):
    key = (id(token_counts), q)
    if key not in _MODELS:
        _MODELS[key] = (token_counts, counts_model(np.asarray(token_counts[q], np.int64) + 1))
    return _MODELS[key][1]


def unpack_tokens_v1(data: bytes, bits: int, n_codebooks: int, token_counts, n_frames: int):
    """(codes, offset, scale) of a version 1/2 token stream that must hold n_frames frames."""
    try:
        offset, scale, flags = _TOKENS_HEAD.unpack_from(data, 0)
        body = data[_TOKENS_HEAD.size:]
        if flags & _ANS:
            if token_counts is None:
                raise FormatError("token stream needs the model's token tables")
            (frames,) = struct.unpack_from("<I", body, 0)
            if frames != n_frames or n_codebooks > len(token_counts):
                raise FormatError("damaged token stream (frame count)")
            import constriction
            coder = constriction.stream.stack.AnsCoder(np.frombuffer(body[4:], "<u4").astype(np.uint32))
            rows = [coder.decode(_token_model(token_counts, q), frames) for q in range(n_codebooks)]
            codes = np.stack(rows).astype(np.uint16)
        else:
            if flags & _ZSTD:
                body = unzstd(body, bits * n_codebooks * n_frames // 8 + 8, "token stream")
            codes = unpack_bits(body, bits, n_codebooks * n_frames).reshape(n_codebooks, n_frames).astype(np.uint16)
    except FormatError:
        raise
    except Exception:  # any failure of an old stream's parser means the stream is damaged
        raise FormatError("damaged token stream") from None
    return codes, offset, scale
