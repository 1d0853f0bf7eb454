"""The neural codec: descript-audio-codec's DAC model sized for EEG, its weights and batched coding.

This module imports torch and dac, so only the lossy path and training import it. Weights are stored
pickle-free as .npz (float32 arrays named by the state-dict key) beside a JSON model card that holds the
configuration; the SHA-256 of the .npz is the model's identity in every .eegz file.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import types
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import _core
from .errors import ModelError
from .parallel import THREADS_ENV, cpu_budget
from .progress import Progress

MODELS_DIR = Path(__file__).parent / "models"
TOKEN_COUNTS_KEY = "eegz.token_counts"  # (n_codebooks, codebook_size) int64 usage counts, in the .npz
DEFAULT_MODEL = "eegz-dac-sc-256hz-hop64-lines2"
GPU_BATCH_SAMPLES = 1 << 22  # per forward pass on a GPU
MIXING_PREFIX = "mc."  # DAC-MC's channel-mixing tensors in the .npz, beside DAC's own state dict


@dataclass(frozen=True)
class ModelConfig:
    """DAC constructor arguments; the EEG default is a ~2 M-parameter single-channel model at 256 Hz."""
    encoder_dim: int = 16
    encoder_rates: tuple = (2, 2, 4, 4)
    latent_dim: int | None = None
    decoder_dim: int = 128
    decoder_rates: tuple = (4, 4, 2, 2)
    n_codebooks: int = 9
    codebook_size: int = 1024
    codebook_dim: int = 8
    sample_rate: int = 256
    variant: str = "DAC-SC"  # or "DAC-MC": cross-channel attention and style vectors on decode
    electrodes: tuple = ()  # DAC-MC: electrode names of style indices 1, 2, ... (0: unknown)
    mix_heads: int = 4  # DAC-MC: attention heads
    upsampling: str = "dac"  # or "balanced": decoder upsampling without frame-rate lines (spec 6.2)
    code_lookup: str = "cosine"  # DAC's nearest code by cosine, or "euclidean" (EuclideanCodes below)

    @property
    def is_multichannel(self) -> bool:
        return self.variant == "DAC-MC"

    @property
    def hop(self) -> int:
        return int(np.prod(self.encoder_rates))

    @property
    def bits_per_code(self) -> int:
        return int(np.ceil(np.log2(self.codebook_size)))

    def to_json(self) -> dict:
        d = asdict(self)
        d["encoder_rates"], d["decoder_rates"] = list(self.encoder_rates), list(self.decoder_rates)
        d["electrodes"] = list(self.electrodes)
        if d["code_lookup"] == "cosine":  # absent means DAC's lookup: files of the earlier models stay byte for byte
            del d["code_lookup"]
        return d

    def dac_arguments(self) -> dict:
        """The dac.model.DAC constructor arguments."""
        d = self.to_json()
        for key in ("variant", "electrodes", "mix_heads", "upsampling", "code_lookup"):
            d.pop(key, None)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ModelConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for key in ("encoder_rates", "decoder_rates", "electrodes"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


def _quiet_imports():
    """Import torch and dac, hiding the deprecation chatter of their dependencies."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch
        from dac.model import DAC
    if os.environ.get(THREADS_ENV) and torch.get_num_threads() > cpu_budget():  # a batch worker's share
        torch.set_num_threads(cpu_budget())
    return torch, DAC


def build_dac(config: ModelConfig):
    _, DAC = _quiet_imports()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DAC's weight_norm is deprecated in torch, not wrong
        dac = DAC(**config.dac_arguments())
        if config.upsampling == "balanced":
            from .upsampling import balance_decoder
            balance_decoder(dac.decoder)
        elif config.upsampling != "dac":
            raise ModelError(f"unknown decoder upsampling {config.upsampling!r}")
        if config.code_lookup == "euclidean":
            for layer in dac.quantizer.quantizers:
                layer.__class__ = euclidean_codes_class()
        elif config.code_lookup != "cosine":
            raise ModelError(f"unknown code lookup {config.code_lookup!r}")
    return dac


def distance_scores(rows, book):
    """Each row's score for each code, highest for the nearest by Euclidean distance: the negated squared
    distance plus the row's own squared norm, which is the same for every code and so left out."""
    return 2 * rows @ book.t() - (book * book).sum(1)[None]


