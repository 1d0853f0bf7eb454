"""Training and fine-tuning the EEG DAC (`eegz train`): DAC-SC, and DAC-MC on top of a DAC-SC model.

Training sees exactly what inference feeds the model: each channel resampled to the codec rate and
normalized block by block, (x - median) / (16 robust σ) over the same 16-s blocks that compression uses
(lossy.block_normalization); no high-pass, no clipping. Inputs are EDF/BDF files and Bonn segments (one
integer a line, 173.61 Hz); each input argument (a folder, a file or a glob) contributes the same share
of training windows, so 350 Bonn segments weigh as much as an hour of eegmat.

The loss is waveform-dominant: 100 × L1, plus DAC's mel loss, and optionally a multi-resolution STFT
loss and a line-length loss (losses.py), plus the VQ commitment/codebook terms and optionally a latent loss on
the quantized sum (latent_loss). Quantizer dropout (from min_codebooks up) lets one model serve 3 to 9 codebooks. An optional adversarial phase uses DAC's discriminator at reduced
weight and switches itself off when the discriminator diverges.

Both variants run in one scaffold (`_run`): resume, learning-rate schedule, evaluation, checkpoints.
"""
from __future__ import annotations

import fnmatch
import glob
import json
import math
import random
import re
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .channels import NEURAL, channel_role
from .container import TOKEN_FORMAT_VERSION
from .dsp import resample
from .edf import EdfError, Signal, read_edf
from .errors import EegzError
from .lossy import BLOCK_SECONDS, blend_samples, block_input, block_normalization, normalization
from .metrics import band_power_errors_psd, line_ratio_psd, prdn_windows, welch_psd
from .neural import ModelConfig, _quiet_imports, build_dac, load_state_into, pick_device, read_card, save_model
from .progress import Progress

BONN_RATE = 173.61
SC_REFERENCE_L1 = 0.03  # DAC-MC with a frozen decoder: relative waveform loss scaled to DAC-SC's typical L1
# with a time limit: the schedule is fitted to it after FIT_STEPS steps and at each evaluation after the first
# MIN_FIT_STEPS, with a margin
FIT_STEPS, MIN_FIT_STEPS, FIT_MARGIN = 50, 10, 0.03
MC_WARMUP_STEPS = 200  # DAC-MC fine-tunes a trained decoder: full-size first Adam steps would undo it
EVAL_CODEBOOKS = (3, 6, 9)
RELOOKUP_WINDOWS = 3000  # training windows a switched model's codebooks are fitted to (48 000 frames a stage)
FRAME_START_WINDOWS = 12_000  # training windows a frame-start model's quantizer is fitted to (192 000 frames)


@dataclass
class TrainSettings:
    steps: int = 20000
    batch_size: int = 32
    window_seconds: float = 4.0
    lr: float = 3e-4
    lr_final: float | None = None  # cosine decay from lr (at the starting step) to this at the last step
    warmup_steps: int = 0  # linear lr warm-up: a trained model under a fresh optimizer (full-size first Adam steps)
    waveform_weight: float = 100.0
    mel_weight: float = 1.0
    stft_weight: float = 0.0  # multi-resolution STFT magnitude loss (losses.py)
    line_length_weight: float = 0.0
    excess_weight: float = 0.0  # spectral-excess loss: power the decoder invents (losses.py)
    line_weight: float = 0.0  # line loss: narrow lines the decoder invents, on each source's running spectrum (losses.py)
    image_weight: float = 0.0  # image loss: the upsampling layers' copies of the input's spectrum (losses.py)
    line_group: int = 0  # > 0: batches of groups of this many windows of one channel, the line loss kept per channel
    commitment_weight: float = 0.25
    codebook_weight: float = 1.0
    quantizer_dropout: float = 0.5  # share of each batch coded with a random count of codebooks (the rest: all)
    min_codebooks: int = 1  # the fewest codebooks a dropped-out window keeps (DAC: 1; eegz files use 3 to 9)
    latent_weight: float = 0.0  # latent loss: each count's quantized sum should approach the encoder's output
    adversarial_steps: int = 0  # steps of the GAN phase at the end (0: none)
    adversarial_weight: float = 0.1
    eval_every: int = 500
    checkpoint_every: int = 500
    seed: int = 0
    threads: int = 0  # 0: torch's default
    device: str = "cpu"  # cpu, cuda or auto (neural.pick_device)
    max_seconds: float = 0.0  # stop (evaluate, save) once training has run this long; 0: no limit
    freeze_encoder: bool = False  # DAC-SC: train the decoder only; encoder and quantizer (so every token) stay as loaded
    freeze_decoder: bool = False  # DAC-SC: train the encoder only (and each codebook's input projection, which picks
    # the codes); codebooks and decoder stay as loaded, so every token decodes to the same signal as before
    decoder_dim: int = 0  # > 0, from a model: widen its decoder to this many channels first (widening.py)


# ---------------------------------------------------------------- data

