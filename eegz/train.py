"""Training and fine-tuning the EEG DAC on EDF files (`eegz train`).

Preprocessing follows the paper and is for training only: resample to the codec rate, 0.1 Hz high-pass,
clip to ±200 µV, scale to [-1, 1]. The loss is waveform-dominant (100 × L1 + 1 × DAC's multi-scale mel
loss + the VQ commitment/codebook losses): with DAC's mel-dominant audio recipe the model learns the
spectrum and not the waveform (see the design notes). Quantizer dropout lets one model serve 3 to 9
codebooks. An optional adversarial phase uses DAC's discriminator at reduced weight and switches itself
off when the discriminator loss diverges.
"""
from __future__ import annotations

import glob
import json
import math
import random
import re
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .channels import NEURAL, channel_role
from .dsp import microvolt_factor, resample
from .edf import EdfError, read_edf
from .metrics import prdn_windows
from .neural import ModelConfig, _load_cached, _quiet_imports, build_dac, load_state_into, save_model
from .progress import Progress

CLIP_UV = 200.0
SC_REFERENCE_L1 = 0.03  # DAC-MC with a frozen decoder: relative waveform loss scaled to DAC-SC's typical L1
MC_WARMUP_STEPS = 200  # DAC-MC fine-tunes a trained decoder: full-size first Adam steps would undo it


@dataclass
class TrainSettings:
    steps: int = 20000
    batch_size: int = 32
    window_seconds: float = 4.0
    lr: float = 3e-4
    lr_final: float | None = None  # cosine decay from lr (at the starting step) to this at the last step
    waveform_weight: float = 100.0
    mel_weight: float = 1.0
    commitment_weight: float = 0.25
    codebook_weight: float = 1.0
    quantizer_dropout: float = 0.5
    adversarial_steps: int = 0  # steps of the GAN phase at the end (0: none)
    adversarial_weight: float = 0.1
    eval_every: int = 500
    checkpoint_every: int = 500
    seed: int = 0
    threads: int = 0  # 0: torch's default


def subject_of(path: Path) -> str:
    """Whole-subject identity for the validation split (eegmat SubjectNN, eegmmidb SNNN, else the stem)."""
    m = re.search(r"(Subject\d+|S\d{3})", path.name)
    return m.group(1) if m else path.stem


def preprocess_channel(physical_uv: np.ndarray, rate: float, codec_rate: int) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt
    x = resample(physical_uv, rate, codec_rate)
    sos = butter(2, 0.1, btype="highpass", fs=codec_rate, output="sos")
    x = sosfiltfilt(sos, x - np.median(x))
    return (np.clip(x, -CLIP_UV, CLIP_UV) / CLIP_UV).astype(np.float32)


def eeg_channels(path: Path, codec_rate: int):
    """(label, sample rate, preprocessed signal) of each EEG channel of a file long enough to train on."""
    rec = read_edf(path)
    for sig, dig in zip(rec.header.signals, rec.digital):
        if channel_role(sig) != NEURAL or len(dig) < 4 * sig.sample_rate:
            continue
        uv = sig.to_physical(dig) * microvolt_factor(sig.physical_dimension)
        yield sig.label, sig.sample_rate, preprocess_channel(uv, sig.sample_rate, codec_rate)


def load_eeg(paths: list[Path], codec_rate: int) -> dict[str, list[np.ndarray]]:
    """Preprocessed EEG channels grouped by subject; files that cannot be read are skipped."""
    by_subject: dict[str, list[np.ndarray]] = {}
    for path in paths:
        try:
            by_subject.setdefault(subject_of(path), []).extend(x for _, _, x in eeg_channels(path, codec_rate))
        except EdfError:
            continue
    return by_subject


