"""One prepared run on a lent GPU machine (the `device` tool): the tool's GPU path, then training on the GPU.

The GPU machine holds no copy of ../shared/data and no eegz dependencies beyond torch, and only 64 MiB
travel with the working tree, so `prepare` builds what the run needs in a folder git ignores:
    python benchmarks/device_run.py prepare .gpu
- pack/: the recordings that `eegz train` loads from eegmat, eegmmidb and Bonn (each channel at 256 Hz,
  normalized per 16-s block as compression does), quantized to 1/2048 of 16 robust sigma (sigma/128: its
  noise is 50 dB below the signal, under eegmat's amplifier floor above 70 Hz) and coded by eegz's own exact
  layer. Validation recordings keep only the four windows that training validates on; eegmmidb keeps 7 of
  its 14 runs (size);
- whl/, site/: the missing packages (descript-audio-codec and its imports, zstandard, xxhash, constriction);
- _core.abi3.so: the compiled inner loops, built against the stable ABI so that the machine's Python runs them.
There (after installing the wheels, with src/ and .gpu/site on PYTHONPATH), as on 2026-11-27:
    python -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl; cp .gpu/_core.abi3.so src/eegz/
    PYTHONPATH=$PWD/src:$PWD/.gpu/site:/tmp/site timeout 500 python benchmarks/device_run.py run --pack .gpu/pack \
        --out $OUT --seconds 360 --stage third
(only 8 files under $OUT come back: four runs' models, cards and logs are 12, so `run` ends by packing the logs
and cards into logs.tgz; a run cut by the timeout leaves them loose, so keep --seconds well under it. A run that
goes on from an earlier model finds it under .gpu/models/, and the working tree with .gpu must stay under
64 MiB: one model at most. Stages: SETTINGS; --names runs some of a stage's settings, --no-check skips the
GPU-path check.)
(1) device_check: compress the example recording with --device cpu and with --device cuda (DAC-SC at 3, 6
and 9 codebooks, DAC-MC at 6) and compare the token streams byte for byte, and the decoded samples of each
file on both devices; (2) training: fine-tunes a DAC-SC model in the stage's settings side by side on the
one GPU, each for `--seconds` with its learning-rate schedule fitted to that time; their models, and logs.tgz
with their cards and logs, come back under $OUT.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from eegz.neural import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ("eegmat", "eegmmidb", "bonn")
VAL_SUBJECTS = ("Subject1[4-7]", "bonn-*-051-070")  # the shipped models' validation split
SCALE = 2048  # quantization of the normalized signals: 1/SCALE of 16 robust sigma
CHUNK = 4096  # samples per exact-coded group
EEGMMIDB_RUNS = 4  # of 14, spread over them: the tracked tree (38 MB) and .gpu must fit the 64 MiB that travel
WHEELS = ["descript-audio-codec==1.0.0", "descript-audiotools==0.7.2", "docstring_parser==0.18.0",
          "flatten-dict==0.5.0", "ffmpy==1.0.0", "fire==0.7.1", "importlib_resources==7.1.0", "julius==0.2.8",
          "termcolor==3.3.0", "librosa==0.11.0", "decorator==5.3.1", "pooch==1.9.0", "platformdirs==4.14.8",
          "pycparser==3.12"]
BINARY_WHEELS = ["xxhash==4.1.0", "zstandard==0.25.0", "constriction==0.5.0", "soundfile==0.14.0",
                 "cffi==2.1.1"]  # soundfile imports cffi's backend, which the lent machine lacked (2026-11-27)
SDIST_ONLY = ["argbind", "randomname"]  # pure Python, published as sources only: copied from this environment
CHECK_SECONDS = 90
SC, MC = DEFAULT_MODEL, "eegz-dac-mc-256hz-hop64"
# (model, codebooks, TF32): TF32 off is what eegz runs (neural.full_float32); runs 1-2 also measured it on
CHECK_ROWS = ((SC, 3, False), (SC, 6, False), (SC, 9, False), (MC, 6, False))
G2 = {"line_weight": 4.0, "excess_weight": 1.0}
G4 = {**G2, "image_weight": 0.3}
# per stage, the training settings that run side by side: (name, batch, lr, final lr, TrainSettings fields)
SETTINGS = {"first": (("b128", 128, 1e-4, 1e-5, {}), ("b512", 512, 3e-4, 1e-5, {})),
            # from b512: the same losses, and the line and image losses stronger (b512's validation lines at 57-61 Hz)
            "second": (("c1", 512, 1e-4, 1e-5, {}), ("c2", 512, 1e-4, 1e-5, {"line_weight": 2.0, "image_weight": 1.0})),
            # from the shipped model, four side by side (the first stages' steps were bound by each process, not the
            # GPU): the shipped losses; the line loss x4 with the spectral-excess loss (R4's cure for invented
            # lines, left out of R6 and of the first stages, whose validation lines rose); that with the STFT loss x3
            # (the texture detector reads 2-Hz bins of 0.5-s windows); that with the image loss
            "third": tuple((name, 256, 1e-4, 1e-5, {"warmup_steps": 200, **extra}) for name, extra in (
                ("g1", {}), ("g2", G2), ("g3", {**G2, "stft_weight": 3.0}), ("g4", G4))),
            # lower learning rates: g1 goes on; the shipped model at 3e-5 (its own stage ran at 5e-5, batch 32) with
            # the shipped losses and with g2's; g1 with g2's losses (g1 gained the most PRDN, its validation lines
            # rose). "from": under the pack's folder (g1 alone: the working tree must stay under 64 MiB)
            "fourth": tuple((name, 256, 3e-5, 1e-5, {"warmup_steps": 100, **extra}) for name, extra in (
                ("h1", {"from": "models/g1.npz"}), ("h2", {"warmup_steps": 200}),
                ("h3", {"warmup_steps": 200, **G2}), ("h4", {"from": "models/g1.npz", **G2}))),
            # for the next lent GPU: the single-channel lines of held-out eegmat (2.0-2.6x at 57-63 Hz) that the
            # line loss, seeing each dataset's mean spectrum, dilutes: batches in groups of one channel and the line
            # loss per channel (line_group), from eegz 0.12's default (g4), g4's losses. On 2 CPU cores (40 min,
            # groups of 16, line loss x4, lr 3e-5) it took the worst channel's line from 2.57 to 1.91x (the
            # spectrum-only reference's 1.50-1.69x) but PRDN at 6 codebooks from 23.7 to 28.1 %: lighter weights here
            "fifth": tuple((name, 256, 1e-4, 1e-5, {"warmup_steps": 200, **G4, **extra}) for name, extra in (
                ("k1", {"line_group": 16, "line_weight": 1.0}), ("k2", {"line_group": 16, "line_weight": 2.0}),
                ("k3", {"line_group": 32, "line_weight": 1.0}), ("k4", {}))),
            # decoder only (freeze_encoder: every file keeps the default model's tokens, so a new model changes no
            # bit rate and can be judged on decoding alone): g4's losses and g1's (g1 gained 0.6 PRDN points at 6
            # codebooks on this GPU but raised eegmat's lines), at two learning rates. On 2 CPU cores at batch 32
            # (session 25, 5000 steps at lr 2e-5, g4's losses), through the codec at 6 codebooks: held-out eegmat
            # channels above 1.5x 43 -> 40 of 160, invented events 0.68 -> 0.54 a channel-minute, PRDN +0.3 points;
            # Bonn texture within a point, lines mixed: the trade of every CPU run, which batch 256 may not have.
            # Session 28 ran d2 and d4 on 1 CPU thread at batch 256 for 500 steps (training_ablation.md D2, D4): d4
            # eegmat PRDN 23.45 -> 23.25 % through the codec but channels above 1.5x 32 -> 42 and Bonn D's line
            # 1.33 -> 1.64x; d2 PRDN 23.45 -> 24.13 %: the same trade at batch 256, so this stage is the last to run
            "sixth": tuple((name, 256, lr, 1e-5, {"warmup_steps": 200, "freeze_encoder": True, **extra})
                           for name, lr, extra in (("d1", 1e-4, G4), ("d2", 3e-5, G4), ("d3", 1e-4, {}),
                                                   ("d4", 3e-5, {}))),
            # wider decoders (decoder_dim, `eegz train --decoder-dim`: the shipped decoder embedded in a wider one whose
            # new channels start unread), decoder only so that every file keeps its tokens, g1's losses (the line loss
            # at 1), against the shipped width in the same run. The 100x floor on 2 CPU cores allows 192
            # (decoder_width_speed.md: 160 113x, 192 103x). On 2 CPU cores (session 31, one
            # thread each, 1.9 h side by side, lr 6e-5): 160 wide, 1721 steps, validation PRDN at 6 codebooks eegmat / Bonn
            # 20.33 / 17.83 -> 19.93 / 17.29 %; the same at 128, 1998 steps, 20.01 / 17.38: width bought a tenth of a point,
            # and without the line loss Bonn's validation line rose to 2.69x (128: 1.76x). Here: longer, 192, the line loss
            "seventh": tuple((name, 256, lr, 1e-5, {"warmup_steps": 200, "freeze_encoder": True, "decoder_dim": dim})
                             for name, dim, lr in (("w1", 160, 1e-4), ("w2", 192, 1e-4), ("w3", 192, 3e-4),
                                                   ("w0", 128, 1e-4))),
            # the quantizer: in the shipped model the quantized sum moves away from the encoder's output as codebooks
            # are added (relative squared distance 0.83 at 1 codebook, 1.49 at 9), so later codebooks undo as much as
            # they refine. The latent loss (latent_weight) asks each count to approach the output; min_codebooks 3
            # spends no training on 1 or 2 codebooks, which no file uses. Whole model, the shipped losses (G4). On 2
            # CPU cores (session 32, one thread each, batch 128, lr 3e-5, 1000 steps; training_ablation.md K0-K2,
            # codebook_gain.md) all lost ground from the shipped model, the latent loss least: validation PRDN at 6
            # codebooks eegmat / Bonn 20.33 / 17.83 -> 20.87 / 18.70 (control), 20.46 / 18.68 (latent 0.5 on the
            # codebooks and out_proj, min 3), lines 1.47 / 1.90 -> 1.41 / 1.24; but the latent distance at 9
            # codebooks still grew (1.49 -> 1.62; control 1.50). Here: ten times the steps, the latent loss at two weights
            "eighth": tuple((name, 256, 1e-4, 1e-5, {"warmup_steps": 200, **G4, **extra})
                            for name, extra in (("q1", {"latent_weight": 0.5, "min_codebooks": 3}),
                                                ("q2", {"latent_weight": 0.1, "min_codebooks": 3}),
                                                ("q3", {"min_codebooks": 3}), ("q0", {}))),
            # the code lookup, from scratch ("code_lookup" starts a new model): DAC picks each code by direction
            # (cosine); k-means quantizers of raw 64-sample frames lose 15.7 -> 24.6 % PRDN at 6 stages so
            # (rvq_reference.md). By distance, unused codes moved onto the data: `--code-lookup euclidean`. On 2 CPU
            # cores (session 33, one thread each, batch 32, 85 minutes): training_ablation.md S0 and S1. Here:
            # batch 64, two learning rates, the first model's losses, quantizer dropout from 3 codebooks
            "ninth": tuple((name, 64, lr, 1e-5, {"min_codebooks": 3, "code_lookup": lookup})
                           for name, lookup, lr in (("s1", "euclidean", 3e-4), ("s2", "euclidean", 1e-3),
                                                    ("s0", "cosine", 3e-4), ("s3", "cosine", 1e-3))),
            # the shipped model switched to codes by distance ("switch_lookup": `--from-model M --code-lookup euclidean`,
            # codebooks refitted by k-means), then fine-tuned whole with its own losses (G4). On 2 CPU cores (session 34,
            # one thread each, batch 64, lr 3e-5, 110 minutes; training_ablation.md C0 / C1): validation PRDN at 6
            # codebooks eegmat / Bonn 20.3 / 17.8 -> 19.9 / 17.2 % at 57.5 bits a frame (the shipped 57.0); the same
            # fine-tuning with DAC's lookup kept 20.3 / 18.1. Here: batch 256 as lines2 was trained, two rates, the control
            "tenth": tuple((name, 256, lr, 1e-5, {"warmup_steps": 200, "min_codebooks": 3, **G4, **extra})
                           for name, lr, extra in (("c1", 1e-4, {"switch_lookup": True}),
                                                   ("c2", 3e-5, {"switch_lookup": True}), ("c0", 1e-4, {}))),
            # stages that refine: the shipped model switched as in `tenth`, then each stage's out_proj refitted by least
            # squares to the residual it is given (latent left at 6 codebooks 1.52 -> 0.065; made by
            # `python benchmarks/refit_projections.py .gpu/models/refit.npz`). The shipped decoder never saw such sums
            # (40.9 % at 6 codebooks on eegmat before training). On 2 CPU cores (session 35, one thread each, batch 64,
            # lr 1e-4, 95 minutes; training_ablation.md P1 / P2) the decoder relearned too slowly to pass the shipped
            # model: here at batch 256, the decoder alone (p1) and the whole model with the latent loss at 20 (p2, p3)
            "eleventh": tuple((name, 256, lr, 1e-5, {"warmup_steps": 200, "min_codebooks": 3, "from": "models/refit.npz",
                                                     **G4, **extra})
                              for name, lr, extra in (("p1", 3e-4, {"freeze_encoder": True}),
                                                      ("p2", 1e-4, {"latent_weight": 20.0}),
                                                      ("p3", 3e-4, {"latent_weight": 20.0})))}


# ---------------------------------------------------------------- here: prepare

def pack_recordings(data: Path, out: Path) -> dict:
    from eegz.exact import ExactItem, encode_group
    from eegz.train import fixed_windows, load_recordings, split_subjects
    recordings = load_recordings([str(data / name) for name in INPUTS], 256)
    runs = [r for r in recordings if r.source == 1]
    keep_runs = {id(r) for r in runs[::len(runs) // EEGMMIDB_RUNS or 1][:EEGMMIDB_RUNS]}
    recordings = [r for r in recordings if r.source != 1 or id(r) in keep_runs]
    _, val_ids = split_subjects([r.subject for r in recordings], 0.2, VAL_SUBJECTS)
    window = 1024
    out.mkdir(parents=True, exist_ok=True)
    meta, offset = [], 0
    with open(out / "streams.bin", "wb") as f:
        for r in recordings:
            signals = r.signals
            if r.subject in val_ids:  # only the windows validation reads, in order (fixed_windows finds them again)
                signals = fixed_windows([r], window).reshape(len(r.labels), -1)
            q = np.clip(np.round(signals * SCALE), -32768, 32767).astype(np.int64)
            lengths = []
            for start in range(0, q.shape[1], CHUNK):
                for data_ in encode_group([ExactItem(ch[start:start + CHUNK], 0, -32768, 32767) for ch in q]):
                    f.write(data_)
                    lengths.append(len(data_))
            meta.append({"source": r.source, "subject": r.subject, "labels": r.labels, "nyquist": r.nyquist,
                         "samples": int(q.shape[1]), "lengths": lengths})
            offset += sum(lengths)
    (out / "meta.json").write_text(json.dumps({"scale": SCALE, "chunk": CHUNK, "inputs": list(INPUTS),
                                               "val_subjects": list(VAL_SUBJECTS), "recordings": meta}))
    return {"recordings": len(meta), "bytes": offset}


def unpack_recordings(pack: Path):
    from eegz.exact import Expected, decode_group
    from eegz.train import Recording
    meta = json.loads((pack / "meta.json").read_text())
    recordings = []
    with open(pack / "streams.bin", "rb") as f:
        for m in meta["recordings"]:
            lengths, channels = iter(m["lengths"]), len(m["labels"])
            parts = []
            for start in range(0, m["samples"], meta["chunk"]):
                n = min(meta["chunk"], m["samples"] - start)
                streams = [f.read(next(lengths)) for _ in range(channels)]
                parts.append(np.stack(decode_group(streams, [Expected(n, -32768, 32767, True)] * channels)))
            signals = (np.concatenate(parts, axis=1) / meta["scale"]).astype(np.float32)
            recordings.append(Recording(m["source"], m["subject"], m["labels"], signals, m["nyquist"]))
    return recordings, meta


def build_core_abi3(out: Path) -> None:
    """_core.c against Python's stable ABI (3.11+): the few macros it uses become their function forms."""
    import sysconfig
    shim = out / "abi3_shim.h"
    shim.write_text("#define Py_LIMITED_API 0x030B0000\n#define PY_SSIZE_T_CLEAN\n#include <Python.h>\n"
                    + "".join(f"#undef {m}\n#define {m}{args} {fn}\n" for m, args, fn in (
                        ("PyList_GET_SIZE", "(o)", "PyList_Size(o)"),
                        ("PyList_GET_ITEM", "(o, i)", "PyList_GetItem((o), (i))"),
                        ("PyList_SET_ITEM", "(o, i, v)", "PyList_SetItem((o), (i), (v))"),
                        ("PyTuple_SET_ITEM", "(o, i, v)", "PyTuple_SetItem((o), (i), (v))"),
                        ("PyBytes_AS_STRING", "(o)", "PyBytes_AsString(o)"))))
    subprocess.run(["gcc", "-O3", "-std=c99", "-shared", "-fPIC", "-include", str(shim),
                    "-I" + sysconfig.get_paths()["include"], "-I" + str(ROOT / "src/eegz"),
                    str(ROOT / "src/eegz/_core.c"), "-o", str(out / "_core.abi3.so")], check=True)