def subject_of(path: Path) -> str:
    """Whole-subject identity for the validation split: eegmat SubjectNN, eegmmidb SNNN; Bonn segments by
    set and file-number range (bonn-A-001-050, bonn-A-051-070), the split the data's manifest prescribes."""
    bonn = re.fullmatch(r"([A-E])(\d{3})", bonn_key(path) or "")
    if bonn:
        n = int(bonn.group(2))
        span = "001-050" if n <= 50 else "051-070" if n <= 70 else "071-100"
        return f"bonn-{bonn.group(1)}-{span}"
    m = re.search(r"(Subject\d+|S\d{3})", path.name)
    return m.group(1) if m else path.stem


def bonn_key(path: Path) -> str | None:
    """'A017' for bonn/A_Z/Z017.txt (set letter from the folder), None for other files."""
    m = re.fullmatch(r"[A-Za-z](\d{3})", path.stem)
    folder = re.fullmatch(r"([A-E])_[A-Z]", path.parent.name)
    return f"{folder.group(1)}{m.group(1)}" if (m and folder and path.suffix.lower() == ".txt") else None


def codec_rate_channels(path: Path, codec_rate: int) -> list[tuple[str, np.ndarray]]:
    """(label, own rate, signal at the codec rate) of each EEG channel of a file that lasts at least 4 s, as the
    encoder gives it to the codec (encoder_input)."""
    if bonn_key(path):
        x = np.loadtxt(path, dtype=np.float64, ndmin=1)
        x = encoder_input(x, Signal(0, "EEG", "", "uV", -32768.0, 32767.0, -32768, 32767, "", len(x), BONN_RATE))
        return [("EEG", BONN_RATE, resample(x, BONN_RATE, codec_rate))] if len(x) >= 4 * BONN_RATE else []
    rec = read_edf(path)
    return [(s.label, s.sample_rate, resample(s.to_physical(encoder_input(d, s)), s.sample_rate, codec_rate))
            for s, d in zip(rec.header.signals, rec.digital)
            if channel_role(s) == NEURAL and len(d) >= 4 * s.sample_rate]


def encoder_input(digital: np.ndarray, signal: Signal) -> np.ndarray:
    """A channel's samples (digital units) as the encoder gives each BLOCK_SECONDS block to the codec
    (lossy.block_input): its stationary tones taken out (spec 6.6) and its constant runs bridged over (6.7). The
    model learns the signal it will be given: trained on mains lines that its input never holds at inference,
    the decoder had learned to make a 49.6-50.3 Hz hump of its own."""
    rate = signal.sample_rate
    out = np.asarray(digital, np.float64).copy()
    n = max(1, int(round(BLOCK_SECONDS * rate)))
    for start in range(0, len(out), n):
        part = np.asarray(digital[start:start + n])
        _, lines, _, smooth = block_input(part, signal, len(part) / rate, TOKEN_FORMAT_VERSION)
        if smooth is not None:
            out[start:start + n] = smooth
        elif lines is not None:
            out[start:start + n] -= lines
    return out


def normalize_blocks(x: np.ndarray, block: int, blend: int = 0) -> np.ndarray:
    """The signal as the encoder sees it: each block of `block` samples normalized by its own values, its first
    `blend` samples passing from the block before's (lossy.normalization, format 14)."""
    parts = [x[start:start + block] for start in range(0, len(x), block)]
    offsets, scales = normalization([(len(p), block_normalization(p)) for p in parts], blend)
    return ((x - offsets) / scales).astype(np.float32)


@dataclass
class Recording:
    source: int  # which input argument it came from (each input gets an equal share of windows)
    subject: str
    labels: list[str]
    signals: np.ndarray  # (channels, samples), normalized at the codec rate
    nyquist: float = 128.0  # the lowest channel's own Nyquist frequency (at most the codec's): nothing lies above


def expand_inputs(inputs: list[str]) -> list[tuple[int, Path]]:
    """(input number, file) for every EDF/BDF/Bonn file under folders, globs and plain paths."""
    found = []
    for k, item in enumerate(inputs):
        p = Path(item)
        if p.is_dir():
            paths = sorted(q for q in p.rglob("*") if q.suffix.lower() in (".edf", ".bdf") or bonn_key(q))
        elif any(ch in item for ch in "*?["):
            paths = sorted(Path(q) for q in glob.glob(item, recursive=True))
        else:
            paths = [p]
        found += [(k, q) for q in paths]
    return found


def load_recordings(inputs: list[str], codec_rate: int) -> list[Recording]:
    """Every readable recording, its EEG channels of the most common rate, normalized as for inference."""
    block = int(round(BLOCK_SECONDS * codec_rate))
    recordings = []
    for source, path in expand_inputs(inputs):
        try:
            channels = codec_rate_channels(path, codec_rate)
        except (EdfError, ValueError, OSError):
            continue
        if not channels:
            continue
        n = min(len(x) for _, _, x in channels)
        signals = np.stack([normalize_blocks(x[:n], block, blend_samples(codec_rate)) for _, _, x in channels])
        nyquist = min(min(rate for _, rate, _ in channels), codec_rate) / 2
        recordings.append(Recording(source, subject_of(path), [label for label, _, _ in channels], signals, nyquist))
    return recordings


def split_subjects(subjects: list[str], val_fraction: float, val_patterns: tuple[str, ...] = ()):
    """(train, validation) subject lists; patterns are shell-style (`Subject1[4-7]`, `bonn-*-051-070`)."""
    subjects = sorted(set(subjects))
    if val_patterns:
        val = [s for s in subjects if any(fnmatch.fnmatchcase(s, p) for p in val_patterns)]
    else:
        val = subjects[len(subjects) - max(1, round(len(subjects) * val_fraction)):]
    return [s for s in subjects if s not in val], val