def load_recordings(paths: list[Path], codec_rate: int) -> dict[str, list[tuple[list[str], np.ndarray]]]:
    """Per subject, each recording's (channel labels, channels × samples) of its main-rate EEG channels."""
    by_subject: dict[str, list] = {}
    for path in paths:
        try:
            channels = list(eeg_channels(path, codec_rate))
        except EdfError:
            continue
        if not channels:
            continue
        rates = [rate for _, rate, _ in channels]
        main = max(set(rates), key=rates.count)
        kept = [(label, x) for label, rate, x in channels if rate == main]
        n = min(len(x) for _, x in kept)
        by_subject.setdefault(subject_of(path), []).append(([label for label, _ in kept],
                                                            np.stack([x[:n] for _, x in kept])))
    return by_subject


def split_subjects(subjects: list[str], val_fraction: float, val_subjects: tuple[str, ...] = ()):
    subjects = sorted(subjects)
    if val_subjects:
        val = [s for s in subjects if s in val_subjects]
    else:
        val = subjects[len(subjects) - max(1, round(len(subjects) * val_fraction)):]
    return [s for s in subjects if s not in val], val


def expand_inputs(inputs: list[str]) -> list[Path]:
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths += sorted(q for q in p.rglob("*") if q.suffix.lower() in (".edf", ".bdf"))
        elif any(ch in item for ch in "*?["):
            paths += sorted(Path(p) for p in glob.glob(item, recursive=True))
        else:
            paths.append(p)
    return paths


class WindowSampler:
    """Random fixed-length windows from a pool of channel signals, reproducible from a seed."""

    def __init__(self, signals: list[np.ndarray], length: int, seed: int):
        self.signals = [s for s in signals if len(s) >= length]
        self.weights = np.array([len(s) - length + 1 for s in self.signals], dtype=np.float64)
        self.weights /= self.weights.sum()
        self.length = length
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> np.ndarray:
        which = self.rng.choice(len(self.signals), size=n, p=self.weights)
        out = np.empty((n, self.length), np.float32)
        for row, k in enumerate(which):
            start = self.rng.integers(0, len(self.signals[k]) - self.length + 1)
            out[row] = self.signals[k][start:start + self.length]
        return out


def fixed_windows(signals: list[np.ndarray], length: int, per_signal: int = 4) -> np.ndarray:
    """Evenly spaced validation windows, the same at every evaluation."""
    rows = []
    for s in signals:
        if len(s) < length:
            continue
        for start in np.linspace(0, len(s) - length, per_signal).astype(int):
            rows.append(s[start:start + length])
    return np.stack(rows).astype(np.float32)


def token_usage(model, windows: np.ndarray, n_codebooks: int, batch: int = 64) -> np.ndarray:
    """How often each code of each codebook is chosen on these (training) windows: the token tables."""
    import torch
    counts = np.zeros((n_codebooks, model.codebook_size), np.int64)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(windows), batch):
            x = torch.from_numpy(windows[start:start + batch])[:, None]
            _, codes, *_ = model.quantizer(model.encoder(x), n_codebooks)
            for q in range(n_codebooks):
                counts[q] += np.bincount(codes[:, q].reshape(-1).numpy(), minlength=model.codebook_size)
    model.train(was_training)
    return counts


def add_token_tables(weights: Path, inputs: list[str], windows: int = 1024, seed: int = 1) -> str:
    """Recompute a trained model's token tables from EEG files and rewrite its .npz (new SHA-256)."""
    card = json.loads(Path(weights).with_suffix(".json").read_text())
    config = ModelConfig.from_json(card["config"])
    dac = build_dac(config)
    load_state_into(dac, Path(weights))
    data = load_eeg(expand_inputs(inputs), config.sample_rate)
    train_ids = card.get("training", {}).get("train_subjects") or list(data)
    window = int(4 * config.sample_rate) // config.hop * config.hop
    sampler = WindowSampler([s for k in train_ids if k in data for s in data[k]], window, seed)
    counts = token_usage(dac, sampler.batch(windows), config.n_codebooks)
    _load_cached.cache_clear()
    extra = {k: v for k, v in card.items() if k not in ("name", "config", "weights_sha256")}
    return save_model(dac, config, Path(weights), extra, counts)