@functools.cache
def euclidean_codes_class():
    """DAC's VectorQuantize with the nearest code by Euclidean distance in its 8-dimensional space.

    DAC picks the code whose direction is nearest (both sides L2-normalized, after ViT-VQGAN) and adds the code's
    own vector: the choice ignores the residual's size, so a later stage cannot scale to what is left. Measured
    with k-means quantizers of raw 64-sample frames (benchmarks/rvq_reference.md): 8-dimensional codes chosen by
    distance 15.7 % PRDN at 6 stages on held-out eegmat, chosen by direction 24.6 %."""
    from dac.nn.quantize import VectorQuantize

    class EuclideanCodes(VectorQuantize):
        def decode_latents(self, latents):
            encodings = latents.transpose(1, 2).reshape(-1, latents.shape[1])
            indices = distance_scores(encodings, self.codebook.weight).argmax(1).view(latents.shape[0], latents.shape[2])
            return self.decode_code(indices), indices

    return EuclideanCodes


def build_mixing(config: ModelConfig, dac):
    """The DAC-MC decoder-side channel mixing for this DAC, or None for DAC-SC."""
    if not config.is_multichannel:
        return None
    from .multichannel import ChannelMixing
    return ChannelMixing(dac.latent_dim, len(config.electrodes) + 1, config.mix_heads)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(model, config: ModelConfig, weights_path: Path, card: dict | None = None,
               token_counts: np.ndarray | None = None, mixing=None) -> str:
    """Write weights (.npz) and the model card (.json beside it); returns the weights' SHA-256.

    token_counts, how often each code of each codebook occurs on training EEG, are stored in the same
    .npz (so the SHA-256 covers them): the entropy coder's tables for the token streams."""
    weights_path = Path(weights_path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}
    if mixing is not None:
        state.update({MIXING_PREFIX + k: v.detach().cpu().float().numpy() for k, v in mixing.state_dict().items()})
    if token_counts is not None:
        state[TOKEN_COUNTS_KEY] = np.asarray(token_counts, np.int64)
    tmp = weights_path.with_suffix(".tmp.npz")
    np.savez(tmp, **state)
    tmp.replace(weights_path)
    sha = file_sha256(weights_path)
    meta = {"name": weights_path.stem, "config": config.to_json(), "weights_sha256": sha}
    meta.update(card or {})
    weights_path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return sha


def resolve_model_path(model: str | None) -> Path:
    """A model name shipped in eegz/models, or a path to a .npz file."""
    name = model or DEFAULT_MODEL
    path = Path(name)
    if path.suffix == ".npz" and path.exists():
        return path
    shipped = MODELS_DIR / f"{name}.npz"
    if shipped.exists():
        return shipped
    raise ModelError(f"model {name!r} not found (neither a shipped model nor an existing .npz file)")


def read_token_counts(model: str | None, expect_sha256: str) -> np.ndarray:
    """A model's token usage counts (the token streams' rANS tables), without loading torch: for reading
    and recoding token streams. The weights must have the SHA-256 the file names."""
    path = resolve_model_path(model)
    if file_sha256(path) != expect_sha256:
        raise ModelError(f"model {path.stem!r} does not have the weights {expect_sha256[:12]}… the file needs "
                         "(pass the right one with --model PATH.npz)")
    with np.load(path, allow_pickle=False) as npz:
        if TOKEN_COUNTS_KEY not in npz.files:
            raise ModelError(f"model {path.stem!r} has no token tables")
        return npz[TOKEN_COUNTS_KEY]


def pick_device(device: str = "auto") -> str:
    torch, _ = _quiet_imports()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for but torch sees no CUDA GPU")
    if device not in ("cpu", "cuda"):
        raise ModelError(f"unknown device {device!r}: use auto, cpu or cuda")
    return device


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int, size: int, device: str) -> "NeuralCodec":
    """One loaded model per weights file and device (keyed by mtime and size, so a new file reloads)."""
    return NeuralCodec._from_file(Path(path), device)