class WindowSampler:
    """Random windows of `channels` channels of one recording at one time, reproducible from a seed.

    A recording is drawn with probability proportional to its length within its input, and every input
    has the same total weight."""

    def __init__(self, recordings: list[Recording], length: int, channels: int, seed: int):
        self.recordings = [r for r in recordings if r.signals.shape[0] >= channels and r.signals.shape[1] >= length]
        if not self.recordings:
            raise EdfError("no training recording is long enough for one window")
        spans = np.array([r.signals.shape[1] - length + 1 for r in self.recordings], np.float64)
        per_source = {s: spans[[r.source == s for r in self.recordings]].sum() for s in {r.source for r in self.recordings}}
        self.weights = np.array([w / per_source[r.source] for w, r in zip(spans, self.recordings)])
        self.weights /= self.weights.sum()
        self.length, self.channels = length, channels
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int, group: int = 1) -> tuple[np.ndarray, list[list[str]]]:
        """(n, channels, length) windows and the labels of their channels; `group` > 1: rows in groups of that
        many windows of the same channels of one recording at different times (self.channel_keys names each
        row's recording and channels)."""
        x = np.empty((n, self.channels, self.length), np.float32)
        labels, keys = [], []
        group = max(1, min(group, n))
        drawn = self.rng.choice(len(self.recordings), size=-(-n // group), p=self.weights)
        self.drawn = np.repeat(drawn, group)[:n]  # each row's recording
        for row, k in enumerate(self.drawn):
            rec = self.recordings[k]
            if row % group == 0:
                pick = self.rng.choice(rec.signals.shape[0], size=self.channels, replace=False)
            start = self.rng.integers(0, rec.signals.shape[1] - self.length + 1)
            x[row] = rec.signals[pick, start:start + self.length]
            labels.append([rec.labels[i] for i in pick])
            keys.append((int(k), *map(int, pick)))
        self.channel_keys = keys
        return x, labels


def fixed_windows(recordings: list[Recording], length: int, per_signal: int = 4) -> np.ndarray:
    """Evenly spaced validation windows of every channel, the same at every evaluation."""
    rows = [sig[start:start + length] for r in recordings for sig in r.signals if len(sig) >= length
            for start in np.linspace(0, len(sig) - length, per_signal).astype(int)]
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, length), np.float32)


def validation_sets(recordings: list[Recording], val_ids: list[str], inputs: list[str], length: int):
    """{input name: fixed windows} for the validation subjects, one set per input (eegmat, bonn, ...)."""
    sets = {}
    for source, name in enumerate(inputs):
        chosen = [r for r in recordings if r.source == source and r.subject in val_ids]
        windows = fixed_windows(chosen, length)
        if len(windows):
            sets[input_name(name)] = windows
    return sets


def input_name(item: str) -> str:
    """The name of an input (folder, glob or file) as validation results are keyed."""
    return Path(item.rstrip("/")).name or item


def validation_nyquist(recordings: list[Recording], val_ids: list[str], inputs: list[str]) -> dict:
    """{input name: the lowest own Nyquist frequency of its validation recordings} (Bonn: 86.8 Hz)."""
    out = {}
    for source, name in enumerate(inputs):
        chosen = [r.nyquist for r in recordings if r.source == source and r.subject in val_ids]
        if chosen:
            out[input_name(name)] = min(chosen)
    return out


def reconstruction_metrics(x: np.ndarray, y: np.ndarray, rate: int, nyquist: float | None = None) -> dict:
    """PRDN, band-power errors and the worst invented spectral line (below the recordings' own Nyquist
    frequency) of decoded windows (rows)."""
    px, py = welch_psd(x, rate), welch_psd(y, rate)
    bands = band_power_errors_psd(px, py, rate)
    ratio, freq = line_ratio_psd(px, py, rate, nyquist)
    return {"prdn": prdn_windows(x, y), **{f"band_{b}": v for b, v in bands.items()},
            "line_ratio": ratio, "line_hz": freq}


# ---------------------------------------------------------------- the shared scaffold

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


@dataclass
class Run:
    """What the scaffold needs from a variant: its trainable modules, a step and an evaluation."""
    modules: dict  # name -> torch module whose state is checkpointed
    parameters: list  # the parameters the optimizer updates
    step: Callable[[int], tuple]  # step number -> (loss tensor, {name: float} to log)
    evaluate: Callable[[], dict]
    save: Callable[[int, list], None]  # (step, history): write the model and its card
    sampler: WindowSampler
    warmup: int = 0
    history: list = field(default_factory=list)


def _start(settings: TrainSettings, out_dir: Path):
    """Threads, seeds, a quiet log and the output folder; returns torch."""
    torch, _ = _quiet_imports()
    # audiotools warns on every short STFT and torch on weight_norm: noise, not news, in a training log
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    settings.device = pick_device(settings.device)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return torch


