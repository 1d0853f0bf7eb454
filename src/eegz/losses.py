"""Training losses for the EEG codec, beside the model they train (imports torch).

The waveform L1 dominates (clinicians read waveforms; with a spectrum-dominated loss the model learns
only the spectrum). The spectral terms keep what L1 alone smooths away: DAC's multi-scale mel loss, a
multi-resolution STFT magnitude loss (linear and log) whose longest window resolves 0.25 Hz, so a
narrow line that the decoder invents costs as much as a missing rhythm, and the relative line-length
error, which keeps the amount of fast activity and sharp transients, and a one-sided spectral-excess
term that charges power the decoder invents, and a line loss on each source's running mean spectrum
(narrow lines the decoder adds).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
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


class RunningLineLoss:
    """Narrow lines the reconstruction invents, measured as metrics.line_ratio_psd measures them: on each
    source's running mean spectrum (Hann periodograms of the training windows, averaged with a decay per
    step), each bin's prominence over its neighbours in y over the same in x (at least 1), where y holds more
    power, from 2 Hz to 0.95 x the recordings' own Nyquist frequency; counted above `margin`, summed over the
    bins (a line is a few bins: a mean would drown it) and averaged over the batch's sources. The gradient
    flows through this batch's share of the running mean. One batch's periodograms are too noisy to see a
    2x line (their log is biased, too), and a batch-mean over sources lets a mains line real in one dataset
    hide the one the decoder adds to another; a few hundred windows of one source show it."""

    def __init__(self, rate: float, decay: float = 0.9, margin: float = 0.1):
        self.rate, self.decay, self.margin = rate, decay, margin
        self.means: dict = {}  # source: (running mean periodogram of y, of x), detached

    def __call__(self, y: torch.Tensor, x: torch.Tensor, sources: list, tops: list[float]) -> torch.Tensor:
        """y, x: (batch, 1, samples); sources[i], tops[i]: row i's source and its highest frequency (Hz)."""
        y, x = y.reshape(-1, y.shape[-1]), x.reshape(-1, x.shape[-1])
        window = torch.hann_window(x.shape[-1], device=x.device)
        py_rows = torch.fft.rfft(y * window).abs().pow(2)
        px_rows = torch.fft.rfft(x * window).abs().pow(2).detach()
        keys = sorted(set(sources), key=str)
        total = y.new_zeros(())
        for key in keys:
            rows = torch.tensor([i for i, s in enumerate(sources) if s == key], device=x.device)
            py, px = py_rows[rows].mean(0), px_rows[rows].mean(0)
            if key in self.means:
                old_y, old_x = self.means[key]
                py, px = self.decay * old_y + (1 - self.decay) * py, self.decay * old_x + (1 - self.decay) * px
            if self.decay:  # decay 0: each batch's group of windows of a key stands alone (keys per channel)
                self.means[key] = (py.detach(), px)
            d = torch.log(_prominence(py + 1e-12)) - torch.log(_prominence(px + 1e-12).clamp_min(1.0))
            first = int(2.0 * x.shape[-1] / self.rate)
            last = int(0.95 * max(tops[i] for i, s in enumerate(sources) if s == key) * x.shape[-1] / self.rate) + 1
            excess = torch.relu(d - self.margin) * (py > px)
            total = total + excess[first:last].sum()
        return total / max(len(keys), 1)


def image_pairs(n: int, rate: float, decoder_rates: list[int], hop: int) -> np.ndarray:
    """(source bin, image bin, mirrored) of every upsampling image the decoder can make in an n-sample
    window: an upsampling layer whose input runs at R Hz repeats its input's spectrum around each multiple
    of R, so content at f (below R/2) appears at m·R + f and, mirrored, at m·R - f. Images closer than
    2 Hz to their source or below 2 Hz are left out (no window can tell them apart)."""
    df, pairs = rate / n, set()
    stage_rate = rate / hop
    for factor in decoder_rates:
        for i in range(1, int(stage_rate / 2 / df) + 1):
            f = i * df
            for m in range(1, int((rate / 2 + stage_rate) / stage_rate) + 1):
                for mirrored in (False, True):
                    g = m * stage_rate + (-f if mirrored else f)
                    if 2.0 <= g < rate / 2 and abs(g - f) > 2.0:
                        pairs.add((i, int(round(g / df)), mirrored))
        stage_rate *= factor
    return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 3)


