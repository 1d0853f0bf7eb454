"""Residual streams (spec 5.3) as the lossy codecs store side values in them: a coder byte (the family the
values fit best + 4 × the index of the context start) and the coder's words. Transform streams code their
coefficients and side values so (spec 8); token streams their time profile (spec 6.8)."""
from __future__ import annotations

import numpy as np

from . import _core

STARTS = (0, 16, 256, 4096)  # the residual coder's context starts a stream may name
CODERS = 4 * len(STARTS)  # coder bytes a stream may hold: family (4) × start


def encoded(values: np.ndarray, every_start: bool = True) -> tuple[int, bytes]:
    """(coder byte, words): the values as a residual stream of the family that codes them best, from the
    context start that gives the fewest words (or from 0 while a caller searches a step: the final stream is
    then never larger)."""
    values = np.ascontiguousarray(values, np.int64)
    family = int(np.argmin(_core.residual_costs(values))) if len(values) else 0
    starts = enumerate(STARTS if every_start else STARTS[:1])
    return min(((family + 4 * j, _core.encode_residuals(values, family, s0)) for j, s0 in starts), key=lambda t: len(t[1]))


def decoded(words: bytes, count: int, coder: int) -> np.ndarray:
    """`count` values (int64) from a residual stream with this coder byte (< CODERS); ValueError where the
    words are damaged."""
    return np.frombuffer(_core.decode_residuals(words, count, coder % 4, STARTS[coder // 4]), np.int64)
