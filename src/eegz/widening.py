"""A wider decoder that starts out decoding exactly as the trained one it comes from (`eegz train --decoder-dim`).

DAC's decoder halves its channel count at each upsampling block, from decoder_dim down. Widening gives every
layer more channels: the trained weights keep their places, the new channels get a fresh initialization, and
every trained channel reads the new ones with weight zero. The output is then the same, sample for sample,
until training moves those zeros, so fine-tuning starts from the trained model's quality instead of from
scratch. DAC's weight norm divides by a per-row norm: Conv1d's rows are its output channels, ConvTranspose1d's
its input channels; a trained row keeps its norm because its new entries are zero.
"""
from __future__ import annotations

from dataclasses import replace

from .errors import EegzError
from .neural import ModelConfig, build_dac


def widen_decoder(model, config: ModelConfig, decoder_dim: int):
    """(a DAC like `model` whose decoder has decoder_dim channels, its config); encoder and quantizer are
    `model`'s own modules. The new channels' initial weights come from torch's random state."""
    import torch
    from torch import nn

    steps = 2 ** len(config.decoder_rates)
    if decoder_dim < config.decoder_dim or decoder_dim % steps:
        raise EegzError(f"--decoder-dim {decoder_dim}: a wider decoder needs at least the model's "
                        f"{config.decoder_dim} channels and a multiple of {steps}")
    wide_config = replace(config, decoder_dim=decoder_dim)
    wide = build_dac(wide_config)
    wide.encoder, wide.quantizer = model.encoder, model.quantizer
    trained = dict(model.decoder.named_modules())
    with torch.no_grad():
        for name, layer in wide.decoder.named_modules():
            old = trained[name]
            if isinstance(layer, (nn.Conv1d, nn.ConvTranspose1d)):
                _embed_convolution(layer, old, transposed=isinstance(layer, nn.ConvTranspose1d))
            elif hasattr(layer, "alpha"):  # Snake1d: one alpha a channel
                layer.alpha[:, :old.alpha.shape[1]] = old.alpha
    return wide.to(next(model.parameters()).device), wide_config


def _embed_convolution(layer, old, transposed: bool) -> None:
    """Put a trained weight-normed convolution into the corner of a wider one; the trained rows read the new
    columns with zero. A new ConvTranspose1d row (a new input) writes no trained output either, and its norm is
    taken from what is left of it."""
    rows, cols = old.weight_v.shape[:2]
    v, g = layer.weight_v, layer.weight_g
    v[:rows] = 0.0
    v[:rows, :cols] = old.weight_v
    g[:rows] = old.weight_g
    if transposed:
        v[rows:, :cols] = 0.0
        g[rows:] = v[rows:].flatten(1).norm(dim=1).view(-1, 1, 1)
    layer.bias[:old.bias.shape[0]] = old.bias