def init_from_dac_checkpoint(path: Path, codec_rate: int):
    """Load an official-format DAC checkpoint (DAC.load) to fine-tune it on EEG: the paper's transfer."""
    _, DAC = _quiet_imports()
    model = DAC.load(str(path))
    model.sample_rate = codec_rate
    config = ModelConfig(
        encoder_dim=model.encoder_dim, encoder_rates=tuple(model.encoder_rates), latent_dim=model.latent_dim,
        decoder_dim=model.decoder_dim, decoder_rates=tuple(model.decoder_rates), n_codebooks=model.n_codebooks,
        codebook_size=model.codebook_size, codebook_dim=model.codebook_dim, sample_rate=codec_rate)
    return model, config


def make_mel_loss(codec_rate: int):
    from dac.nn.loss import MelSpectrogramLoss
    windows = [32, 64, 128, 256]
    return MelSpectrogramLoss(n_mels=[5, 10, 20, 40], window_lengths=windows, mel_fmin=[0.0] * 4,
                              mel_fmax=[None] * 4, mag_weight=0.0, log_weight=1.0, pow=1.0)


def _start_run(settings: TrainSettings, out_dir: Path):
    """Threads, seeds, a quiet log and the output folder; returns torch."""
    torch, _ = _quiet_imports()
    # audiotools warns on every short STFT and torch on weight_norm: noise, not news, in a training log
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return torch


def train(inputs: list[str], out_dir: Path, config: ModelConfig, settings: TrainSettings,
          init: Path | None = None, resume: bool = False, from_model: Path | None = None,
          val_fraction: float = 0.2,
          val_subjects: tuple[str, ...] = (), quiet: bool = False, log=print) -> dict:
    out_dir = Path(out_dir)
    torch = _start_run(settings, out_dir)
    from audiotools import AudioSignal

    data = load_eeg(expand_inputs(inputs), config.sample_rate)
    if len(data) < 2:
        raise EdfError("training needs EEG from at least two subjects (one for validation)")
    train_ids, val_ids = split_subjects(list(data), val_fraction, val_subjects)
    window = int(settings.window_seconds * config.sample_rate) // config.hop * config.hop
    sampler = WindowSampler([s for k in train_ids for s in data[k]], window, settings.seed)
    table_windows = WindowSampler(sampler.signals, window, settings.seed + 1).batch(512)
    val_x = fixed_windows([s for k in val_ids for s in data[k]], window)
    log(f"train subjects {train_ids}, validation subjects {val_ids}, {len(val_x)} validation windows")

    if init is not None:
        model, config = init_from_dac_checkpoint(init, config.sample_rate)
        model.quantizer.quantizer_dropout = settings.quantizer_dropout
    elif from_model is not None:  # continue from an eegz model (.npz + card), e.g. the shipped one
        config = ModelConfig.from_json(json.loads(Path(from_model).with_suffix(".json").read_text())["config"])
        model = build_dac(config, quantizer_dropout=settings.quantizer_dropout)
        load_state_into(model, Path(from_model))
    else:
        model = build_dac(config, quantizer_dropout=settings.quantizer_dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.8, 0.99))
    mel_loss = make_mel_loss(config.sample_rate)
    disc = disc_opt = None
    step, history = 0, []
    state_path = out_dir / "train_state.pt"
    if resume and state_path.exists():
        state = torch.load(state_path, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        for group in opt.param_groups:  # the learning rate asked for now wins over the saved one
            group["lr"] = settings.lr
        step, history = state["step"], json.loads(state["history"])
        sampler.rng = np.random.default_rng(settings.seed + step)
        log(f"resumed at step {step}")

    def evaluate() -> dict:
        model.eval()
        result = {}
        with torch.inference_mode():
            x = torch.from_numpy(val_x)[:, None]
            z = model.encoder(x)
            for nq in (3, 6, 9):
                if nq > config.n_codebooks:
                    continue
                zq, *_ = model.quantizer(z, nq)
                y = model.decoder(zq)[:, 0].numpy()
                result[f"prdn_{nq}"] = prdn_windows(val_x, y)
        model.train()
        return result

    adv_start = settings.steps - settings.adversarial_steps
    schedule = cosine_schedule(settings.lr, settings.lr_final, step, settings.steps)
    t0 = time.time()
    model.train()
    with Progress(settings.steps - step, "train", quiet=quiet) as bar:
        while step < settings.steps:
            x = torch.from_numpy(sampler.batch(settings.batch_size))[:, None]
            out = model(x)
            y = out["audio"][..., :window]
            wave = torch.nn.functional.l1_loss(y, x)
            mel = mel_loss(AudioSignal(y, config.sample_rate), AudioSignal(x, config.sample_rate))
            loss = (settings.waveform_weight * wave + settings.mel_weight * mel
                    + settings.commitment_weight * out["vq/commitment_loss"]
                    + settings.codebook_weight * out["vq/codebook_loss"])
            if step >= adv_start and settings.adversarial_steps:
                disc, disc_opt, gan = _adversarial_step(disc, disc_opt, x, y, config, settings, torch)
                if gan is None:  # diverged: the paper's schedule drops the GAN term from here on
                    settings.adversarial_steps = 0
                    log(f"step {step}: discriminator diverged, adversarial phase switched off")
                else:
                    loss = loss + settings.adversarial_weight * gan
            for group in opt.param_groups:
                group["lr"] = schedule(step)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1000.0)
            opt.step()
            step += 1
            bar.update(1, f"loss {loss.item():.3f} wave {wave.item():.4f} mel {mel.item():.3f}")
            if step % settings.eval_every == 0 or step == settings.steps:
                metrics = {"step": step, "seconds": round(time.time() - t0, 1), "wave_l1": wave.item(),
                           "mel": mel.item(), **evaluate()}
                history.append(metrics)
                log(json.dumps(metrics))
            if step % settings.checkpoint_every == 0 or step == settings.steps:
                card = {"training": {"inputs": inputs, "train_subjects": train_ids, "val_subjects": val_ids,
                                     "steps": step, "settings": settings.__dict__, "init": str(init) if init else None,
                                     "from_model": str(from_model) if from_model else None,
                                     "history": history}}
                save_model(model, config, out_dir / "model.npz", card,
                           token_usage(model, table_windows, config.n_codebooks))
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                            "history": json.dumps(history)}, state_path)
    return history[-1] if history else {}


