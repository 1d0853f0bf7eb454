"""DAC-MC, the multi-channel variant: per-channel DAC tokens, decoded with cross-channel attention.

Each channel is still encoded alone by DAC's encoder and quantizer, so the token streams are per
channel and exactly those of the single-channel model it was fine-tuned from. On decode, the quantized
latents of all of a block's channels are mixed frame by frame with self-attention across channels, and
each channel is then decoded with its own learned style vector added to its latent. The style vector is
chosen by electrode name (10-10 system); the container stores each channel's index, so decoding never
depends on how labels are parsed. The mixing starts as an exact identity (zero output projection, zero
style vectors): an untrained DAC-MC decodes exactly like the DAC-SC it came from.

This module imports torch; only the neural path imports it.
"""
from __future__ import annotations

import re

import torch
from torch import nn

UNKNOWN_STYLE = 0  # style index for channels whose electrode the model does not know
_OLD_TO_NEW = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}  # 10-20 names renamed in the 10-10 system
_PREFIX = re.compile(r"^(EEG|EE)\s+", re.IGNORECASE)
_REFERENCE = re.compile(r"[-_/](REF|LE|AR|AVG|A1|A2|M1|M2)$", re.IGNORECASE)


def electrode_name(label: str) -> str:
    """'EEG Fp1-REF', 'Fp1.', 'FP1' -> 'FP1'; 'T3' -> 'T7'. Bipolar or unknown labels come back cleaned."""
    name = _PREFIX.sub("", label.strip()).strip(". ")
    name = _REFERENCE.sub("", name).upper()
    return _OLD_TO_NEW.get(name, name)


def style_index(label: str, electrodes: tuple[str, ...]) -> int:
    name = electrode_name(label)
    return electrodes.index(name) + 1 if name in electrodes else UNKNOWN_STYLE


class ChannelMixing(nn.Module):
    """Self-attention across channels at each frame, plus one learned style vector per electrode.

    The number of codebooks n is known on decode, and what mixing can add differs with it (much at 3
    codebooks, little at 9), so the attention sees a learned vector for n and its output is scaled by a
    learned gain for n."""

    def __init__(self, latent_dim: int, n_styles: int, heads: int, max_codebooks: int = 32):
        super().__init__()
        self.norm = nn.LayerNorm(latent_dim)
        self.attention = nn.MultiheadAttention(latent_dim, heads, batch_first=True)
        self.style = nn.Embedding(n_styles, latent_dim)
        self.rate = nn.Embedding(max_codebooks + 1, latent_dim)
        self.gain = nn.Embedding(max_codebooks + 1, 1)
        for p in (self.attention.out_proj.weight, self.attention.out_proj.bias, self.style.weight, self.rate.weight):
            nn.init.zeros_(p)  # identity at the start: DAC-MC begins exactly as the DAC-SC it extends
        nn.init.ones_(self.gain.weight)

    def forward(self, z: torch.Tensor, styles: torch.Tensor, n_codebooks: int, missing: torch.Tensor | None = None):
        """z (batch, channels, latent, frames) decoded from n_codebooks codebooks; styles (batch, channels);
        missing (batch, channels, frames), True where a channel has no frame (it is then left out of the
        other channels' attention)."""
        batch, channels, dim, frames = z.shape
        h = z + self.style(styles)[..., None]
        n = torch.tensor([n_codebooks], device=z.device)
        q = self.norm((h + self.rate(n)[0][:, None]).permute(0, 3, 1, 2).reshape(batch * frames, channels, dim))
        mask = None if missing is None else missing.permute(0, 2, 1).reshape(batch * frames, channels)
        mixed, _ = self.attention(q, q, q, key_padding_mask=mask, need_weights=False)
        return h + self.gain(n)[0, 0] * mixed.reshape(batch, frames, channels, dim).permute(0, 2, 3, 1)
