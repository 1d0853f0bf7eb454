"""A trained model switched to codes chosen by distance (`eegz train --from-model M --code-lookup euclidean`).

A model trained with DAC's cosine lookup keeps codebooks whose vectors mean something only as directions:
looked up by distance as they are, they code no better (measured on the shipped model, 20.5 % PRDN at 6
codebooks against 20.3). So each stage's codebook is refitted by k-means to what that stage is given, the
projected residual of the stages before it on training windows, stage by stage, and fine-tuning starts from
there. The encoder, the projections and the decoder keep their trained weights.

refit_output_projections goes one step further for experiments (benchmarks/refit_projections.py): each stage's
output projection fitted so that the stages refine, which the decoder then has to learn to decode.
"""
from __future__ import annotations

import numpy as np

CHUNK = 65_536  # rows scored against a codebook at once: bounds the score matrix to 256 MB at 1024 codes
KMEANS_ITERATIONS = 20  # Lloyd's iterations a stage's codebook is fitted with (here and in framestart)


def kmeans(rows, k: int, iterations: int, generator, assign=None):
    """k centres of `rows` (n x d, n >= k) by Lloyd's iterations from k rows drawn at random; a centre that no row
    chose is drawn again from the rows. assign(rows, centres) gives each row's centre (default: the nearest by
    distance)."""
    import torch
    from .neural import distance_scores
    assign = assign or (lambda r, c: distance_scores(r, c).argmax(1))
    centres = rows[torch.randperm(len(rows), generator=generator)[:k]].clone()
    for _ in range(iterations):
        index = torch.cat([assign(rows[s:s + CHUNK], centres) for s in range(0, len(rows), CHUNK)])
        sums = torch.zeros_like(centres).index_add_(0, index, rows)
        counts = torch.bincount(index, minlength=k).to(rows.dtype)
        redrawn = rows[torch.randint(len(rows), (k,), generator=generator)]
        centres = torch.where((counts == 0)[:, None], redrawn, sums / counts.clamp(min=1)[:, None])
    return centres


def encode_windows(model, windows: np.ndarray, batch: int = 64):
    """The encoder's output for `windows` (n x samples, normalized as training feeds them), in batches: the latent
    that the functions below fit the quantizer to (the encoder does not change there, so one pass serves several)."""
    import torch
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model.encoder(torch.from_numpy(windows[s:s + batch])[:, None].to(device))
                          for s in range(0, len(windows), batch)])


def switch_to_distance_lookup(model, latent, iterations: int = KMEANS_ITERATIONS, seed: int = 0) -> list[float]:
    """Give every quantizer stage of `model` (a cosine-lookup DAC) the Euclidean lookup and a codebook refitted
    by k-means on `latent` (encode_windows of training windows). Returns, after each stage, the power of the
    latent left to code relative to the encoder's output (what later stages still have to do)."""
    import torch
    from .neural import euclidean_codes_class
    generator = torch.Generator(next(model.parameters()).device).manual_seed(seed)

    def refit(stage, residual):
        stage.__class__ = euclidean_codes_class()
        projected = stage.in_proj(residual)
        rows = projected.transpose(1, 2).reshape(-1, projected.shape[1])
        stage.codebook.weight.copy_(kmeans(rows, stage.codebook.weight.shape[0], iterations, generator))
        return stage.out_proj(stage.decode_latents(projected)[0])
    return stage_by_stage(model, latent, refit)


def refit_output_projections(model, latent) -> list[float]:
    """Refit each stage's output projection by least squares onto the residual that stage is given, stage by
    stage, so that every stage removes what it can of what is left (DAC trains out_proj only through the decoder,
    and in a trained model the quantized sum moves away from the encoder's output as stages add: latent power
    left 0.87 after one stage of the shipped model switched, 1.67 after nine). The codebooks and input
    projections keep their weights, so every code stays as chosen; the decoder has not seen such sums. Returns
    the latent power left after each stage, as switch_to_distance_lookup does."""
    import torch

    def refit(stage, residual):
        quantized = stage.decode_latents(stage.in_proj(residual))[0]  # batch x code dim x frames
        inputs = quantized.transpose(1, 2).reshape(-1, quantized.shape[1])
        inputs = torch.cat([inputs, torch.ones(len(inputs), 1, device=inputs.device)], 1)  # the bias's column
        targets = residual.transpose(1, 2).reshape(-1, residual.shape[1])
        solution = torch.linalg.lstsq(inputs.double(), targets.double()).solution.to(inputs.dtype)
        set_weight_normed(stage.out_proj, solution[:-1].T[:, :, None], solution[-1])
        return stage.out_proj(quantized)
    return stage_by_stage(model, latent, refit)


def stage_by_stage(model, latent, refit) -> list[float]:
    """Walk the quantizer's stages in order from the encoder's output `latent`: refit(stage, residual) changes the
    stage and returns what it now removes from the residual. Returns the latent power left after each stage."""
    import torch
    left = []
    with torch.no_grad():
        residual, power = latent, (latent ** 2).sum()
        for stage in model.quantizer.quantizers:
            residual = residual - refit(stage, residual)
            left.append(float((residual ** 2).sum() / power))
    return left


def set_weight_normed(conv, weight, bias=None) -> None:
    """Set a weight-normed convolution (DAC's WNConv1d / WNConvTranspose1d) to `weight` (its full shape) and
    `bias`: each slice's direction and gain. A slice that is all zero keeps its direction at gain 0 (a zero
    direction would divide by zero), so training can still grow it."""
    import torch
    gain = weight.flatten(1).norm(dim=1).view_as(conv.weight_g)
    conv.weight_v.copy_(torch.where(gain > 0, weight, conv.weight_v))
    conv.weight_g.copy_(gain)
    if bias is not None:
        conv.bias.copy_(bias)
