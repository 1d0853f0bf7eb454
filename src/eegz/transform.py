"""Transform coding of EEG channels (mode `transform`, spec 8): a classical codec that spends each block's
bits where the block's spectrum has its power, as audio codecs do.

The EEG channels of a block that share a rate are normalized as lossy mode normalizes them (median, 16
robust standard deviations) and turned into their principal components (spec 8.1: a common reference and
volume conduction make EEG channels largely redundant, and a weak component costs almost nothing). Each
component is cut into windows of about WINDOW_SECONDS, and each window's DCT-II (orthonormal) quantized
with one step for the whole block. The quantized coefficients of each window up to its last significant one
are coded, window after window, with the exact layer's adaptive residual coder (spec 5.3): EEG's power falls
with frequency, and the coder's context follows it, so the few low-frequency coefficients take the bits and
the long quiet tail costs nothing. The step is the finest that keeps the streams within --bitrate (or the
coarsest at which every channel's block meets --quality). Each window also carries its error at its two
edge samples, faded out by the decoder, so that windows coded apart meet without a click. What the step
zeroes above beta comes back as shaped noise from the band envelope (spec 6.4, with 8.2's bands and
filling), and 8.3's time profile keeps the block's fast activity where it was in time. Stretches of one
value (a writer's padding, an electrode off, a saturated amplifier) are stored exactly as runs (8.4), with the
original samples beside them, and bridged over in what is coded; narrow lines that hold still for the block
(mains, its harmonics and their aliases) are taken out first and stored as tones (8.5), which the quantizer
would drop and the envelope smear. Blocks decode on their own, so any time range decodes from the blocks it touches and nothing else.

Measured (benchmarks/results/baselines.md, lossy_transform.md, clinical_transform.md): at the bits of 6
codebooks the waveform error on held-out eegmat is 0.48x the DCT reference's and 0.46x the neural codec's,
and the detectors agree more often.
"""
from __future__ import annotations

import math
import struct
from typing import NamedTuple

import numpy as np

from . import envelope, residuals, tones
from .container import TRANSFORM_FORMAT_VERSION
from .dsp import part_edges
from .edf import Signal
from .errors import FormatError
from .lossy import block_normalization, meets_quality, seed_of
from .tokens import TOKEN_V18_BANDS
from .runs import NO_EDGES, as_gaps, checked, constant_runs, from_gaps, requantized, tones_outside
from .runs import edges as samples_beside_runs