def _run(run: Run, settings: TrainSettings, out_dir: Path, resume: bool, quiet: bool, log) -> dict:
    """Resume, then step with the schedule, evaluate and checkpoint until settings.steps."""
    torch, _ = _quiet_imports()
    opt = torch.optim.AdamW(run.parameters, lr=settings.lr, betas=(0.8, 0.99))
    state_path = Path(out_dir) / "train_state.pt"
    step = 0
    if resume and state_path.exists():
        state = torch.load(state_path, weights_only=True)
        for name, module in run.modules.items():
            module.load_state_dict(state[name])
        opt.load_state_dict(state["opt"])
        step, run.history = state["step"], json.loads(state["history"])
        run.sampler.rng = np.random.default_rng(settings.seed + step)
        log(f"resumed at step {step}")
    first = step
    schedule = cosine_schedule(settings.lr, settings.lr_final, first, settings.steps, warmup=run.warmup)
    if step == 0:
        run.history.append({"step": 0, **run.evaluate()})
        log(json.dumps(run.history[-1]))
    t0 = time.time()
    with Progress(settings.steps - step, "train", quiet=quiet) as bar:
        while step < settings.steps:
            if settings.max_seconds and (step == first + FIT_STEPS or (step - first >= MIN_FIT_STEPS and
                                                                       step % settings.eval_every == 0)):
                settings.steps = _steps_in_time(settings.max_seconds, time.time() - t0, step, first, log)
                schedule = cosine_schedule(settings.lr, settings.lr_final, first, settings.steps, warmup=run.warmup)
                bar.total = max(settings.steps - first, 1)
            loss, parts = run.step(step)
            for group in opt.param_groups:
                group["lr"] = schedule(step)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(run.parameters, 1000.0)
            opt.step()
            step += 1
            bar.update(1, " ".join(f"{k} {v:.4f}" for k, v in parts.items()))
            if settings.max_seconds and time.time() - t0 > settings.max_seconds and step < settings.steps:
                log(f"time limit of {settings.max_seconds:g} s reached at step {step}")
                settings.steps = step  # the regular end: evaluate, save, stop
            if step % settings.eval_every == 0 or step == settings.steps:
                run.history.append({"step": step, "seconds": round(time.time() - t0, 1), **parts, **run.evaluate()})
                log(json.dumps(run.history[-1]))
            if step % settings.checkpoint_every == 0 or step == settings.steps:
                run.save(step, run.history)
                torch.save({**{k: m.state_dict() for k, m in run.modules.items()}, "opt": opt.state_dict(),
                            "step": step, "history": json.dumps(run.history)}, state_path)
    if step == 0:  # --steps 0: the starting model as it is (switched, widened or a frame start), evaluated
        run.save(0, run.history)
    return run.history[-1] if run.history else {}


def _steps_in_time(max_seconds: float, elapsed: float, step: int, first: int, log) -> int:
    """The step at which the schedule ends where the time runs out, from the pace so far (evaluations
    included, with a margin); fitted again at each evaluation, since a GPU's first steps are slow and a
    neighbour's load changes."""
    per_step = elapsed / (step - first) * (1 + FIT_MARGIN)
    end = step + max(1, int((max_seconds - elapsed) / per_step))
    log(f"{per_step:.3f} s a step: the schedule ends at step {end}")
    return end


class Losses:
    """The reconstruction loss of one step, with its parts for the log."""

    def __init__(self, settings: TrainSettings, config: ModelConfig, device: str = "cpu"):
        from .losses import ImageLoss, MultiResolutionSTFTLoss, RunningLineLoss, make_mel_loss
        self.settings, self.rate = settings, config.sample_rate
        # per channel (line_group): a channel comes back too seldom for a running mean; its group stands alone
        self.lines = (RunningLineLoss(self.rate, decay=0.0 if settings.line_group else 0.9)
                      if settings.line_weight else None)
        self.images = ImageLoss(self.rate, config.decoder_rates, config.hop) if settings.image_weight else None
        self.mel = make_mel_loss().to(device)
        self.stft = MultiResolutionSTFTLoss().to(device) if settings.stft_weight else None

    def __call__(self, y, x, wave=None, rows=None, line_keys=None) -> tuple:
        """rows: each window's Recording (the line loss keeps a running spectrum per source, or per line_keys[i]
        where given)."""
        from .losses import line_length_loss, mel_loss, spectral_excess_loss
        s = self.settings
        wave = wave if wave is not None else (y - x).abs().mean()
        mel = mel_loss(y, x, self.rate, self.mel)
        total = s.waveform_weight * wave + s.mel_weight * mel
        parts = {"wave_l1": float(wave), "mel": float(mel)}
        if self.stft is not None:
            stft = self.stft(y, x)
            total = total + s.stft_weight * stft
            parts["stft"] = float(stft)
        if s.line_length_weight:
            ll = line_length_loss(y, x)
            total = total + s.line_length_weight * ll
            parts["line_length"] = float(ll)
        if s.excess_weight:
            excess = spectral_excess_loss(y, x)
            total = total + s.excess_weight * excess
            parts["excess"] = float(excess)
        if self.lines is not None and rows is not None:
            lines = self.lines(y, x, line_keys or [r.source for r in rows], [r.nyquist for r in rows])
            total = total + s.line_weight * lines
            parts["lines"] = float(lines)
        if self.images is not None and rows is not None:
            images = self.images(y, x, [r.nyquist for r in rows])
            total = total + s.image_weight * images
            parts["images"] = float(images)
        return total, parts


