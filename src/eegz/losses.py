"""Training losses for the EEG codec, beside the model they train (imports torch).

The waveform L1 dominates (clinicians read waveforms; with a spectrum-dominated loss the model learns
only the spectrum). The spectral terms keep what L1 alone smooths away: DAC's multi-scale mel loss, a
multi-resolution STFT magnitude loss (linear and log) whose longest window resolves 0.25 Hz, so a
narrow line that the decoder invents costs as much as a missing rhythm, and the relative line-length
error, which keeps the amount of fast activity and sharp transients, and a one-sided spectral-excess
term that charges power the decoder invents (narrow lines above all).
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

STFT_WINDOWS = (32, 64, 128, 256, 512, 1024)
LOG_FLOOR = 1e-5  # magnitude floor of the log term: far below EEG's gamma band at the training scale


def make_mel_loss():
    """DAC's multi-scale mel loss, sized for 256 Hz EEG (the paper's 'spectrogram loss')."""
    from dac.nn.loss import MelSpectrogramLoss
    return MelSpectrogramLoss(n_mels=[5, 10, 20, 40], window_lengths=[32, 64, 128, 256], mel_fmin=[0.0] * 4,
                              mel_fmax=[None] * 4, mag_weight=0.0, log_weight=1.0, pow=1.0)


def mel_loss(y: torch.Tensor, x: torch.Tensor, rate: int, loss=None) -> torch.Tensor:
    """DAC's mel loss of y against x, both (batch, 1, samples)."""
    from audiotools import AudioSignal
    loss = loss or make_mel_loss()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # audiotools warns on every short STFT
        return loss(AudioSignal(y, rate), AudioSignal(x, rate))


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence plus log-magnitude L1, averaged over STFT window lengths (hop = window / 4)."""

    def __init__(self, windows: tuple[int, ...] = STFT_WINDOWS):
        super().__init__()
        self.windows = windows
        for w in windows:
            self.register_buffer(f"hann{w}", torch.hann_window(w), persistent=False)

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        y, x = y.reshape(-1, y.shape[-1]), x.reshape(-1, x.shape[-1])
        total = y.new_zeros(())
        used = 0
        for w in self.windows:
            if w > x.shape[-1]:
                continue
            window = getattr(self, f"hann{w}")
            sy = torch.stft(y, w, w // 4, window=window, center=False, return_complex=True).abs()
            sx = torch.stft(x, w, w // 4, window=window, center=False, return_complex=True).abs()
            convergence = torch.linalg.norm(sy - sx) / torch.linalg.norm(sx).clamp_min(1e-12)
            log = (torch.log(sy + LOG_FLOOR) - torch.log(sx + LOG_FLOOR)).abs().mean()
            total = total + convergence + log
            used += 1
        return total / max(used, 1)


def spectral_excess_loss(y: torch.Tensor, x: torch.Tensor, margin: float = 0.25) -> torch.Tensor:
    """Power the reconstruction invents: the batch's mean periodogram (Hann, the whole window) of y over
    x's, in log, counted above `margin` (the estimate's own noise with 32 windows) and averaged over
    frequencies. A spectral line that the decoder adds is exactly such excess; a missing rhythm is not."""
    y, x = y.reshape(-1, y.shape[-1]), x.reshape(-1, x.shape[-1])
    window = torch.hann_window(x.shape[-1], device=x.device)
    py = torch.fft.rfft(y * window).abs().pow(2).mean(0)
    px = torch.fft.rfft(x * window).abs().pow(2).mean(0)
    floor = 1e-6 * px.mean()
    return torch.relu(torch.log(py + floor) - torch.log(px + floor) - margin).mean()


LINE_NEAR, LINE_FAR = 3, 8  # a bin's neighbours, as in metrics.prominence


def _prominence(p: torch.Tensor) -> torch.Tensor:
    """Each bin's power over the mean power of the bins LINE_NEAR..LINE_FAR away on both sides (last axis)."""
    k = torch.zeros(2 * LINE_FAR + 1, dtype=p.dtype, device=p.device)
    k[:LINE_FAR - LINE_NEAR + 1] = 1.0
    k[LINE_FAR + LINE_NEAR:] = 1.0
    flat = p.reshape(-1, 1, p.shape[-1])
    near = torch.nn.functional.conv1d(flat, k.view(1, 1, -1), padding=LINE_FAR)
    count = torch.nn.functional.conv1d(torch.ones_like(flat[:1]), k.view(1, 1, -1), padding=LINE_FAR)
    return (flat / (near / count).clamp_min(1e-20)).reshape(p.shape)


def line_loss(y: torch.Tensor, x: torch.Tensor, rate: float, margin: float = 0.1) -> torch.Tensor:
    """Narrow lines the reconstruction invents: per window, the log of each bin's prominence over its
    neighbours (Hann periodogram) in y over the same in x (at least 1), averaged over the batch, so that a
    line the decoder adds in every window stands out of the periodograms' own noise; counted above `margin`
    from 2 Hz up and summed over the bins (a line is a few bins: a mean would drown it). Unlike a batch-mean
    spectrum, a real line in some windows cannot hide one invented in others."""
    y, x = y.reshape(-1, y.shape[-1]), x.reshape(-1, x.shape[-1])
    window = torch.hann_window(x.shape[-1], device=x.device)
    py = torch.fft.rfft(y * window).abs().pow(2) + 1e-12
    px = torch.fft.rfft(x * window).abs().pow(2) + 1e-12
    d = torch.log(_prominence(py)) - torch.log(_prominence(px).clamp_min(1.0))
    first = int(2.0 * x.shape[-1] / rate)
    return torch.relu(d.mean(0)[first:] - margin).sum()


def line_length_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean relative error of each window's line length (sum of |first differences|)."""
    ly = (y[..., 1:] - y[..., :-1]).abs().sum(-1)
    lx = (x[..., 1:] - x[..., :-1]).abs().sum(-1)
    return ((ly - lx).abs() / lx.clamp_min(1e-6)).mean()