# Measured at 250 bit/s: eegmat Subject14-17 mean PRDN without the envelope / Bonn 051-070's strongest
# invented line with it: one window per block (16 s; Bonn 23.6 s) 14.3 % / 1.71x (set D, 36 Hz), 8-s
# windows 14.5 % / 1.58x, 4-s 14.6 % / 1.59x, 2-s 14.9 % (a coefficient coded alone rings for its whole
# window: shorter windows invent shorter tones, but pay for more edges). Also tried: dropping a ±1 with
# no neighbour within 2 coefficients (line 1.52x, but PRDN +1 point with the envelope, whose noise then
# fills in for it); reconstructing ±1 at ±0.8 steps (line 1.34x, PRDN +1.7 points); noise filling in the
# DCT domain, only where coefficients are 0 (PRDN -0.4 points, but flat noise per band left steps at the
# band edges, lines up to 1.8x, and nothing took down what the edge patches leak into eegmat's empty
# 74-250 Hz: +30 dB there).
WINDOW_SECONDS = 8.0
MAX_WINDOWS = 255  # the header's u8
DEAD_ZONE = 0.15  # a coefficient rounds to ±1 from 0.65 steps on: PRDN 14.9 -> 14.4 % at 250 bit/s (0.3: 14.7)
CUTS = (1, 2)  # trailing coefficients below this magnitude are dropped: the encoder tries both, keeps the better
# Edge patches: each window's error at its first and last sample, in 1/16 of the step, faded out over 50 ms.
# Without them the independent errors of two windows meet in a step, whose click filled 70-250 Hz on
# eegmat with 2x its power (Subject17, 2-s windows: 0.5-Hz band error 1.0 -> 0.24; 1/4 of a step: 0.44;
# a 0.2-s fade: PRDN +0.9 points)
PATCH_STEPS = 16
PATCH_SECONDS = 0.05
# Format 10: each window edge also stores the original's slope there, less the patched window's (in 1/16 of
# the step a sample), and the decoder adds d t (1 - t/L)^2 over SLOPE_SECONDS. A truncated DCT window is flat
# at its edges: where the original is steep the value patch left a one-sample step inside a flat stretch,
# which a ripple detector reads as an event. Held-out eegmat Subject14-17 at 251 bit/s (metrics.ripple_errors):
# invented 216 -> 171, missed 39 -> 6 of 205, PRDN +0.03-0.15 points (10 ms: 218 / 7; 50 ms: 156 / 4 but PRDN
# +0.1-0.3).
SLOPE_SECONDS = 0.02
ENVELOPE_RULES = 9  # the band envelope this code writes (spec 8.2: 6.4 with finer bands, partial parts filled
# less; 8.3: the block's fast part shaped in time by its profile)
# Rotation (format 8): measured on eegmat Subject14 / 17 at 250 bit/s without the envelope, PRDN 10.8 / 14.1 %
# coding channels apart, 8.0 / 7.6 % coding the principal components of the block's 20 channels with one step.
# Entries in 1/64 (without the envelope, eegz's own coding): eegmat Subject16 / 17 at 250 bit/s 12.61 / 7.38 %
# (1/32: 12.57 / 7.46, 1/128: 12.67 / 7.44); eegmmidb S001R03's 64 channels at 60 / 100 / 250 bit/s 19.9 /
# 13.7 / 6.10 % (1/32: 19.4 / 13.8 / 6.29, 1/128: 23.3 / 13.9 / 6.09): a matrix of 4096 entries is bits too.
ROTATION_BITS = 6
MAX_ENTRY = 1 << 24  # a reader's bound on |entry| (spec 8.1)
# A matrix grows with the square of the channel count, the bits with the count: above this share of a block's
# bits, channels are coded apart. Rotating still paid where the matrix took 43 % (eegmmidb S001R03, 64 channels,
# 60 bit/s, entries in 1/128: PRDN 28.9 % rotated, 43.5 % apart; in 1/64: 25.2 %; 100 bit/s: 16.3 / 34.0 %;
# 250 bit/s: 7.6 / 18.4 %).
MAX_ROTATION_SHARE = 0.5
MAX_CONDITION = 4.0  # a rounded matrix farther from orthogonal would turn one component's error into many
# The time profile (spec 8.3, format 9) costs about PROFILE_BITS a value; a stream carries one where that is at
# most PROFILE_SHARE of its bits (at 250 bit/s, 2.4 %). At 60 bit/s on eegmmidb's 64 channels it took 6 bit/s
# a channel: PRDN 25.1 -> 28.6 %.
PROFILE_BITS, PROFILE_SHARE = 3.0, 0.05
PROFILE_FLAG = 0x80  # in the coder byte of a format-9 (or later) stream: a time profile follows the levels
# Constant runs (spec 8.4, format 10; runs.py): a stretch of one digital value of at least RUN_SECONDS is stored
# exactly and left out of what the transform codes (every eegmat file ends in 1-2 s of a writer's padding, every
# eegmmidb run in 0.5 s).
RUNS_FLAG = 0x40  # in the coder byte of a format-10 stream: a run count follows the header
TONES_FLAG = 0x20  # in the coder byte of a format-11 stream: a tone count follows (spec 8.5)
# A tone costs about TONE_BITS (8-10 bytes in the residual coder, its frequency index about 2^18); a stream at a
# bit rate carries at most as many as fit in TONE_SHARE of its bits (16-s blocks: none at 60 bit/s, 1 at 100
# and 138, 2 at 250). At 60 bit/s one a block took eegmat Subject15's PRDN from 45.6 to 48.0 %, eegmmidb
# S001R03's from 26.2 to 26.7 %.
TONE_BITS, TONE_SHARE = 72.0, 0.05
# Format 19: the token streams' format-18 changes that carry over. The envelope's bands are envelope.BANDS_V18 (spec
# 8.2: [64, 74) split at 70 Hz, where a clinical recorder's high-frequency filter sits, and 1-Hz bands from 52 to 58
# Hz), and each run also stores the original samples beside it, to which the decoder pins its own (8.4, runs.pinned).
# Held-out eegmat Subject14-17 (160 channels) at 267 bit/s: high gamma's power error over the recording, mean over
# channels 0.085 (format 11) -> 0.064 (the bands) -> 0.038 (and the edges), channels above 0.10 42 -> 31 -> 10 of
# 160; its 0.5-s 90th percentile 3.75 -> 3.12; PRDN 9.75 -> 9.81 %. At the neural codec's bits for 3 / 6 / 9
# codebooks (160 / 273 / 369 bit/s, two noise draws; benchmarks/results/channel_lines_transform_11_19.md): high
# gamma 0.134 / 0.083 / 0.066 -> 0.060 / 0.037 / 0.030, channels whose strongest invented line stands above 1.5x 39.0
# / 27.5 / 19.0 -> 40.0 / 23.0 / 16.0, PRDN +0.07-0.28 points (the 4 more levels a block). At 160 bit/s the worst
# channel reads 2.27x (1.94x), at 56.0 Hz: a DCT coefficient coded alone near 56 Hz (beside eegmat's notch its
# original holds a shoulder peak) keeps its 1-Hz band's power in one bin; 2-Hz bands from 52 to 58 Hz there gave
# 43-47 channels above 1.5x and the worst 1.92-2.09x, against 40-45 and 2.01-2.52x
TRANSFORM_V19 = 19
_HEAD = struct.Struct("<fffBBBI")  # offset, scale, step, windows, coder (family + 4 × start), bands, coefficients
_ROTATION_HEAD = struct.Struct("<BBH")  # bits, coder, members


def _run_values(runs: np.ndarray, offset: float, beside: np.ndarray | None = None) -> np.ndarray:
    """What the residual coder codes of the runs (spec 8.4): per run its gap from the previous run's end (the
    block's start for the first), its length less 1, its value less the stream's offset rounded; from format 19
    (`beside` given: runs.edges) then the original samples beside it less its value."""
    values = as_gaps(runs) - [0, 0, int(np.rint(offset))]
    return (values if beside is None else np.column_stack([values, beside])).reshape(-1)


def stream_bands(rate: float, version: int) -> tuple:
    """The band envelope's bands of a transform stream at a channel rate: 6.4's, from format 8 8.2's B_8, from
    format 19 format 18's B_18 (spec 8.2)."""
    return envelope.channel_bands(rate, TOKEN_V18_BANDS if version >= TRANSFORM_V19 else envelope_rules(version))