class RecordingWindowSampler:
    """Random windows of `channels` randomly chosen channels of one recording, at one and the same time."""

    def __init__(self, recordings: list[tuple[list[int], np.ndarray]], length: int, channels: int, seed: int):
        self.recordings = [r for r in recordings if r[1].shape[0] >= channels and r[1].shape[1] >= length]
        self.weights = np.array([r[1].shape[1] - length + 1 for r in self.recordings], np.float64)
        self.weights /= self.weights.sum()
        self.length, self.channels = length, channels
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.empty((n, self.channels, self.length), np.float32)
        styles = np.empty((n, self.channels), np.int64)
        for row, k in enumerate(self.rng.choice(len(self.recordings), size=n, p=self.weights)):
            style, signals = self.recordings[k]
            pick = self.rng.choice(signals.shape[0], size=self.channels, replace=False)
            start = self.rng.integers(0, signals.shape[1] - self.length + 1)
            x[row] = signals[pick, start:start + self.length]
            styles[row] = np.asarray(style)[pick]
        return x, styles


def train_multichannel(inputs: list[str], out_dir: Path, from_model: Path, settings: TrainSettings,
                       channels: int = 16, train_decoder: bool = True, resume: bool = False,
                       val_fraction: float = 0.2,
                       val_subjects: tuple[str, ...] = (), quiet: bool = False, log=print) -> dict:
    """Fine-tune DAC-MC from a DAC-SC model: the encoder and codebooks stay frozen (so the tokens are the
    single-channel model's), the channel mixing, style vectors and (unless train_decoder is False) the
    decoder learn to decode all channels of a block together."""
    out_dir = Path(out_dir)
    torch = _start_run(settings, out_dir)
    from audiotools import AudioSignal
    from .multichannel import electrode_name, style_index
    from .neural import build_mixing

    sc_card = json.loads(Path(from_model).with_suffix(".json").read_text())
    sc_config = ModelConfig.from_json(sc_card["config"])
    data = load_recordings(expand_inputs(inputs), sc_config.sample_rate)
    if len(data) < 2:
        raise EdfError("training needs EEG from at least two subjects (one for validation)")
    train_ids, val_ids = split_subjects(list(data), val_fraction, val_subjects)
    electrodes = tuple(sorted({electrode_name(label) for k in train_ids for labels, _ in data[k] for label in labels}))
    config = replace(sc_config, variant="DAC-MC", electrodes=electrodes)
    indexed = {k: [([style_index(label, electrodes) for label in labels], x) for labels, x in recs]
               for k, recs in data.items()}
    window = int(settings.window_seconds * config.sample_rate) // config.hop * config.hop
    sampler = RecordingWindowSampler([r for k in train_ids for r in indexed[k]], window, channels, settings.seed)
    val_sets = [(torch.tensor(style)[None], torch.from_numpy(
                 np.stack([x[:, start:start + window] for start in np.linspace(0, x.shape[1] - window, 4).astype(int)])))
                for k in val_ids for style, x in indexed[k] if x.shape[1] >= window]
    log(f"train subjects {train_ids}, validation subjects {val_ids}, {len(electrodes)} electrodes, "
        f"{len(val_sets)} validation recordings")

    dac = build_dac(config)
    counts = load_state_into(dac, Path(from_model))
    mixing = build_mixing(config, dac)
    frozen = (dac.encoder, dac.quantizer) if train_decoder else (dac.encoder, dac.quantizer, dac.decoder)
    for module in frozen:
        module.requires_grad_(False)
    dac.encoder.eval()  # the quantizer in train mode would ignore the number of codebooks asked for
    dac.quantizer.eval()
    trainable = [p for p in list(dac.decoder.parameters()) + list(mixing.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=settings.lr, betas=(0.8, 0.99))
    mel_loss = make_mel_loss(config.sample_rate)
    step, history = 0, []
    state_path = out_dir / "train_state.pt"
    if resume and state_path.exists():
        state = torch.load(state_path, weights_only=True)
        dac.decoder.load_state_dict(state["decoder"])
        mixing.load_state_dict(state["mixing"])
        opt.load_state_dict(state["opt"])
        step, history = state["step"], json.loads(state["history"])
        sampler.rng = np.random.default_rng(settings.seed + step)
        log(f"resumed at step {step}")
    schedule = cosine_schedule(settings.lr, settings.lr_final, step, settings.steps, warmup=MC_WARMUP_STEPS)
    rng = np.random.default_rng(settings.seed + 7 + step)

    def quantized(x, n_q):
        """(batch, channels, latent, frames) latents of the frozen encoder and codebooks."""
        n, chans, length = x.shape
        z_q, *_ = dac.quantizer(dac.encoder(x.reshape(n * chans, 1, length)), n_q)
        return z_q.reshape(n, chans, *z_q.shape[1:])

    def decoded(z_q):
        """(batch × channels, 1, window) waveforms for (batch, channels, latent, frames) latents."""
        return dac.decoder(z_q.reshape(-1, *z_q.shape[2:]))[..., :window]

    def evaluate() -> dict:
        dac.decoder.eval()
        mixing.eval()
        result = {}
        with torch.inference_mode():
            for n_q in (3, 6, 9):
                ref, mc, sc = [], [], []
                for styles, x in val_sets:
                    z_q = quantized(x, n_q)
                    ref.append(x.reshape(-1, window).numpy())
                    mc.append(decoded(mixing(z_q, styles.expand(len(x), -1), n_q))[:, 0].numpy())
                    sc.append(decoded(z_q)[:, 0].numpy())
                result[f"prdn_{n_q}"] = prdn_windows(np.concatenate(ref), np.concatenate(mc))
                result[f"prdn_{n_q}_unmixed"] = prdn_windows(np.concatenate(ref), np.concatenate(sc))
        dac.decoder.train()
        mixing.train()
        return result

    batch = max(1, settings.batch_size // channels)
    t0 = time.time()
    if step == 0:
        history.append({"step": 0, **evaluate()})
        log(json.dumps(history[-1]))
    with Progress(settings.steps - step, "train DAC-MC", quiet=quiet) as bar:
        while step < settings.steps:
            x, styles = (torch.from_numpy(a) for a in sampler.batch(batch))
            n_q = int(rng.integers(3, config.n_codebooks + 1))
            with torch.no_grad():
                z_q = quantized(x, n_q)
            y = decoded(mixing(z_q, styles, n_q))
            target = x.reshape(-1, 1, window)
            wave = torch.nn.functional.l1_loss(y, target)
            if not train_decoder:  # relative to DAC-SC's own error at this many codebooks: every rate counts
                with torch.no_grad():
                    plain = torch.nn.functional.l1_loss(decoded(z_q), target)
                wave = wave / plain * SC_REFERENCE_L1
            mel = mel_loss(AudioSignal(y, config.sample_rate), AudioSignal(target, config.sample_rate))
            loss = settings.waveform_weight * wave + settings.mel_weight * mel
            for group in opt.param_groups:
                group["lr"] = schedule(step)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1000.0)
            opt.step()
            step += 1
            bar.update(1, f"loss {loss.item():.3f} wave {wave.item():.4f} mel {mel.item():.3f}")
            if step % settings.eval_every == 0 or step == settings.steps:
                history.append({"step": step, "seconds": round(time.time() - t0, 1), "wave_l1": wave.item(),
                                "mel": mel.item(), **evaluate()})
                log(json.dumps(history[-1]))
            if step % settings.checkpoint_every == 0 or step == settings.steps:
                card = {"training": {"inputs": inputs, "train_subjects": train_ids, "val_subjects": val_ids,
                                     "steps": step, "channels_per_window": channels, "settings": settings.__dict__,
                                     "from_model": str(from_model), "from_model_sha256": sc_card["weights_sha256"],
                                     "frozen": ["encoder", "quantizer"] + ([] if train_decoder else ["decoder"]),
                                     "history": history}}
                save_model(dac, config, out_dir / "model.npz", card, counts, mixing)
                torch.save({"decoder": dac.decoder.state_dict(), "mixing": mixing.state_dict(),
                            "opt": opt.state_dict(), "step": step, "history": json.dumps(history)}, state_path)
    return history[-1] if history else {}


def cosine_schedule(lr: float, lr_final: float | None, first_step: int, last_step: int, warmup: int = 0):
    """Learning rate per step: constant, or a half cosine from lr at first_step down to lr_final; a linear
    warm-up over the first `warmup` steps of the whole run."""
    span = last_step - first_step

    def rate(step: int) -> float:
        ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
        if lr_final is None or span <= 0:
            return lr * ramp
        return ramp * (lr_final + 0.5 * (lr - lr_final) * (1 + math.cos(math.pi * min(1.0, (step - first_step) / span))))
    return rate


def _adversarial_step(disc, disc_opt, x, y, config, settings, torch):
    """One discriminator update and the generator's adversarial loss; None when it has diverged."""
    from dac.model import Discriminator
    if disc is None:
        disc = Discriminator(rates=[], periods=[2, 3, 5, 7, 11], fft_sizes=[64, 128, 256],
                             sample_rate=config.sample_rate)
        disc_opt = torch.optim.AdamW(disc.parameters(), lr=settings.lr, betas=(0.8, 0.99))
    d_fake, d_real = disc(y.detach()), disc(x)
    d_loss = sum(torch.mean(f[-1] ** 2) + torch.mean((1 - r[-1]) ** 2) for f, r in zip(d_fake, d_real))
    disc_opt.zero_grad()
    d_loss.backward()
    disc_opt.step()
    if not torch.isfinite(d_loss) or d_loss.item() > 100.0:
        return disc, disc_opt, None
    g_loss = sum(torch.mean((1 - f[-1]) ** 2) for f in disc(y))
    return disc, disc_opt, g_loss