def _card(inputs, train_ids, val_ids, step, settings, history, **extra) -> dict:
    return {"training": {"inputs": inputs, "train_subjects": train_ids, "val_subjects": val_ids, "steps": step,
                         "normalization": f"per {BLOCK_SECONDS:g}-s block: (x - median) / (16 robust sigma)",
                         "settings": settings.__dict__, **extra, "history": history}}


def _prepare(inputs, settings, config, val_fraction, val_subjects, channels, log, recordings=None):
    if recordings is None:
        recordings = load_recordings(inputs, config.sample_rate)
    subjects = sorted({r.subject for r in recordings})
    if len(subjects) < 2:
        raise EdfError("training needs EEG from at least two subjects (one for validation)")
    train_ids, val_ids = split_subjects(subjects, val_fraction, val_subjects)
    window = int(settings.window_seconds * config.sample_rate) // config.hop * config.hop
    sampler = WindowSampler([r for r in recordings if r.subject in train_ids], window, channels, settings.seed)
    val_sets = validation_sets(recordings, val_ids, inputs, window)
    log(f"train subjects {train_ids}, validation subjects {val_ids}, validation windows "
        f"{ {k: len(v) for k, v in val_sets.items()} }")
    return recordings, train_ids, val_ids, window, sampler, val_sets


# ---------------------------------------------------------------- DAC-SC

def train(inputs: list[str], out_dir: Path, config: ModelConfig, settings: TrainSettings,
          init: Path | None = None, resume: bool = False, from_model: Path | None = None,
          val_fraction: float = 0.2, val_subjects: tuple[str, ...] = (), quiet: bool = False, log=print,
          recordings: list[Recording] | None = None, switch_lookup: bool = False, frame_start: bool = False) -> dict:
    """recordings: already loaded (load_recordings), for a machine that holds no copy of the inputs.
    switch_lookup: give a cosine from_model the Euclidean lookup first (relookup.switch_to_distance_lookup).
    frame_start: a new model starts as a frame quantizer (framestart.py; DAC's upsampling, codes by distance).
    resume: continue the run in out_dir, whose own card gives the architecture."""
    if settings.freeze_encoder and settings.freeze_decoder:
        raise EegzError("freeze the encoder or the decoder, not both")
    if settings.freeze_encoder and settings.latent_weight:
        raise EegzError("--latent-weight trains the encoder and quantizer, which --freeze-encoder keeps as they are")
    if settings.decoder_dim and from_model is None:
        raise EegzError("--decoder-dim widens a trained model: give it --from-model")
    out_dir = Path(out_dir)
    resumed = resume and (out_dir / "train_state.pt").exists()
    if frame_start and (init is not None or from_model is not None):
        raise EegzError("--frame-start starts a new model: not with --init or --from-model")
    frame_start = frame_start and not resumed
    if frame_start:
        config = replace(config, upsampling="dac", code_lookup="euclidean")
    torch = _start(settings, out_dir)
    device = settings.device
    if resumed:  # the run's own architecture (lookup, upsampling, width), which its saved state fits
        _, config = read_card(out_dir / "model.npz")
        model = build_dac(config)
    elif init is not None:
        model, config = init_from_dac_checkpoint(init, config)
    elif from_model is not None:  # continue from an eegz model (.npz + card), e.g. the shipped one
        _, card_config = read_card(from_model)
        config = replace(card_config, upsampling=config.upsampling)  # the architecture may change on the way
        model = build_dac(config)
        load_state_into(model, Path(from_model))
        if settings.decoder_dim and settings.decoder_dim != config.decoder_dim:
            from .widening import widen_decoder
            model, config = widen_decoder(model, config, settings.decoder_dim)
    else:
        model = build_dac(config)
    model.to(device)
    recordings, train_ids, val_ids, window, sampler, val_sets = _prepare(inputs, settings, config, val_fraction,
                                                                         val_subjects, 1, log, recordings)
    def fitting_windows(n: int) -> np.ndarray:  # training windows a starting quantizer is fitted to
        return WindowSampler(sampler.recordings, window, 1, settings.seed + 2).batch(n)[0][:, 0]
    if switch_lookup and not resumed and config.code_lookup == "cosine":
        from .relookup import encode_windows, switch_to_distance_lookup
        config = replace(config, code_lookup="euclidean")
        left = switch_to_distance_lookup(model, encode_windows(model, fitting_windows(RELOOKUP_WINDOWS)),
                                         seed=settings.seed)
        log("codebooks refitted by distance; latent left after each stage " + " ".join(f"{v:.3f}" for v in left))
    if frame_start:
        from .framestart import start_as_frame_quantizer
        left = start_as_frame_quantizer(model, fitting_windows(FRAME_START_WINDOWS), seed=settings.seed)
        log("started as a frame quantizer; latent left after each stage " + " ".join(f"{v:.3f}" for v in left))
    nyquists = validation_nyquist(recordings, val_ids, inputs)
    table_windows = WindowSampler(sampler.recordings, window, 1, settings.seed + 1).batch(512)[0][:, 0]
    losses = Losses(settings, config, device)
    adversary = {"disc": None, "opt": None, "on": settings.adversarial_steps > 0}
    usage = None  # Euclidean codes: how often each was chosen since the last restart_dead_codes
    if config.code_lookup == "euclidean" and not settings.freeze_encoder:
        usage = [torch.zeros(config.codebook_size, dtype=torch.long, device=device) for _ in range(config.n_codebooks)]
        code_generator = torch.Generator().manual_seed(settings.seed)

    def step(n: int):
        x = torch.from_numpy(sampler.batch(settings.batch_size, settings.line_group or 1)[0]).to(device)
        z = model.encoder(x)
        counts = codebook_counts_for_training(len(x), config.n_codebooks, settings, torch)
        z_q, commitment, codebook, rebuilt = quantize_for_training(model.quantizer, z, counts.to(device),
                                                                    rebuild=bool(settings.latent_weight), usage=usage)
        moved = None  # after this batch's codes, so that it counts (embedding's gradient does not read the weights)
        if usage is not None and (n + 1) % DEAD_CODE_STEPS == 0:
            moved = restart_dead_codes(model.quantizer, z, usage, code_generator)
        y = model.decoder(z_q)[..., :window]
        loss, parts = losses(y, x, rows=[sampler.recordings[k] for k in sampler.drawn],
                             line_keys=sampler.channel_keys if settings.line_group else None)
        loss = loss + settings.commitment_weight * commitment + settings.codebook_weight * codebook
        if moved is not None:
            parts["codes_moved"] = float(moved)
        if settings.latent_weight:
            latent = latent_loss(z, rebuilt)
            loss = loss + settings.latent_weight * latent
            parts["latent"] = float(latent)
        if adversary["on"] and n >= settings.steps - settings.adversarial_steps:
            adversary["disc"], adversary["opt"], gan = _adversarial_step(adversary["disc"], adversary["opt"], x, y,
                                                                         config, settings, torch)
            if gan is None:  # diverged: the paper's schedule drops the GAN term from here on
                adversary["on"] = False
                log(f"step {n}: discriminator diverged, adversarial phase switched off")
            else:
                loss = loss + settings.adversarial_weight * gan
        return loss, parts

    def evaluate() -> dict:
        model.eval()
        result = {}
        with torch.inference_mode():
            for name, val_x in val_sets.items():
                z = model.encoder(torch.from_numpy(val_x)[:, None].to(device))
                for nq in EVAL_CODEBOOKS:
                    if nq <= config.n_codebooks:
                        y = model.decoder(model.quantizer(z, nq)[0])[:, 0, :window].cpu().numpy()
                        result.update({f"{name}_{k}_{nq}": v for k, v in
                                       reconstruction_metrics(val_x, y, config.sample_rate, nyquists.get(name)).items()})
        model.train()
        return result

    def save(n: int, history: list) -> None:
        started = {"frame_start": True, "frame_start_windows": FRAME_START_WINDOWS} if frame_start else {}
        card = _card(inputs, train_ids, val_ids, n, settings, history, init=str(init) if init else None,
                     from_model=str(from_model) if from_model else None, **started)
        save_model(model, config, out_dir / "model.npz", card, token_usage(model, table_windows, config.n_codebooks))

    model.train()
    run = Run({"model": model}, _trained_parameters(model, settings), step, evaluate, save, sampler,
              warmup=settings.warmup_steps)
    return _run(run, settings, out_dir, resume, quiet, log)