def run_width(version: int) -> int:
    """How many values a constant run takes in a transform stream (spec 8.4): 3, from format 19 5 (its edges)."""
    return 5 if version >= TRANSFORM_V19 else 3


def envelope_rules(version: int) -> int:
    """The band envelope's rules (envelope.apply's version) in a transform stream of this format version:
    6.4's as of format 6 (version 7), 8.2's (version 8), 8.2's with 8.3's time profile (version 9)."""
    return 9 if version >= 9 else 8 if version >= 8 else 6


def window_count(n: int, rate: float) -> int:
    """How many windows the encoder cuts a block of n samples into (a decoder reads it from the stream)."""
    return max(1, min(MAX_WINDOWS, n, round(n / (WINDOW_SECONDS * rate))))


# ---------------------------------------------------------------- encoding

def encode_block(digital: np.ndarray, signal: Signal, bitrate: float | None = None, quality: float | None = None,
                 band_envelope: bool = True, version: int = TRANSFORM_FORMAT_VERSION) -> bytes:
    """One channel-block's transform stream, coded on its own (no rotation)."""
    return encode_group([digital], [signal], bitrate, quality, band_envelope, rotate=False, version=version)[1][0]


def encode_group(digitals: list, signals: list, bitrate: float | None = None, quality: float | None = None,
                 band_envelope: bool = True, rotate: bool = True,
                 version: int = TRANSFORM_FORMAT_VERSION) -> tuple[bytes | None, list[bytes]]:
    """(rotation stream or None, one transform stream per channel) for a block's EEG channels of one rate:
    within `bitrate` bits per second per channel, or the coarsest step at which every channel's block meets
    `quality` (lossy.meets_quality). With rotate, the channels' normalized samples are first turned into
    their principal components (spec 8.1), which one step then codes: EEG channels share most of their
    signal, and a component that is not there costs nothing. Without (or where the rotation would not
    pay), each channel is coded on its own, within its own bits. `version`: the file's format version (10 or later),
    whose envelope bands and run layout the streams take."""
    n, rate = len(digitals[0]), signals[0].sample_rate
    found = [constant_runs(d, s) for d, s in zip(digitals, signals)]
    beside = [samples_beside_runs(d, r) if version >= TRANSFORM_V19 else None for d, r in zip(digitals, found)]
    most = tones.MAX_TONES if bitrate is None else int(TONE_SHARE * bitrate * n / rate / TONE_BITS)
    fitted = [tones_outside(d, r, rate, lambda x, known: _stationary_tones(x, known, rate, most))
              for d, r in zip(digitals, found)]
    tone_values = [values for values, _, _ in fitted]
    digitals = [rest for _, _, rest in fitted]
    norms = [block_normalization(d) for d in digitals]
    runs = [_run_values(r, o, e) for r, (o, _), e in zip(found, norms, beside)]
    z = np.array([(d - o) / s for d, (o, s) in zip(digitals, norms)])
    bands = stream_bands(rate, version)
    levels = [envelope.levels(row, rate, rate / 2, bands, ENVELOPE_RULES) if band_envelope else b"" for row in z]
    profiled = band_envelope and (bitrate is None or PROFILE_BITS * envelope.profile_count(n, rate)
                                  <= PROFILE_SHARE * bitrate * n / rate)
    profiles = [envelope.profile(row, rate) if profiled else np.zeros(0, np.int64) for row in z]
    matrix = principal_axes(z) if rotate and len(z) > 1 else None
    rotation = _rotation_stream([s.index for s in signals], matrix) if matrix is not None else b""
    if bitrate is not None and 8 * len(rotation) > MAX_ROTATION_SHARE * bitrate * len(z) * n / rate:
        matrix = None  # many channels at a low rate: the matrix would take the bits it saves
    extras = list(zip(runs, tone_values))
    if matrix is None:
        return None, [_coded_together(z[j:j + 1], norms[j:j + 1], levels[j:j + 1], profiles[j:j + 1], extras[j:j + 1],
                                      None, 0, rate, bitrate, quality, version)[0] for j in range(len(z))]
    return rotation, _coded_together(z, norms, levels, profiles, extras, matrix * 2.0 ** -ROTATION_BITS, len(rotation),
                                     rate, bitrate, quality, version)


def _stationary_tones(smooth: np.ndarray, known: np.ndarray, rate: float, most: int) -> tuple:
    """(the tone values a stream codes (spec 8.5), the tones' samples in digital units or None) of a block's
    samples with their constant runs bridged, with the amplitudes rounded as stored. Fitted where the samples
    are `known` (a run holds no tone); runs.tones_outside takes them out before the runs are bridged again and
    the block normalized, so that the transform, the envelope and the profile see the rest."""
    rows = tones.as_stored(smooth, rate, most, known)
    values = np.column_stack([np.diff(rows[:, 0], prepend=0), rows[:, 1:]]).reshape(-1)
    return values, tones.synthesized(rows, len(smooth)) if len(rows) else None