def fetch_packages(out: Path) -> None:
    whl, site = out / "whl", out / "site"
    shutil.rmtree(whl, ignore_errors=True)
    shutil.rmtree(site, ignore_errors=True)
    common = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
              "3.12", "--implementation", "cp", "-d", str(whl)]
    linux = [arg for tag in ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_28_x86_64")
             for arg in ("--platform", tag)]
    subprocess.run(common + ["--platform", "any"] + WHEELS, check=True)
    subprocess.run(common + linux + BINARY_WHEELS, check=True)
    for name in SDIST_ONLY:
        module = __import__(name)
        shutil.copytree(Path(module.__file__).parent, site / name, ignore=shutil.ignore_patterns("__pycache__"))


# ---------------------------------------------------------------- there: the GPU path of the tool

def _streams(path: Path) -> list:
    from eegz.container import Container
    with Container(path) as c:
        return [(k, s.signal, s.kind, s.data) for k in range(len(c.blocks)) for s in c.read_block(k)]


def check_gpu_path(out: Path, log, gpu: str = "cuda") -> dict:
    """Same tokens on both devices? Decoded samples within float tolerance? Timings of each."""
    from eegz import api
    from eegz.container import NEURAL_TOKENS
    from eegz.edf import read_edf
    from eegz.metrics import prdn_pooled
    source = ROOT / "examples" / "eegmat_Subject17_2.edf"
    edf = read_edf(source)
    original = {s.label: s.to_physical(d) for s, d in zip(edf.header.signals, edf.digital) if not s.is_annotation}
    work = Path("/tmp/eegz-check")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    results = []
    import torch
    for model, codebooks, tf32 in CHECK_ROWS:
        # TF32: torch lets cuDNN convolutions round their inputs to 10-bit mantissas unless told not to
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
        row = {"model": model, "codebooks": codebooks, "tf32": tf32}
        files = {}
        for device in ("cpu", gpu, gpu):  # the GPU twice: the first call pays for loading and kernel choice
            files[device] = work / f"{model}-{codebooks}-{tf32}-{device}.eegz"
            t = time.perf_counter()
            api.compress(source, files[device], codebooks=codebooks, device=device, model=model, force=True)
            row[f"encode_s_{device}"] = round(time.perf_counter() - t, 3)
        a, b = _streams(files["cpu"]), _streams(files[gpu])
        row["streams"] = len(a)
        row["streams_differing"] = sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))
        row["token_streams_differing"] = sum(x != y for x, y in zip(a, b) if x[2] == NEURAL_TOKENS)
        decoded = {}
        for name, path, device in (("cpu_file_on_cpu", files["cpu"], "cpu"), ("cpu_file_on_cuda", files["cpu"], gpu),
                                   ("cpu_file_on_cuda", files["cpu"], gpu), ("cuda_file_on_cpu", files[gpu], "cpu")):
            t = time.perf_counter()
            decoded[name] = api.read_signals(path, device=device, model=model)
            row[f"decode_s_{name}"] = round(time.perf_counter() - t, 3)
        eeg = [k for k in decoded["cpu_file_on_cpu"] if k.startswith("EEG")]

        def worst(p, q):
            return max(float(np.max(np.abs(p[k] - q[k]))) for k in eeg)

        def prdn(q):
            return prdn_pooled([original[k] for k in eeg], [q[k] for k in eeg])
        row["max_abs_uv_cpu_vs_cuda_decode"] = worst(decoded["cpu_file_on_cpu"], decoded["cpu_file_on_cuda"])
        row["max_abs_uv_cpu_vs_cuda_file"] = worst(decoded["cpu_file_on_cpu"], decoded["cuda_file_on_cpu"])
        row["prdn_cpu_file"] = round(prdn(decoded["cpu_file_on_cpu"]), 3)
        row["prdn_cuda_file"] = round(prdn(decoded["cuda_file_on_cpu"]), 3)
        row["prdn_cpu_file_decoded_on_cuda"] = round(prdn(decoded["cpu_file_on_cuda"]), 3)
        log(json.dumps(row))
        results.append(row)
    return {"recording": source.name, "rows": results}