class ImageLoss:
    """Upsampling images the decoder leaves: each layer's copies of its input's spectrum around multiples
    of its rate (metrics would read an alpha rhythm at 7 Hz mirrored to 57 Hz as an invented line).

    An image is a copy: at the image bin g, the error y - x holds a part proportional to the window's own
    content at the source bin f (its conjugate when mirrored), with the same factor in every window, since
    every window starts on the frame grid. Per pair of bins, the factor is estimated over the windows
    (running sums, decay per step, as RunningLineLoss) and the image's power is taken relative to the
    original's power at g; pairs above `margin` count (in log), summed. The EEG's own content at g is not coherent
    with that at f, so it averages out instead of counting as an image (a periodogram cannot tell them
    apart in one window). Bins above 0.95 x a recording's own Nyquist frequency do not count."""

    def __init__(self, rate: float, decoder_rates: list[int], hop: int, decay: float = 0.9, margin: float = 0.1):
        self.rate, self.decoder_rates, self.hop = rate, list(decoder_rates), hop
        self.decay, self.margin = decay, margin
        self.length, self.pairs = 0, None  # the window length the pairs (tensors) are for
        self.sums = None  # running means: cross term, power of x at the source, of x and of the error at the image
        self.weights = (0.0, 0.0)  # running sums of the steps' weights and of their squares (effective count)

    def __call__(self, y: torch.Tensor, x: torch.Tensor, tops: list[float]) -> torch.Tensor:
        y, x = y.reshape(-1, y.shape[-1]), x.reshape(-1, x.shape[-1]).detach()
        n = x.shape[-1]
        if n != self.length:  # a new window length: new pairs, and the running sums start again
            p = torch.from_numpy(image_pairs(n, self.rate, self.decoder_rates, self.hop)).to(x.device)
            self.length, self.pairs = n, (p[:, 0], p[:, 1], p[:, 2].bool())
            self.sums, self.weights = None, (0.0, 0.0)
        i, j, mirrored = self.pairs
        window = torch.hann_window(n, device=x.device, dtype=x.dtype)
        spectrum_x, spectrum_e = torch.fft.rfft(x * window), torch.fft.rfft((y - x) * window)
        image_hz = j.to(x.dtype) * self.rate / n
        keep = (image_hz[None, :] < 0.95 * torch.tensor(tops, dtype=x.dtype, device=x.device)[:, None]).to(x.dtype)
        rows = keep.sum(0).clamp_min(1.0)
        source = spectrum_x[:, i]
        reference = torch.where(mirrored[None, :], source, source.conj())
        batch = [(keep * spectrum_e[:, j] * reference).sum(0) / rows, (keep * source.abs() ** 2).sum(0) / rows,
                 (keep * spectrum_x[:, j].abs() ** 2).sum(0) / rows, (keep * spectrum_e[:, j].abs() ** 2).sum(0) / rows]
        d = self.decay if self.sums is not None else 0.0
        cross, at_source, at_image, error = (d * old + (1 - d) * new for old, new in
                                             zip(self.sums or [0.0] * 4, batch))
        self.sums = [cross.detach(), at_source, at_image, error.detach()]
        w1, w2 = self.weights
        self.weights = (d * w1 + (1 - d), d * d * w2 + (1 - d) ** 2)
        windows = rows * self.weights[0] ** 2 / self.weights[1]  # effective number of windows in the means
        # an error that holds no image still correlates by chance: |cross|^2 is then exponential with mean
        # at_source * error / windows; five times the mean is passed by chance in 0.7 % of the pairs
        chance = 5.0 * at_source * error.detach() / windows
        ratio = torch.relu(cross.abs() ** 2 - chance) / (at_source * at_image).clamp_min(1e-20)
        # in log, as the line measure reads it (a bin's power over the original's: 1 + ratio); the log keeps a
        # bin where the original holds almost nothing from outweighing all others
        return torch.relu(torch.log1p(ratio) - math.log1p(self.margin)).sum()


def line_length_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean relative error of each window's line length (sum of |first differences|)."""
    ly = (y[..., 1:] - y[..., :-1]).abs().sum(-1)
    lx = (x[..., 1:] - x[..., :-1]).abs().sum(-1)
    return ((ly - lx).abs() / lx.clamp_min(1e-6)).mean()