def _coded_together(z: np.ndarray, norms: list, levels: list, profiles: list, extras: list, scaled: np.ndarray | None,
                    side: int, rate: float, bitrate: float | None, quality: float | None, version: int) -> list[bytes]:
    """The streams of normalized channels z (rows) coded with one step: of z itself, or with a rotation
    (`scaled`, its float values; `side`: its stream's bytes), of the components scaled⁻¹ z. `extras`: each
    row's run values (spec 8.4) and tone values (8.5); `version`: the file's format version."""
    from scipy.fft import dct
    n, width, bands = z.shape[1], run_width(version), stream_bands(rate, version)
    levels, profiles = list(levels), list(profiles)  # what of its envelope pays, each channel keeps (below)
    y = np.linalg.solve(scaled, z) if scaled is not None else z
    edges = part_edges(n, window_count(n, rate))
    coefs = [[dct(row[a:b], norm="ortho") for a, b in zip(edges, edges[1:])] for row in y]
    ends = [_edge_rows(b - a) for a, b in zip(edges, edges[1:])]
    fades = [_fade(_patch_length(b - a, rate)) for a, b in zip(edges, edges[1:])]

    def quantized(step: float, cut: int) -> list[tuple[list, np.ndarray]]:
        """Per row: (quantized windows, edge patches) at this float32 step."""
        out = []
        for row, c in zip(y, coefs):
            q = [_quantized(v, step, cut) for v in c]
            out.append((q, _edge_patches(row, q, ends, fades, edges, step)))
        return out

    def coded(step: float, cut: int, final: bool = False) -> list[tuple[list, np.ndarray, bytes, int]]:
        """Per row: (quantized windows, edge patches, words, coder byte) at this float32 step."""
        return [(q, patches, *residuals.encoded(_sequence(q, patches, lv, pf, *ex), every_start=final)[::-1])
                for (q, patches), lv, pf, ex in zip(quantized(step, cut), levels, profiles, extras)]

    def streams(step: float, cut: int) -> list[bytes]:
        return [_HEAD.pack(o, s, step, len(edges) - 1, coder | (PROFILE_FLAG if len(pf) else 0)
                           | (RUNS_FLAG if len(ru) else 0) | (TONES_FLAG if len(tn) else 0), len(lv),
                           sum(len(v) for v in q))
                + b"".join(bytes([len(v) // per]) for v, per in ((ru, width), (tn, 3)) if len(v)) + words
                for (o, s), lv, pf, (ru, tn), (q, _, words, coder) in zip(norms, levels, profiles, extras,
                                                                           coded(step, cut, final=True))]

    def decoded(step: float, cut: int) -> np.ndarray:
        """The channels' normalized samples as a decoder rebuilds them before the band envelope."""
        return rotated(np.array([_patched(_inverse(q, edges, step), p, edges, step, rate)
                                 for q, p in quantized(step, cut)]), scaled)

    def keep_worthwhile_envelopes(step: float, cut: int) -> bool:
        """Each channel's envelope cut to what pays at this step; whether any changed."""
        before = list(levels)
        for j, (zr, ur, (_, scale)) in enumerate(zip(z, decoded(step, cut), norms)):
            if levels[j]:
                levels[j], profiles[j] = _worthwhile_envelope(zr, ur, levels[j], profiles[j], rate, scale, bands)
        return levels != before

    all_coefs = [v for c in coefs for v in c]
    if quality is not None:
        def meets(step):
            return all(meets_quality(zr, ur, quality, rate) for zr, ur in zip(z, decoded(step, 1)))
        step = _coarsest(meets, all_coefs)
        keep_worthwhile_envelopes(step, 1)
        return streams(step, 1)
    budget = bitrate * len(z) * n / rate / 8 - len(z) * _HEAD.size - side - sum(len(v) > 0 for ex in extras for v in ex)

    def finest(cut: int, near: float | None = None) -> float:
        return _finest(lambda step: sum(len(c[2]) for c in coded(step, cut)), budget, all_coefs, near)

    best = None
    for cut in CUTS:  # the step and cut that keep the budget with the least coefficient error
        step = finest(cut)
        error = sum(float(np.sum((v - _dequantized(_quantized(v, step, cut), len(v), step)) ** 2)) for v in all_coefs)
        if best is None or error < best[0]:
            best = (error, step, cut)
    _, step, cut = best
    if keep_worthwhile_envelopes(step, cut):  # the bits an envelope no longer takes go to the coefficients
        step = finest(cut, step)
    return streams(step, cut)


def _worthwhile_envelope(z: np.ndarray, u: np.ndarray, stored: bytes, profile: np.ndarray, rate: float,
                         scale: float, bands: tuple) -> tuple[bytes, np.ndarray]:
    """The band envelope and time profile a channel's stream carries (the writer's choice, spec 8.2). The
    envelope shares a band's power among its parts by a smooth shape: where the coder keeps the waveform, the
    input's own parts stand above and below that shape, and the envelope would flatten them (Bonn 051-054 of sets
    A, D and E at 1000 bit/s: PRDN 2.93 / 1.01 / 1.62 % with it, 0.36 / 0.14 / 0.36 % without). So a band whose
    coded 1-Hz parts already lie nearer the input's than the envelope would bring them, on average and at the
    worst part, gets level 0; then no envelope at all where that brings the spectrum from 30 Hz up nearer the
    input's. (The envelope's effect is estimated from its part budget, without its noise or time profile.)"""
    rounding = (1.0 / scale) ** 2 / 12.0
    part_band, (wanted, coded), (_, whole) = envelope.part_powers(np.stack([z, u]), stored, rate, rate / 2, bands,
                                                                 rounding, ENVELOPE_RULES)
    held = wanted > 0
    if not held.any():  # nothing from 30 Hz up to compare
        return stored, profile

    def errors(power: np.ndarray) -> np.ndarray:
        return np.abs(np.log(np.maximum(power[held], 1e-3 * wanted[held]) / wanted[held]))

    own, enveloped, band = errors(coded), errors(whole), part_band[held]
    kept = bytearray(stored)
    for b in np.unique(band):
        mine, theirs = own[band == b], enveloped[band == b]
        if np.mean(mine) < np.mean(theirs) and np.max(mine) <= np.max(theirs):
            kept[b] = 0
    kept = bytes(kept)
    none = (b"", np.zeros(0, np.int64))
    if not any(kept):
        return none
    left = enveloped
    if kept != stored:  # the bands left keep the envelope's budget under the levels that stay
        partly = coded.copy()
        on = np.isin(part_band, np.flatnonzero(np.frombuffer(kept, np.uint8)))
        partly[on] = envelope.part_powers(u, kept, rate, rate / 2, bands, rounding, ENVELOPE_RULES)[2]
        left = errors(partly)
    return none if np.mean(own) < np.mean(left) else (kept, profile)


def principal_axes(z: np.ndarray) -> np.ndarray | None:
    """The channels' principal axes (eigenvectors of their covariance, strongest first) as the integer
    matrix of spec 8.1 (entries in 1/2^ROTATION_BITS), or None where the rounded matrix would amplify the
    coding error (condition number above MAX_CONDITION) or the channels hold nothing."""
    cov = z @ z.T / z.shape[1]
    if not np.all(np.isfinite(cov)) or not np.any(cov):
        return None
    _, vectors = np.linalg.eigh(cov)
    vectors = vectors[:, ::-1]
    vectors *= np.where(vectors[np.abs(vectors).argmax(axis=0), np.arange(len(cov))] < 0, -1.0, 1.0)
    matrix = np.rint(vectors * 2.0 ** ROTATION_BITS).astype(np.int64)
    return matrix if np.linalg.cond(matrix.astype(np.float64)) <= MAX_CONDITION else None


def _rotation_stream(members: list[int], matrix: np.ndarray) -> bytes:
    """A rotation stream (spec 8.1): the precision, the coder, the members, the matrix row by row."""
    coder, words = residuals.encoded(matrix.reshape(-1))
    return _ROTATION_HEAD.pack(ROTATION_BITS, coder, len(members)) + struct.pack(f"<{len(members)}H", *members) + words


def rotated(y: np.ndarray, scaled: np.ndarray | None) -> np.ndarray:
    """u_r = sum over k of scaled[r, k] · y_k (the matrix in its float64 value), summed in k order (spec 8.1)."""
    if scaled is None:
        return y
    out = np.zeros_like(y)
    for k in range(len(y)):
        out += scaled[:, k:k + 1] * y[k]
    return out


def _edge_rows(m: int) -> np.ndarray:
    """The orthonormal DCT-III's rows for a window's first two and last two samples: (4, m) (t = 0, 1, m-2, m-1)."""
    k = np.arange(m)
    scale = np.where(k == 0, np.sqrt(1.0 / m), np.sqrt(2.0 / m))
    return np.stack([scale * np.cos(np.pi * k * (2 * t + 1) / (2 * m)) for t in (0, min(1, m - 1), max(m - 2, 0), m - 1)])


def _edge_patches(z: np.ndarray, q: list, ends: list, fades: list, edges: list, step: float) -> np.ndarray:
    """Each window's error at its first and last sample, in 1/16 of the step: the decoder takes it out with
    a short fade (_patched), so that windows and blocks, coded apart, meet without a step (a click that
    spreads over every band above the coded ones). Then (format 10) the error of its slope there once the
    value is patched: the original's first (last) difference less the patched window's, in 1/16 of the step.
    `fades`: each window's value fade (_patched's)."""
    out = np.empty(4 * len(q), np.int64)
    for j, (v, rows, fade, a, b) in enumerate(zip(q, ends, fades, edges, edges[1:])):
        y = rows[:, :len(v)] @ (v * step)  # samples 0, 1, m-2, m-1 of the window
        e = np.rint((z[[a, b - 1]] - y[[0, 3]]) * PATCH_STEPS / step)
        out[4 * j:4 * j + 2] = e
        if b - a < 2:
            out[4 * j + 2:4 * j + 4] = 0
            continue
        f0, f1 = np.pad(fade, (0, 2))[:2]  # the fade at the window's first two (and last two) samples
        patched = y + step / PATCH_STEPS * np.array([e[0] * f0, e[0] * f1, e[1] * f1, e[1] * f0])
        slopes = np.array([(z[a + 1] - z[a]) - (patched[1] - patched[0]), (z[b - 1] - z[b - 2]) - (patched[3] - patched[2])])
        out[4 * j + 2:4 * j + 4] = np.rint(slopes * PATCH_STEPS / step)
    return out


def _patch_length(m: int, rate: float) -> int:
    return min(round(PATCH_SECONDS * rate), m // 2)


def _slope_length(m: int, rate: float) -> int:
    return min(round(SLOPE_SECONDS * rate), m // 2)


def _patched(y: np.ndarray, patches: np.ndarray, edges: list, step: float, rate: float) -> np.ndarray:
    """y with each window's edge patches faded in: p · step / 16 · (1 + cos(π t / L)) / 2 at t samples from
    the edge, t < L = min(round(PATCH_SECONDS × rate), floor(window length / 2)); with four patches a window
    (format 10), then its slope patches: d · step / 16 · t (1 - t / L_s)² at t samples from the first sample
    (subtracted at t samples from the last), L_s = min(round(SLOPE_SECONDS × rate), floor(window length / 2))."""
    y = y.copy()
    per = len(patches) // max(len(edges) - 1, 1)
    for k, (a, b) in enumerate(zip(edges, edges[1:])):
        fade = _fade(_patch_length(b - a, rate))
        y[a:a + len(fade)] += patches[per * k] * (step / PATCH_STEPS) * fade
        y[b - len(fade):b] += patches[per * k + 1] * (step / PATCH_STEPS) * fade[::-1]
        if per == 4:
            bend = _bend(_slope_length(b - a, rate))
            y[a:a + len(bend)] += patches[per * k + 2] * (step / PATCH_STEPS) * bend
            y[b - len(bend):b] -= patches[per * k + 3] * (step / PATCH_STEPS) * bend[::-1]
    return y


def _bend(length: int) -> np.ndarray:
    """t (1 - t / L)² for t < L: slope 1 at t = 0, value and slope 0 at L."""
    t = np.arange(length, dtype=np.float64)
    return t * (1.0 - t / length) ** 2 if length > 0 else np.zeros(0)


def _fade(length: int) -> np.ndarray:
    return 0.5 * (1.0 + np.cos(np.pi * np.arange(length) / length)) if length > 0 else np.zeros(0)


def _quantized(c: np.ndarray, step: float, cut: int) -> np.ndarray:
    """The window's quantized coefficients up to its last one of magnitude >= cut. A coefficient rounds to
    ±1 only from 0.65 steps on (DEAD_ZONE): a ±1 costs bits that a value so near the middle rarely earns."""
    r = np.abs(c) / step
    q = (np.sign(c) * np.floor(r + 0.5 - DEAD_ZONE * (r < 1.5))).astype(np.int64)
    big = np.flatnonzero(np.abs(q) >= cut)
    return q[:big[-1] + 1] if len(big) else q[:0]


def _dequantized(q: np.ndarray, m: int, step: float) -> np.ndarray:
    out = np.zeros(m)
    out[:len(q)] = q * step
    return out


def _sequence(q: list, patches: np.ndarray, levels: bytes, time_profile: np.ndarray, runs: np.ndarray,
              tone_values: np.ndarray) -> np.ndarray:
    """What the residual coder codes (spec 8): each window's coefficient count, its edge patches (format 10:
    two values, then two slopes), the band envelope (the first level, then each level's change from the one
    before), its time profile (format 9, with the envelope), the windows' coefficients in order, the
    constant runs (format 10; from format 19 with their edges) and the stationary tones (format 11)."""
    envelope_part = np.diff(np.frombuffer(levels, np.uint8).astype(np.int64), prepend=0)
    parts = [np.array([len(v) for v in q], np.int64), patches, envelope_part, time_profile, *q, runs, tone_values]
    return np.ascontiguousarray(np.concatenate(parts), np.int64)


def _f32(v: float) -> float:
    return float(np.float32(v))


def _coarsest_step(coefs: list) -> float:
    """A step at which every coefficient quantizes to 0."""
    return _f32(max((float(np.max(np.abs(c))) for c in coefs if len(c)), default=1.0) * 4 + 1e-6)


def _finest(size, budget: float, coefs: list, near: float | None = None) -> float:
    """The finest float32 step whose size(step) (bytes, falling as the step grows) is within budget: regula
    falsi on log size against log step (nearly a line), to 1 % of the step. `near`: a step close to it (the
    bracket then grows from there by quarters)."""
    top = _coarsest_step(coefs)
    if budget <= 0:
        return top

    def f(step):
        return math.log(max(size(step), 1)) - math.log(budget)
    # the bracket grows by tenfolds from 1/100 of the coarsest step, where EEG's steps lie at 100-400 bit/s
    # (1/340 to 1/20 on eegmat): a third fewer sizes than a bracket over seven decades
    lo = hi = _f32(min(near, top) if near else top / 100)
    factor = 1.25 if near else 10.0
    f_lo = f_hi = f(lo)
    while f_lo <= 0 and lo > top * 1e-7:
        hi, f_hi, lo = lo, f_lo, _f32(lo / factor)
        f_lo = f(lo)
    if f_lo <= 0:
        return lo
    while f_hi > 0 and hi < top:
        lo, f_lo, hi = hi, f_hi, min(_f32(hi * factor), top)
        f_hi = f(hi)
    if f_hi > 0:
        return hi  # not even all zeros fit
    side = 0
    while hi / lo > 1.01:
        t = f_lo / (f_lo - f_hi)
        mid = _f32(math.exp(math.log(lo) + min(max(t, 0.05), 0.95) * (math.log(hi) - math.log(lo))))
        if not lo < mid < hi:
            break
        f_mid = f(mid)
        if f_mid > 0:
            lo, f_lo = mid, f_mid
            f_hi, side = (f_hi / 2, -1) if side == -1 else (f_hi, -1)
        else:
            hi, f_hi = mid, f_mid
            f_lo, side = (f_lo / 2, 1) if side == 1 else (f_lo, 1)
    return hi


def _coarsest(meets, coefs: list) -> float:
    """The coarsest float32 step for which meets(step) holds (bisection on the log step)."""
    lo, hi = _f32(_coarsest_step(coefs) * 1e-7), _coarsest_step(coefs)  # lo: meets (or as fine as it gets)
    if meets(hi):
        return hi
    while hi / lo > 1.01:
        mid = _f32(math.sqrt(lo * hi))
        lo, hi = (mid, hi) if meets(mid) else (lo, mid)
    return lo


def _inverse(q: list, edges: list, step: float) -> np.ndarray:
    """The windows' samples from their quantized coefficients (orthonormal DCT-III)."""
    from scipy.fft import idct
    out = np.empty(edges[-1])
    for j, (a, b) in enumerate(zip(edges, edges[1:])):
        out[a:b] = idct(_dequantized(q[j], b - a, step), norm="ortho")  # windows are never empty: w <= n
    return out


# ---------------------------------------------------------------- decoding

def decode_block(data: bytes, signal: Signal, n: int, first_record: int,
                 version: int = TRANSFORM_FORMAT_VERSION) -> np.ndarray:
    """A channel-block's digital samples from its transform stream (spec 8): n samples from first_record on."""
    part = _synthesized(data, signal, n, version)
    return _finished(part, part.y, signal, first_record)


def decode_streams(streams: dict, rotations: list, signals: list, n_of, first_record: int,
                   version: int = TRANSFORM_FORMAT_VERSION) -> dict:
    """{signal index: digital samples} of a block's transform streams ({signal index: bytes}) and rotation
    streams ([(signal index, bytes)], spec 8.1) in a file of this format version; n_of(i): the block's
    sample count of signal i."""
    parts = {i: _synthesized(data, signals[i], n_of(i), version) for i, data in streams.items()}
    normalized = {i: part.y for i, part in parts.items()}
    rotated_once: set[int] = set()
    for signal, data in rotations:
        members, matrix = parse_rotation(data)
        if members[0] != signal or any(i not in parts for i in members) or rotated_once & set(members) \
                or len({len(normalized[i]) for i in members}) != 1:
            raise FormatError("damaged rotation stream (its members are not one rate's transform streams)")
        rotated_once |= set(members)
        u = rotated(np.array([normalized[i] for i in members]), matrix)
        normalized.update(zip(members, u))
    return {i: _finished(part, normalized[i], signals[i], first_record) for i, part in parts.items()}


def parse_rotation(data: bytes) -> tuple[list[int], np.ndarray]:
    """(member signal indices, the matrix's float64 values) of a rotation stream, checked as spec 8.1 requires."""
    if len(data) < _ROTATION_HEAD.size:
        raise FormatError("damaged rotation stream (shorter than its header)")
    bits, coder, count = _ROTATION_HEAD.unpack_from(data, 0)
    body = _ROTATION_HEAD.size + 2 * count
    if not 1 <= bits <= 24 or coder >= residuals.CODERS or count < 2 or len(data) < body:
        raise FormatError("damaged rotation stream (precision, coder or members)")
    members = list(struct.unpack_from(f"<{count}H", data, _ROTATION_HEAD.size))
    if any(b <= a for a, b in zip(members, members[1:])):
        raise FormatError("damaged rotation stream (members not in ascending order)")
    try:
        values = residuals.decoded(data[body:], count * count, coder)
    except ValueError as e:
        raise FormatError(f"damaged rotation stream ({e})") from None
    matrix = values.reshape(count, count)
    if np.any(np.abs(matrix) > MAX_ENTRY):
        raise FormatError("damaged rotation stream (an entry out of range)")
    return members, matrix.astype(np.float64) * 2.0 ** -bits


class _Synthesized(NamedTuple):
    """A transform stream read up to its samples: what the envelope and the normalization still need."""
    offset: float
    scale: float
    levels: np.ndarray
    time_profile: np.ndarray | None  # spec 8.3 (format 9, where the stream carries one); else None
    bands: tuple  # the envelope's bands at the channel's rate, under the stream's rules
    rules: int
    y: np.ndarray  # the stream's own samples, before any rotation
    runs: np.ndarray  # spec 8.4's run records (format 10), written over the decoded samples
    run_edges: np.ndarray  # format 19: per run the original samples beside it less its value (runs.pinned)
    tones: np.ndarray  # spec 8.5's tones (format 11), rows (k, a, b), added to the decoded samples
    limited: bool  # format 11: the rail limiter (spec 8's last step)


def _synthesized(data: bytes, signal: Signal, n: int, version: int) -> _Synthesized:
    """A transform stream's header, envelope and samples (spec 8's synthesis), checked as spec 8 requires."""
    if len(data) < _HEAD.size:
        raise FormatError("damaged transform stream (shorter than its header)")
    offset, scale, step, w, coder, n_bands, total = _HEAD.unpack_from(data, 0)
    if not (math.isfinite(offset) and math.isfinite(scale) and math.isfinite(step) and scale > 0 and step > 0):
        raise FormatError("damaged transform stream (normalization or step out of range)")
    rules = envelope_rules(version)
    bands = stream_bands(signal.sample_rate, version)
    profiled = rules >= 9 and bool(coder & PROFILE_FLAG)
    if profiled:
        coder &= ~PROFILE_FLAG
    has_runs = version >= 10 and bool(coder & RUNS_FLAG)
    if has_runs:
        coder &= ~RUNS_FLAG
    n_runs = data[_HEAD.size] if has_runs and len(data) > _HEAD.size else 0
    if has_runs and not n_runs:
        raise FormatError("damaged transform stream (run count missing or 0)")
    has_tones = version >= 11 and bool(coder & TONES_FLAG)
    if has_tones:
        coder &= ~TONES_FLAG
    at = _HEAD.size + has_runs
    n_tones = data[at] if has_tones and len(data) > at else 0
    if has_tones and (not n_tones or n >= tones.MAX_SAMPLES):
        raise FormatError("damaged transform stream (tone count missing or 0, or tones in too long a block)")
    words = at + has_tones
    if not 1 <= w <= min(MAX_WINDOWS, n) or coder >= residuals.CODERS or n_bands not in (0, len(bands)) or total > n \
            or (profiled and not n_bands):
        raise FormatError("damaged transform stream (windows, coder, bands or coefficient count)")
    n_profile = envelope.profile_count(n, signal.sample_rate) if profiled else 0
    per = 4 if version >= 10 else 2  # edge patches a window (format 10: with slopes)
    head, width = (1 + per) * w + n_bands + n_profile, run_width(version)
    try:
        values = residuals.decoded(data[words:], head + total + width * n_runs + 3 * n_tones, coder)
    except ValueError as e:
        raise FormatError(f"damaged transform stream ({e})") from None
    counts, patches = values[:w], values[w:(1 + per) * w]
    levels = np.cumsum(values[(1 + per) * w:(1 + per) * w + n_bands])
    time_profile = values[(1 + per) * w + n_bands:head] if profiled else None
    runs, run_edges = _runs(values[head + total:head + total + width * n_runs], width, offset, signal, n)
    stationary = _tones(values[head + total + width * n_runs:], n)
    edges = part_edges(n, w)
    if np.any(counts < 0) or np.any(counts > np.diff(edges)) or counts.sum() != total \
            or np.any(levels < 0) or np.any(levels > 255) \
            or (time_profile is not None and np.any(np.abs(time_profile) > envelope.PROFILE_MAX)):
        raise FormatError("damaged transform stream (window counts or band envelope)")
    values = values[head:head + total]
    if np.any(np.abs(patches) > 1 << 40):
        raise FormatError("damaged transform stream (edge patch out of range)")
    y = _patched(_inverse(np.split(values, np.cumsum(counts)[:-1]), edges, step), patches, edges, step,
                 signal.sample_rate)
    return _Synthesized(offset, scale, levels, time_profile, bands, rules, y, runs, run_edges, stationary,
                        version >= 11)


def _runs(values: np.ndarray, width: int, offset: float, signal: Signal, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(the stream's constant runs, rows (start, length, value); from format 19 their edges, rows (before, after))
    from their coded values (_run_values, `width` a run), checked as spec 8.4 requires."""
    rows = values.reshape(-1, width)
    gaps, lengths, values = rows[:, :3].T
    if not len(gaps):
        return np.zeros((0, 3), np.int64), NO_EDGES
    if np.any(gaps < 0) or np.any(gaps > n) or np.any(lengths < 0) or np.any(lengths >= n) \
            or not abs(offset) < 2.0 ** 40:  # bounded first, so that the sums below cannot overflow
        raise FormatError("damaged transform stream (a constant run outside the block)")
    runs = from_gaps(gaps, lengths, values + int(np.rint(offset)))
    if not checked(runs, n, signal):
        raise FormatError("damaged transform stream (a constant run outside the block or the digital range)")
    if np.any(np.abs(rows[:, 3:]) > 1 << 40):
        raise FormatError("damaged transform stream (a constant run's edge out of range)")
    return runs, rows[:, 3:] if width > 3 else NO_EDGES


def _tones(values: np.ndarray, n: int) -> np.ndarray:
    """The stream's stationary tones, rows (k, a, b), from their coded values (frequency steps from the one
    before, amplitudes), checked as spec 8.5 requires."""
    steps, a, b = values.reshape(-1, 3).T
    if np.any(steps <= 0) or np.any(steps >= tones.FREQUENCY_STEPS * n // 2):  # bounded first: the sum cannot overflow
        raise FormatError("damaged transform stream (a tone's frequency out of range)")
    rows = np.column_stack([np.cumsum(steps), a, b])
    if not tones.in_range(rows, n):
        raise FormatError("damaged transform stream (a tone at or above the Nyquist frequency, or its amplitude out "
                          "of range)")
    return rows


def _finished(part: _Synthesized, y: np.ndarray, signal: Signal, first_record: int) -> np.ndarray:
    """The digital samples from a stream's normalized samples y (rotated where the block rotates them): the
    band envelope, then the stream's normalization undone."""
    offset, scale, levels = part.offset, part.scale, part.levels
    if not np.all(np.isfinite(y)):
        raise FormatError("damaged transform stream (coefficients out of range)")
    rate = signal.sample_rate
    if len(levels):  # noise filling and scaling, as lossy mode's (spec 6.4), in the block's digital units
        seed = seed_of(first_record, signal.index, scale)
        y = envelope.apply(y, bytes(levels.astype(np.uint8)), rate, rate / 2, seed, part.bands,
                           (1.0 / scale) ** 2 / 12.0, version=part.rules, time_profile=part.time_profile)
    samples = offset + scale * y
    if len(part.tones):  # spec 8.5, in digital units
        samples += tones.synthesized(part.tones, len(y))
    # format 19's pins beside the runs, format 11's rail limiter, then the constant runs of spec 8.4, exactly
    return requantized(samples, signal, part.runs, part.limited, part.run_edges)