# ---------------------------------------------------------------- there: training

def train_one(pack: Path, out: Path, name: str, batch: int, lr: float, lr_final: float, seconds: float,
              device: str = "cuda", from_model: Path | None = None, extra: dict | None = None) -> None:
    from eegz.neural import ModelConfig, resolve_model_path
    from eegz.train import TrainSettings, train
    recordings, meta = unpack_recordings(pack)
    settings = TrainSettings(steps=100000, batch_size=batch, lr=lr, lr_final=lr_final, stft_weight=1.0,
                             line_length_weight=1.0, line_weight=1.0, eval_every=500, checkpoint_every=500,
                             threads=4, device=device, max_seconds=seconds)
    extra = dict(extra or {})
    lookup = extra.pop("code_lookup", None)  # given: a new model with this code lookup, not the shipped one
    switch = extra.pop("switch_lookup", False)  # the starting model switched to codes by distance first
    for key, value in extra.items():
        setattr(settings, key, value)
    work = Path("/tmp") / f"train-{name}"
    shutil.rmtree(work, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / f"{name}.log"

    def log(message: str) -> None:
        with open(log_path, "a") as f:
            f.write(message + "\n")
        for suffix in (".npz", ".json"):  # the newest checkpoint back under $OUT, whole (a timeout can come any time)
            src = work / f"model{suffix}"
            if src.exists() and src.stat().st_mtime > getattr(log, "copied", 0):
                tmp = out / f".{name}{suffix}"
                shutil.copyfile(src, tmp)
                os.replace(tmp, out / f"{name}{suffix}")
        log.copied = time.time()

    log(f"{name}: {len(recordings)} recordings, batch {batch}, lr {lr} -> {lr_final}, {seconds} s")
    start = None if lookup else from_model or resolve_model_path(None)
    train([str(i) for i in meta["inputs"]], work, ModelConfig(upsampling="balanced", code_lookup=lookup or "cosine"),
          settings, from_model=start, val_subjects=tuple(meta["val_subjects"]), quiet=True, log=log,
          recordings=recordings, switch_lookup=switch)
    log("done")


def log(message: str) -> None:
    print(message, flush=True)


def _environment(device: str) -> dict:
    import torch
    from eegz import __version__
    return {"eegz": __version__, "torch": torch.__version__, "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
            "python": sys.version.split()[0], "cpu_threads": torch.get_num_threads()}


def check(out: Path, device: str) -> None:
    env = _environment(device)
    try:
        result = check_gpu_path(out, log, device)
    except Exception as e:
        result = {"error": f"{type(e).__name__}: {e}"}
        log(result["error"])
    (out / "device_check.json").write_text(json.dumps({"environment": env, **result}, indent=1))


def run(pack: Path, out: Path, seconds: float, device: str = "cuda", stage: str = "first",
        from_model: Path | None = None, check_path: bool = True, names: list | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    log(json.dumps(_environment(device)))
    try:  # apart, with a time limit: a check that fails or hangs must not cost the training run
        if check_path:
            subprocess.run([sys.executable, __file__, "check", "--out", str(out), "--device", device],
                           timeout=CHECK_SECONDS)
    except subprocess.TimeoutExpired:
        log(f"the check took over {CHECK_SECONDS} s")
    workers = []
    for name, batch, lr, final, extra in SETTINGS[stage]:
        if names and name not in names:
            continue
        extra = dict(extra)
        start = pack.parent / extra.pop("from") if "from" in extra else from_model
        workers.append(subprocess.Popen([sys.executable, __file__, "train-one", "--pack", str(pack), "--out", str(out),
                                         "--name", name, "--batch", str(batch), "--lr", str(lr), "--lr-final",
                                         str(final), "--seconds", str(seconds), "--device", device, "--extra",
                                         json.dumps(extra)] + (["--from-model", str(start)] if start else [])))
    for w in workers:
        w.wait()
    log(f"training exits {[w.returncode for w in workers]}")
    _pack_logs(out)


def _pack_logs(out: Path) -> None:
    """The logs and cards under out into logs.tgz: only 8 files come back from a lent machine."""
    import tarfile
    loose = sorted(p for p in out.iterdir() if p.suffix in (".log", ".json"))
    with tarfile.open(out / "logs.tgz", "w:gz") as tar:
        for p in loose:
            tar.add(p, arcname=p.name)
    for p in loose:
        p.unlink()


# ---------------------------------------------------------------- here again: the results

def _machine(env: dict) -> str:
    return f"{env['gpu']}, torch {env['torch']} (CUDA {env['cuda']}), Python {env['python']}, {env['cpu_threads']} CPU threads"


def _pipeline_rows(benchmarks: list[Path]) -> list[str]:
    """Mean over the held-out eegmat recordings through compress / decompress, from lossy_benchmark.py's json."""
    rows = []
    for path in benchmarks:
        result = json.loads(path.read_text())
        name = result["model"] if result["model"] != "model" else path.stem.replace("lossy_", "")  # a run's own name
        for n in (3, 6, 9):
            got = [r for r in result["rows"] if r["codebooks"] == n and r["file"] != "eegmat_Subject17_2.edf"]
            mean = {k: float(np.mean([r[k] for r in got])) for k in ("bits_per_second_per_channel", "prdn")}
            rows.append(f"| {name} | {n} | {mean['bits_per_second_per_channel']:.0f} | {mean['prdn']:.1f} | "
                        f"{max(r['line_ratio'] for r in got):.2f} | {max(r['line_mean_ratio'] for r in got):.2f} | "
                        f"{', '.join(sorted({format(r['line_mean_hz'], '.0f') for r in got}))} |")
    return rows


def _losses(s: dict) -> str:
    """The loss weights and warm-up a run used, beside the waveform and mel terms every run has."""
    parts = [f"{name} {s[key]:g}" for name, key in (("STFT", "stft_weight"), ("line length", "line_length_weight"),
                                                     ("lines", "line_weight"), ("excess", "excess_weight"),
                                                     ("images", "image_weight")) if s.get(key)]
    return ", ".join(parts + ([f"warm-up {s['warmup_steps']}"] if s.get("warmup_steps") else []))


def report(checks: list[Path], trained: list[Path], results: Path, benchmarks: list[Path],
           name: str = "gpu_training", clinical: str = "clinical_gpu", about: str = "") -> None:
    """benchmarks/results/gpu_path.{md,json} from the runs' device_check.json (or an earlier gpu_path.json, which
    holds several), results/<name>.md from the trained models' cards; `clinical`: the tag that clinical.py ran with."""
    runs = []
    for p in checks:
        data = json.loads(p.read_text())
        runs += data if isinstance(data, list) else [data]
    lines = ["# The GPU path of eegz compress / decompress", "",
             f"Written by `benchmarks/device_run.py` (check) on a lent machine: {_machine(runs[-1]['environment'])}. Recording "
             f"{runs[-1]['recording']} (20 EEG channels at 500 Hz + ECG, 62 s), compressed once with `--device cpu` "
             "(16 cores) and once with `--device cuda`, each file decoded on both devices. "
             "Streams differing: of the file's streams (88: 22 blocks x 4 with a token stream), those whose bytes differ "
             "(all of them token streams). Decoded difference: the largest |difference| in µV over every EEG sample. "
             "TF32 off is what eegz does since this measurement (neural.full_float32); on is torch's default for "
             "cuDNN convolutions. Seconds: the second GPU call (the first loads the model and chooses kernels).", "",
             "| run | eegz | model | codebooks | TF32 | streams differing | PRDN CPU file / GPU file % | same file, CPU vs GPU decode µV "
             "| CPU vs GPU file, decoded on CPU µV | encode s CPU / GPU | decode s CPU / GPU |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for k, run_ in enumerate(runs, 1):
        for r in run_["rows"]:
            lines.append(f"| {k} | {run_['environment'].get('eegz', '')} | {r['model']} | {r['codebooks']} | {'on' if r.get('tf32', True) else 'off'} | "
                         f"{r['streams_differing']} of {r['streams']} | {r['prdn_cpu_file']:.2f} / {r['prdn_cuda_file']:.2f} | "
                         f"{r['max_abs_uv_cpu_vs_cuda_decode']:.4f} | {r['max_abs_uv_cpu_vs_cuda_file']:.2f} | "
                         f"{r['encode_s_cpu']:.2f} / {r['encode_s_cuda']:.2f} | "
                         f"{r['decode_s_cpu_file_on_cpu']:.2f} / {r['decode_s_cpu_file_on_cuda']:.2f} |")
    (results / "gpu_path.md").write_text("\n".join(lines) + "\n")
    (results / "gpu_path.json").write_text(json.dumps(runs, indent=1) + "\n")
    rows = ["# Training on the lent GPU (benchmarks/device_run.py)", ""] + ([about, ""] if about else []) + [
            "Validation during training: held-out eegmat subjects (Subject14-17) and Bonn segments 051-070, 4-s windows at "
            "256 Hz normalized as compression does; PRDN % at 3 / 6 / 9 codebooks, and the strongest invented line at 6 "
            "(metrics.line_ratio_psd on the windows' mean spectrum).", "",
            "| run | from | batch | lr | losses | step | seconds | eegmat PRDN 3 / 6 / 9 | Bonn PRDN 3 / 6 / 9 | "
            "line x eegmat / Bonn (6) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for path in trained:
        card = json.loads(path.read_text())["training"]
        s = card["settings"]
        for h in card["history"]:
            rows.append(f"| {path.stem} | {Path(card.get('from_model') or '').stem} | {s['batch_size']} | "
                        f"{s['lr']:g} -> {s['lr_final']:g} | {_losses(s)} | {h['step']} | {h.get('seconds', 0):g} | "
                        + " / ".join(f"{h[f'eegmat_prdn_{n}']:.1f}" for n in (3, 6, 9)) + " | "
                        + " / ".join(f"{h[f'bonn_prdn_{n}']:.1f}" for n in (3, 6, 9)) + " | "
                        f"{h['eegmat_line_ratio_6']:.2f} / {h['bonn_line_ratio_6']:.2f} |")
    rows += ["", "Through `eegz compress` / `decompress` (benchmarks/lossy_benchmark.py with EEGZ_BENCH_MODEL, band "
             "envelope on), mean over the held-out eegmat recordings Subject14-17 (_2, 62 s each); line: the strongest "
             "invented line on the worst channel and on the channels' mean spectrum (max over the recordings; chance "
             "1.69 / 1.23), and where the mean spectrum's lies.", "",
             "| model | codebooks | bit/s/ch | PRDN % | line: worst channel | channel mean | at Hz |",
             "|---|---|---|---|---|---|---|"] + _pipeline_rows(benchmarks) + [
             "", f"Bonn 051-070, both detectors, band errors on 0.5-s windows and lines per set: `results/{clinical}.md` "
             f"(benchmarks/clinical.py with EEGZ_BENCH_MODELS naming the trained models and EEGZ_BENCH_TAG={clinical})."]
    (results / f"{name}.md").write_text("\n".join(rows) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare")
    prep.add_argument("folder", type=Path)
    prep.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    r = sub.add_parser("run")
    r.add_argument("--pack", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--seconds", type=float, default=330)
    r.add_argument("--device", default="cuda", help="cpu: try the run here first")
    r.add_argument("--stage", default="first", choices=sorted(SETTINGS))
    r.add_argument("--from-model", type=Path)
    r.add_argument("--names", nargs="*", help="only these of the stage's settings")
    r.add_argument("--no-check", action="store_true", help="training only (the GPU path was checked in an earlier call)")
    rep = sub.add_parser("report")
    rep.add_argument("--checks", type=Path, nargs="+", required=True)
    rep.add_argument("--trained", type=Path, nargs="+", required=True)
    rep.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    rep.add_argument("--name", default="gpu_training", help="the training table's file under results/ (no suffix)")
    rep.add_argument("--clinical", default="clinical_gpu", help="the EEGZ_BENCH_TAG clinical.py ran the models with")
    rep.add_argument("--about", default="", help="a paragraph under the training table's title")
    rep.add_argument("--benchmarks", type=Path, nargs="*", default=[],
                     help="lossy_benchmark.py results (json) of the shipped model and of the trained ones")
    c = sub.add_parser("check")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--device", default="cuda")
    one = sub.add_parser("train-one")
    for arg, kind in (("--pack", Path), ("--out", Path), ("--name", str), ("--batch", int), ("--lr", float),
                      ("--lr-final", float), ("--seconds", float)):
        one.add_argument(arg, type=kind, required=True)
    one.add_argument("--device", default="cuda")
    one.add_argument("--from-model", type=Path)
    one.add_argument("--extra", type=json.loads, default={})
    a = p.parse_args()
    if a.command == "prepare":
        a.folder.mkdir(parents=True, exist_ok=True)
        print(pack_recordings(a.data, a.folder / "pack"))
        build_core_abi3(a.folder)
        fetch_packages(a.folder)
    elif a.command == "report":
        report(a.checks, a.trained, a.results, a.benchmarks, a.name, a.clinical, a.about)
    elif a.command == "check":
        check(a.out, a.device)
    elif a.command == "run":
        run(a.pack, a.out, a.seconds, a.device, a.stage, a.from_model, not a.no_check, a.names)
    else:
        train_one(a.pack, a.out, a.name, a.batch, a.lr, a.lr_final, a.seconds, a.device, a.from_model, a.extra)


if __name__ == "__main__":
    main()