def codebook_counts_for_training(n: int, n_codebooks: int, settings: TrainSettings, torch):
    """How many codebooks code each window of a batch: quantizer dropout as DAC draws it (the first share of
    the batch a random count, the rest all), the random counts from settings.min_codebooks up. Files keep 3 to
    9 codebooks, so a model need not spend its training on 1 or 2."""
    counts = torch.full((n,), n_codebooks, dtype=torch.long)
    dropped = int(n * settings.quantizer_dropout)
    low = max(1, min(settings.min_codebooks, n_codebooks))
    counts[:dropped] = torch.randint(low, n_codebooks + 1, (dropped,))
    return counts


def quantize_for_training(quantizer, z, counts, rebuild: bool = False, usage=None):
    """DAC's residual vector quantizer (ResidualVectorQuantize.forward in training) with each window's own
    count of codebooks: (quantized sum, commitment loss, codebook loss, rebuilt sum). Its own loop because DAC
    draws the counts itself, from 1 up. rebuild: also the same sum rebuilt from the chosen codes (None
    otherwise), whose gradient reaches only the codebooks and output projections (see latent_loss).
    usage: per stage, a count of how often each code was chosen, added to."""
    z_q, residual, commitment, codebook, rebuilt = 0, z, 0, 0, 0 if rebuild else None
    for i, stage in enumerate(quantizer.quantizers):
        z_q_i, commitment_i, codebook_i, codes_i, _ = stage(residual)
        keep = (counts > i).to(z.dtype)
        if usage is not None:
            chosen = codes_i[counts > i].reshape(-1)
            usage[i] += chosen.bincount(minlength=len(usage[i]))
        z_q = z_q + z_q_i * keep[:, None, None]
        if rebuild:
            rebuilt = rebuilt + stage.out_proj(stage.decode_code(codes_i)) * keep[:, None, None]
        residual = residual - z_q_i
        commitment = commitment + (commitment_i * keep).mean()
        codebook = codebook + (codebook_i * keep).mean()
    return z_q, commitment, codebook, rebuilt


