"""A new DAC-SC model that starts as a frame quantizer (`eegz train --frame-start`).

k-means residual quantizers of raw 64-sample frames, with no network at all, code held-out EEG better than the
trained codec at the same bits (benchmarks/results/rvq_reference.md: 15.7 % PRDN at 6 stages of 8-dimensional
codes on eegmat, the shipped model 20.3 %). So a model can start from that quantizer instead of from random
weights: DAC's own layers set so that the encoder writes each hop's samples into the first `hop` latent channels
and the decoder reads them back (strided convolutions that pick taps, residual units whose last convolution is
zero, Snake activations near the identity), and each quantizer stage fitted to the residual it is given: input
projection onto the residual's 8 principal components, codebook by k-means there (codes chosen by distance),
output projection by least squares. The picking taps are not balanced (spec 6.2), so such a model uses DAC's
upsampling. Measured (README, training_ablation.md FS0-FS4): the start codes the waveform far better than the
trained default, its white error floods the bands where EEG is quiet, and fine-tuning with the default's losses
undid it within 500 steps.
"""
from __future__ import annotations

import numpy as np

from .errors import ModelError

SNAKE_ALPHA = 1e-3  # Snake x + sin²(αx)/α ≈ x + αx²: within 0.1 % of linear at full scale (0.01: 1.2 % PRDN)


def start_as_frame_quantizer(model, windows: np.ndarray, seed: int = 0, batch: int = 64) -> list[float]:
    """Set a new `model` (dac.model.DAC, DAC's upsampling, Euclidean codes) to pass frames through unchanged and
    fit its quantizer on `windows` (n x samples, normalized as training feeds them). Returns the latent power
    left after each stage, as relookup.switch_to_distance_lookup does."""
    import torch
    from .relookup import encode_windows, refit_output_projections
    with torch.no_grad():
        try:
            _pass_frames_through_encoder(model.encoder)
            _pass_frames_through_decoder(model.decoder)
        except IndexError:  # a layer has fewer channels than the samples it would carry
            raise ModelError("--frame-start needs every layer as wide as the samples it carries: a latent and "
                             "a decoder_dim of at least the hop, and each decoder block at least what remains of "
                             "it") from None
    latent = encode_windows(model, windows, batch)  # the encoder is set: one pass serves both walks
    _fit_principal_stages(model, latent, seed)
    return refit_output_projections(model, latent)


def _pass_frames_through_encoder(encoder) -> None:
    """Encoder channel c at step t holds sample t·H + c, H the hop so far: each strided convolution of stride s
    moves input channel c of step t·s + j to output channel j·H + c."""
    first, *blocks, snake, last = encoder.block
    _pick(first, lambda w: w.__setitem__((0, 0, first.padding[0]), 1.0))
    hop = 1
    for block in blocks:
        *units, block_snake, conv = block.block
        _identity_units(units)
        _near_identity(block_snake)
        stride, pad = conv.stride[0], conv.padding[0]
        _pick(conv, lambda w: [w.__setitem__((j * hop + c, c, j + pad), 1.0) for j in range(stride) for c in range(hop)])
        hop *= stride
    _near_identity(snake)
    _pick(last, lambda w: [w.__setitem__((c, c, last.padding[0]), 1.0) for c in range(hop)])


def _pass_frames_through_decoder(decoder) -> None:
    """The encoder's mapping undone: each transposed convolution of stride s moves input channel j·H + c of step t
    to output channel c of step t·s + j, H the hop that remains after it."""
    first, *blocks, snake, last, _tanh = decoder.model
    hop = int(np.prod([block.block[1].stride[0] for block in blocks]))
    _pick(first, lambda w: [w.__setitem__((c, c, first.padding[0]), 1.0) for c in range(hop)])
    for block in blocks:
        block_snake, conv, *units = block.block
        _near_identity(block_snake)
        _identity_units(units)
        stride, pad = conv.stride[0], conv.padding[0]
        hop //= stride
        _pick(conv, lambda w: [w.__setitem__((j * hop + c, c, j + pad), 1.0) for j in range(stride) for c in range(hop)])
    _near_identity(snake)
    _pick(last, lambda w: w.__setitem__((0, 0, last.padding[0]), 1.0))


def _pick(conv, place) -> None:
    """Set a weight-normed convolution to the taps `place` puts into a zero weight, no bias."""
    import torch
    from .relookup import set_weight_normed
    weight = torch.zeros_like(conv.weight_v)
    place(weight)
    set_weight_normed(conv, weight, torch.zeros_like(conv.bias))


def _identity_units(units) -> None:
    """DAC's residual units return x + branch(x): the branch's last (1x1) convolution at gain 0 makes them the
    identity, with the branch's gradient still flowing into that gain."""
    for unit in units:
        unit.block[-1].weight_g.zero_()
        unit.block[-1].bias.zero_()


def _near_identity(snake) -> None:
    snake.alpha.fill_(SNAKE_ALPHA)


def _fit_principal_stages(model, latent, seed: int) -> None:
    """Stage by stage: input projection onto the residual's principal components, codebook by k-means there."""
    import torch
    from .neural import euclidean_codes_class
    from .relookup import KMEANS_ITERATIONS, kmeans, set_weight_normed, stage_by_stage
    generator = torch.Generator(next(model.parameters()).device).manual_seed(seed)

    def fit(stage, residual):
        rows = residual.transpose(1, 2).reshape(-1, residual.shape[1])
        _, _, vt = torch.linalg.svd(rows - rows.mean(0), full_matrices=False)
        basis = vt[:stage.codebook.weight.shape[1]]
        set_weight_normed(stage.in_proj, basis[:, :, None], torch.zeros(len(basis)))
        set_weight_normed(stage.out_proj, basis.T[:, :, None], torch.zeros(basis.shape[1]))
        stage.__class__ = euclidean_codes_class()
        stage.codebook.weight.copy_(kmeans(rows @ basis.T, stage.codebook.weight.shape[0], KMEANS_ITERATIONS, generator))
        return stage.out_proj(stage.decode_latents(stage.in_proj(residual))[0])
    stage_by_stage(model, latent, fit)