def read_card(weights_path: Path) -> tuple[dict, ModelConfig]:
    """The model card beside a weights file (.json) and the architecture (ModelConfig) it describes."""
    card_path = Path(weights_path).with_suffix(".json")
    if not card_path.exists():
        raise ModelError(f"model card {card_path.name} is missing beside {Path(weights_path).name}")
    try:
        card = json.loads(card_path.read_text())
        return card, ModelConfig.from_json(card["config"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelError(f"model card {card_path.name} is not an eegz model card ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else 'no config'})") from None


def load_state_into(model, weights_path: Path, mixing=None) -> np.ndarray | None:
    """Load the weights (the DAC-MC mixing too, when given); returns the token counts, if any. Weights that are
    not a readable .npz, or do not fit the architecture the card describes, are a ModelError."""
    torch, _ = _quiet_imports()
    try:
        with np.load(weights_path, allow_pickle=False) as npz:
            state = {k: torch.from_numpy(npz[k]) for k in npz.files if k != TOKEN_COUNTS_KEY}
            counts = npz[TOKEN_COUNTS_KEY] if TOKEN_COUNTS_KEY in npz.files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # not a zip, a damaged member, a pickled object
        raise ModelError(f"model weights {Path(weights_path).name} are not readable ({type(e).__name__})") from None
    mixed = {k[len(MIXING_PREFIX):]: state.pop(k) for k in list(state) if k.startswith(MIXING_PREFIX)}
    try:
        model.load_state_dict(state)
        if mixing is not None:
            mixing.load_state_dict(mixed)
    except RuntimeError as e:  # torch lists every missing, unexpected or mis-sized tensor
        detail = str(e).splitlines()[1].strip().rstrip(".") if len(str(e).splitlines()) > 1 else "mismatch"
        raise ModelError(f"model weights {Path(weights_path).name} do not fit the architecture of its card "
                         f"({detail})") from None
    return counts


def prepare_for_inference(model) -> None:
    """Fold weight normalisation into plain weights and use the in-place Snake: same outputs, faster."""
    torch, _ = _quiet_imports()
    from dac.nn.layers import Snake1d
    for module in model.modules():
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)
        if isinstance(module, Snake1d):
            module.forward = types.MethodType(_snake_in_place, module)


def _snake_in_place(self, x):
    """DAC's Snake, x + sin²(αx)/α, in two temporaries instead of five: it was half the encoder's time.
    On the CPU one compiled pass (_core.snake) does it: torch's sin and three more passes were a fifth."""
    from torch import float32
    compiled = x.device.type == "cpu" and x.dtype == self.alpha.dtype == float32 and x.is_contiguous()
    if compiled and not x.requires_grad:  # (numpy views need tensors outside autograd)
        out = x.new_empty(x.shape)
        _core.snake(x.numpy(), self.alpha.detach().reshape(-1).contiguous().numpy(), out.numpy(), x.shape[-1])
        return out
    t = x * self.alpha
    t.sin_()
    t.mul_(t)
    return x.addcmul(t, (self.alpha + 1e-9).reciprocal())


def rvq_codes(quantizer, z, n_codebooks: int):
    """The codes DAC's ResidualVectorQuantize picks, without its losses and distance matrices.

    Codebook vectors and projections are L2-normalized, so the nearest code is the one with the largest
    dot product: the same choice as DAC's distance, at under half the cost. A model with Euclidean lookup
    scores each code by its negated distance less the input's own norm (which does not change the choice)."""
    torch, _ = _quiet_imports()
    residual, codes = z, []
    for layer in quantizer.quantizers[:n_codebooks]:
        z_e = layer.in_proj(residual)
        batch, dim, frames = z_e.shape
        rows = z_e.transpose(1, 2).reshape(-1, dim)
        if isinstance(layer, euclidean_codes_class()):
            scores = distance_scores(rows, layer.codebook.weight)
        else:
            scores = torch.nn.functional.normalize(rows) @ torch.nn.functional.normalize(layer.codebook.weight).t()
        # numpy's argmax over a CPU tensor's rows is 13x torch's here (frames x 1024 codes); both take the first
        # of equal maxima
        index = (torch.from_numpy(scores.detach().numpy().argmax(1)) if scores.device.type == "cpu"
                 else scores.argmax(1)).view(batch, frames)
        z_q = layer.codebook.weight[index].transpose(1, 2)
        residual = residual - layer.out_proj(z_e + (z_q - z_e))  # z_q as DAC rounds its straight-through sum
        codes.append(index)
    return torch.stack(codes, 1)


ABSENT_CODE = 0xFFFF  # a codebook that a context frame does not have (lossy.with_context marks it)


def latents_from_codes(quantizer, codes):
    """DAC's quantizer.from_codes (the sum of each codebook's projected vector), where a code equal to
    ABSENT_CODE adds nothing: a context frame from a neighbour coded with fewer codebooks (spec 6.1)."""
    absent = codes == ABSENT_CODE
    if not bool(absent.any()):
        return quantizer.from_codes(codes)[0]
    z_q = 0.0
    for i in range(codes.shape[1]):
        layer = quantizer.quantizers[i]
        z_q_i = layer.out_proj(layer.decode_code(codes[:, i, :].masked_fill(absent[:, i, :], 0)))
        z_q = z_q + z_q_i * (~absent[:, i, None, :]).to(z_q_i.dtype)
    return z_q


@contextmanager
def full_float32(torch):
    """GPU convolutions and matrix products in full float32 while the codec runs. torch lets cuDNN round
    their inputs to TF32 (10-bit mantissas) by default; the encoder's latents then move enough to change
    the nearest code: measured on an H200, 13-61 of a recording's 88 token streams differed from the CPU's
    with TF32, 0-1 without (benchmarks/results/gpu_path.md). The flags are restored afterwards."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@dataclass
class NeuralCodec:
    """A loaded DAC model ready to turn normalized codec-rate segments into RVQ codes and back."""
    name: str
    config: ModelConfig
    sha256: str
    device: str
    model: object = field(repr=False)
    token_counts: np.ndarray | None = field(default=None, repr=False)
    mixing: object = field(default=None, repr=False)  # DAC-MC only
    batch_samples: int = 1 << 14  # per forward pass on the CPU: the activations then stay in cache
    workers: int = 0  # CPU threads, one batch each (0: one per core)

    @classmethod
    def load(cls, model: str | None = None, device: str = "auto", expect_sha256: str | None = None,
             quiet: bool = True):
        path = resolve_model_path(model)
        stat = path.stat()
        with Progress(1, f"loading model {path.stem}", quiet) as bar:  # torch and the weights take seconds
            codec = _load_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size, pick_device(device))
            bar.update(1)
        if expect_sha256 and codec.sha256 != expect_sha256:
            raise ModelError(f"model {codec.name!r} has weights {codec.sha256[:12]}…, but the file needs "
                             f"{expect_sha256[:12]}… (pass the right one with --model PATH.npz)")
        return codec

    @classmethod
    def _from_file(cls, path: Path, device: str):
        card, config = read_card(path)
        sha = file_sha256(path)
        torch, _ = _quiet_imports()
        try:
            dac = build_dac(config)
            mixing = build_mixing(config, dac)
        except (TypeError, ValueError, ZeroDivisionError) as e:  # sizes that are no numbers, or no model
            raise ModelError(f"model card {path.with_suffix('.json').name} describes no model eegz can build "
                             f"({type(e).__name__})") from None
        counts = load_state_into(dac, path, mixing)
        prepare_for_inference(dac)
        dac = dac.to(device).eval()
        if mixing is not None:
            mixing = mixing.to(device).eval()
        return cls(name=card.get("name", path.stem), config=config, sha256=sha, device=device, model=dac,
                   token_counts=counts, mixing=mixing)

    def style_index(self, label: str) -> int | None:
        """The DAC-MC style vector for a channel label; None for DAC-SC."""
        if self.mixing is None:
            return None
        from .multichannel import style_index
        return style_index(label, self.config.electrodes)

    def encode(self, segments: list[np.ndarray], n_codebooks: int) -> list[np.ndarray]:
        """Codes (n_codebooks, len/hop) uint16 for each normalized segment (length a multiple of hop)."""
        torch, _ = _quiet_imports()

        def run(idx):
            x = torch.from_numpy(np.stack([segments[i] for i in idx]).astype(np.float32))[:, None, :]
            with torch.inference_mode():
                codes = rvq_codes(self.model.quantizer, self.model.encoder(x.to(self.device)), n_codebooks)
            return codes.cpu().numpy().astype(np.uint16)

        return self._run_batches([len(s) for s in segments], lambda i: len(segments[i]), run)

    def decode(self, codes: list[np.ndarray]) -> list[np.ndarray]:
        """Normalized waveforms (frames × hop samples) for each (n_codebooks, frames) code array."""
        torch, _ = _quiet_imports()

        def run(idx):
            c = torch.from_numpy(np.stack([codes[i] for i in idx]).astype(np.int64)).to(self.device)
            with torch.inference_mode():
                return self._waveforms(latents_from_codes(self.model.quantizer, c))

        hop = self.config.hop
        return self._run_batches([c.shape[1] * hop for c in codes], lambda i: codes[i].shape, run)

    def decode_block(self, items: list[tuple[np.ndarray, int, int | None]]) -> list[np.ndarray]:
        """Decode the channels of one block: (codes with context, frames of left context, style index).

        DAC-SC decodes each channel alone. DAC-MC places every channel's latents on the block's common
        frame grid (channels whose neighbours give no context start or end later), mixes them across
        channels, then decodes each channel over its own frames."""
        if self.mixing is None:
            return self.decode([codes for codes, _, _ in items])
        torch, _ = _quiet_imports()
        starts = [-n_left for _, n_left, _ in items]
        lo = min(starts)
        hi = max(s + codes.shape[1] for (codes, _, _), s in zip(items, starts))
        dim = self.model.latent_dim
        with torch.inference_mode(), full_float32(torch):
            grid = torch.zeros(1, len(items), dim, hi - lo, device=self.device)
            missing = torch.ones(1, len(items), hi - lo, dtype=torch.bool, device=self.device)
            for k, ((codes, _, _), s) in enumerate(zip(items, starts)):
                c = torch.from_numpy(codes.astype(np.int64))[None].to(self.device)
                grid[0, k, :, s - lo:s - lo + codes.shape[1]] = latents_from_codes(self.model.quantizer, c)[0]
                missing[0, k, s - lo:s - lo + codes.shape[1]] = False
            styles = torch.tensor([[style for _, _, style in items]], device=self.device)
            mixed = self.mixing(grid, styles, items[0][0].shape[0], missing)[0]
            latents = [mixed[k, :, s - lo:s - lo + codes.shape[1]] for k, ((codes, _, _), s)
                       in enumerate(zip(items, starts))]

        def run(idx):
            with torch.inference_mode():
                return self._waveforms(torch.stack([latents[i] for i in idx]))

        hop = self.config.hop
        return self._run_batches([z.shape[-1] * hop for z in latents], lambda i: latents[i].shape, run)

    def _waveforms(self, latents) -> np.ndarray:
        """The decoder's waveforms (batch, samples) as float64 for latents (batch, latent_dim, frames)."""
        return self.model.decoder(latents)[:, 0].cpu().numpy().astype(np.float64)

    def _run_batches(self, samples: list[int], key, run) -> list:
        """run() over batches of items, one item's result per input, in order.

        On the CPU, small batches on one core each beat one large batch spread over all cores (measured
        2.3x for the encoder on 2 cores): the activations stay in cache and convolutions this narrow
        parallelise poorly inside one operation."""
        torch, _ = _quiet_imports()
        batches = list(self._batches(samples, key))
        workers = (self.workers or cpu_budget()) if self.device == "cpu" else 1
        threads = torch.get_num_threads()
        if workers > 1 and len(batches) > 1:
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(min(workers, len(batches))) as pool:
                    results = list(pool.map(run, batches))
            finally:
                torch.set_num_threads(threads)
        else:  # one at a time: a GPU's (the flags concern only CUDA)
            with full_float32(torch):
                results = [run(idx) for idx in batches]
        out: list = [None] * len(samples)
        for idx, result in zip(batches, results):
            for j, i in enumerate(idx):
                out[i] = result[j]
        return out

    def _batches(self, samples: list[int], key):
        """Items of equal shape (key), in order, in batches of at most batch_samples samples (at least one)."""
        groups: dict = {}
        for i in range(len(samples)):
            groups.setdefault(key(i), []).append(i)
        for members in groups.values():
            limit = self.batch_samples if self.device == "cpu" else GPU_BATCH_SAMPLES
            per_batch = max(1, limit // max(1, samples[members[0]]))
            for start in range(0, len(members), per_batch):
                yield members[start:start + per_batch]