DEAD_CODE_STEPS = 100  # Euclidean codes: how often codes that no window chose are moved (restart_dead_codes)


def restart_dead_codes(quantizer, z, usage, generator) -> int:
    """Move each Euclidean code that no window chose since the last call onto a stage input of this batch (the
    stage's projected residual), and zero the counts; returns how many moved. Codes chosen by distance that
    start or drift far from the data are never chosen again (DAC's cosine lookup avoids this by normalizing,
    at the cost measured in neural.euclidean_codes_class); moving them to the data is the usual cure (as in
    SoundStream and Jukebox)."""
    import torch
    moved, residual = 0, z.detach()
    with torch.no_grad():
        for stage, counts in zip(quantizer.quantizers, usage):
            z_e = stage.in_proj(residual)
            rows = z_e.transpose(1, 2).reshape(-1, z_e.shape[1])
            dead = torch.nonzero(counts == 0).reshape(-1)
            if len(dead):
                pick = torch.randint(len(rows), (len(dead),), generator=generator)
                stage.codebook.weight[dead] = rows[pick].to(stage.codebook.weight.dtype)
                moved += len(dead)
            residual = residual - stage.out_proj(stage.decode_latents(z_e)[0])
            counts.zero_()
    return moved


def latent_loss(z, rebuilt):
    """Squared distance of the quantized sum (rebuilt from its codes) from the encoder's output, relative to the
    output's power. In a trained DAC the sum moves away from the output as codebooks are added (out_proj writes
    what in_proj never read), so later codebooks spend bits undoing earlier ones; this term asks each count to
    refine. Only the codebooks and output projections learn from it: through the straight-through estimator the
    encoder would be pushed away (a step of z along the estimator's gradient moves z, not the codes, so the
    distance grows: measured, 1.50 -> 1.70 at 9 codebooks in 1000 steps)."""
    target = z.detach()
    return ((rebuilt - target) ** 2).mean() / (target ** 2).mean().clamp_min(1e-8)


def _trained_parameters(model, settings: TrainSettings) -> list:
    """The parameters a DAC-SC run updates; the others stop taking gradients."""
    if settings.freeze_encoder:  # the files a frozen encoder writes are the loaded model's, token for token
        frozen = (model.encoder, model.quantizer)
    elif settings.freeze_decoder:  # a token means what it meant: only the choice of tokens learns
        frozen = (model.quantizer, model.decoder)
    else:
        return list(model.parameters())
    for module in frozen:
        module.requires_grad_(False)
    if settings.freeze_decoder:
        for layer in model.quantizer.quantizers:
            layer.in_proj.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def token_usage(model, windows: np.ndarray, n_codebooks: int, batch: int = 64) -> np.ndarray:
    """How often each code of each codebook is chosen on these (training) windows: the token tables."""
    import torch
    counts = np.zeros((n_codebooks, model.codebook_size), np.int64)
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(windows), batch):
            x = torch.from_numpy(windows[start:start + batch])[:, None].to(device)
            _, codes, *_ = model.quantizer(model.encoder(x), n_codebooks)
            for q in range(n_codebooks):
                counts[q] += np.bincount(codes[:, q].reshape(-1).cpu().numpy(), minlength=model.codebook_size)
    model.train(was_training)
    return counts


def init_from_dac_checkpoint(path: Path, config: ModelConfig):
    """Load an official-format DAC checkpoint (DAC.load) to fine-tune it on EEG: the paper's transfer."""
    _, DAC = _quiet_imports()
    model = DAC.load(str(path))
    model.sample_rate = config.sample_rate
    loaded = ModelConfig(
        encoder_dim=model.encoder_dim, encoder_rates=tuple(model.encoder_rates), latent_dim=model.latent_dim,
        decoder_dim=model.decoder_dim, decoder_rates=tuple(model.decoder_rates), n_codebooks=model.n_codebooks,
        codebook_size=model.codebook_size, codebook_dim=model.codebook_dim, sample_rate=config.sample_rate,
        upsampling=config.upsampling)
    if loaded.upsampling == "balanced":
        from .upsampling import balance_decoder
        balance_decoder(model.decoder)
    return model, loaded


def _adversarial_step(disc, disc_opt, x, y, config, settings, torch):
    """One discriminator update and the generator's adversarial loss; None when it has diverged."""
    from dac.model import Discriminator
    if disc is None:
        disc = Discriminator(rates=[], periods=[2, 3, 5, 7, 11], fft_sizes=[64, 128, 256],
                             sample_rate=config.sample_rate).to(x.device)
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


# ---------------------------------------------------------------- DAC-MC

def train_multichannel(inputs: list[str], out_dir: Path, from_model: Path, settings: TrainSettings,
                       channels: int = 16, train_decoder: bool = True, resume: bool = False,
                       val_fraction: float = 0.2, val_subjects: tuple[str, ...] = (), quiet: bool = False,
                       log=print, recordings: list[Recording] | None = None) -> dict:
    """Fine-tune DAC-MC from a DAC-SC model: the encoder and codebooks stay frozen (so the tokens are the
    single-channel model's), the channel mixing, style vectors and (unless train_decoder is False) the
    decoder learn to decode all channels of a block together."""
    if settings.decoder_dim:
        raise EegzError("--decoder-dim widens a DAC-SC model: train DAC-MC from the widened one")
    if settings.latent_weight or settings.min_codebooks != 1:  # asked for and never read: say so
        raise EegzError("--latent-weight and --min-codebooks train DAC-SC's quantizer: DAC-MC keeps it frozen "
                        "and codes each batch with 3 to 9 codebooks")
    out_dir = Path(out_dir)
    torch = _start(settings, out_dir)
    device = settings.device
    from .multichannel import electrode_name, style_index
    from .neural import build_mixing

    sc_card, sc_config = read_card(from_model)
    recordings, train_ids, val_ids, window, sampler, _ = _prepare(inputs, settings, sc_config, val_fraction,
                                                                  val_subjects, channels, log, recordings)
    electrodes = tuple(sorted({electrode_name(label) for r in recordings if r.subject in train_ids
                               for label in r.labels}))
    config = replace(sc_config, variant="DAC-MC", electrodes=electrodes)
    val_sets = [(torch.tensor([style_index(label, electrodes) for label in r.labels])[None].to(device),
                 torch.from_numpy(np.stack([r.signals[:, s:s + window] for s in
                                            np.linspace(0, r.signals.shape[1] - window, 4).astype(int)])).to(device))
                for r in recordings if r.subject in val_ids and r.signals.shape[1] >= window]
    log(f"{len(electrodes)} electrodes, {len(val_sets)} validation recordings")

    dac = build_dac(config)
    counts = load_state_into(dac, Path(from_model))
    mixing = build_mixing(config, dac)
    dac.to(device)
    mixing.to(device)
    frozen = (dac.encoder, dac.quantizer) if train_decoder else (dac.encoder, dac.quantizer, dac.decoder)
    for module in frozen:
        module.requires_grad_(False)
    dac.encoder.eval()  # the quantizer in train mode would ignore the number of codebooks asked for
    dac.quantizer.eval()
    trainable = [p for p in list(dac.decoder.parameters()) + list(mixing.parameters()) if p.requires_grad]
    losses = Losses(settings, config, device)
    rng = np.random.default_rng(settings.seed + 7)
    batch = max(1, settings.batch_size // channels)

    def quantized(x, n_q):
        """(batch, channels, latent, frames) latents of the frozen encoder and codebooks."""
        n, chans, length = x.shape
        z_q, *_ = dac.quantizer(dac.encoder(x.reshape(n * chans, 1, length)), n_q)
        return z_q.reshape(n, chans, *z_q.shape[1:])

    def decoded(z_q):
        """(batch × channels, 1, window) waveforms for (batch, channels, latent, frames) latents."""
        return dac.decoder(z_q.reshape(-1, *z_q.shape[2:]))[..., :window]

    def step(n: int):
        x, labels = sampler.batch(batch)
        x = torch.from_numpy(x).to(device)
        styles = torch.tensor([[style_index(label, electrodes) for label in row] for row in labels], device=device)
        n_q = int(rng.integers(3, config.n_codebooks + 1))
        with torch.no_grad():
            z_q = quantized(x, n_q)
        y = decoded(mixing(z_q, styles, n_q))
        target = x.reshape(-1, 1, window)
        wave = (y - target).abs().mean()
        if not train_decoder:  # relative to DAC-SC's own error at this many codebooks: every rate counts
            with torch.no_grad():
                plain = (decoded(z_q) - target).abs().mean()
            wave = wave / plain * SC_REFERENCE_L1
        return losses(y, target, wave)

    def evaluate() -> dict:
        dac.decoder.eval()
        mixing.eval()
        result = {}
        with torch.inference_mode():
            for n_q in EVAL_CODEBOOKS:
                ref, mc, sc = [], [], []
                for styles, x in val_sets:
                    z_q = quantized(x, n_q)
                    ref.append(x.reshape(-1, window).cpu().numpy())
                    mc.append(decoded(mixing(z_q, styles.expand(len(x), -1), n_q))[:, 0].cpu().numpy())
                    sc.append(decoded(z_q)[:, 0].cpu().numpy())
                result[f"prdn_{n_q}"] = prdn_windows(np.concatenate(ref), np.concatenate(mc))
                result[f"prdn_{n_q}_unmixed"] = prdn_windows(np.concatenate(ref), np.concatenate(sc))
        dac.decoder.train()
        mixing.train()
        return result

    def save(n: int, history: list) -> None:
        card = _card(inputs, train_ids, val_ids, n, settings, history, channels_per_window=channels,
                     from_model=str(from_model), from_model_sha256=sc_card["weights_sha256"],
                     frozen=["encoder", "quantizer"] + ([] if train_decoder else ["decoder"]))
        save_model(dac, config, out_dir / "model.npz", card, counts, mixing)

    run = Run({"decoder": dac.decoder, "mixing": mixing}, trainable, step, evaluate, save, sampler,
              warmup=MC_WARMUP_STEPS)
    return _run(run, settings, out_dir, resume, quiet, log)
