"""Write a shipped model's card (eegz/models/<name>.md) from its JSON card and the benchmark results.

EEGZ_MODEL_NAME picks the model (default: the DAC-SC default model); EEGZ_BENCH_TAG the results to quote
(lossy.md and baselines.md by default); EEGZ_TRAIN_HOURS the wall-clock training time to state, or
EEGZ_TRAIN_TIME the whole phrase for a run that was not on the 2-core machine; EEGZ_TRAIN_WHERE names the
machine of a run on a GPU.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the benchmarks package; eegz is the installed one

from eegz.neural import DEFAULT_MODEL, ModelConfig  # noqa: E402

NAME = os.environ.get("EEGZ_MODEL_NAME", DEFAULT_MODEL)
TAG = os.environ.get("EEGZ_BENCH_TAG", "lossy")


def main() -> None:
    card = json.loads((ROOT / "src" / "eegz" / "models" / f"{NAME}.json").read_text())
    tr = card["training"]
    st = tr["settings"]
    last = tr["history"][-1] if tr["history"] else {}
    cfg = card["config"]
    config = ModelConfig.from_json(cfg)
    hop = config.hop
    mc = config.is_multichannel
    gpu = st.get("device", "cpu") != "cpu"
    where = os.environ.get("EEGZ_TRAIN_WHERE", "a GPU") if gpu else "2 CPU cores"
    took = os.environ.get("EEGZ_TRAIN_TIME") or (f"{os.environ.get('EEGZ_TRAIN_HOURS', '?')} h of wall-clock time on the "
                                                 "2-core machine, 1-2 threads, shared with development")
    about = ("A multi-channel EEG codec (DAC-MC): the DAC-SC model it was fine-tuned from (`" +
             Path(str(tr.get("from_model"))).stem + "`, encoder and codebooks frozen, so the tokens are that "
             "model's), plus self-attention across the channels of a block and one learned style vector per "
             f"electrode ({len(cfg['electrodes'])} electrodes: {', '.join(cfg['electrodes'])}; index 0 = unknown) "
             "on decode. Fine-tuned by `eegz train --variant mc` on 2 CPU cores; "
             f"{tr.get('channels_per_window')} random channels of one recording per training window."
             if mc else "A single-channel EEG codec (DAC-SC): descript-audio-codec's `dac.model.DAC`, " + (
                 f"fine-tuned from `{Path(str(tr['from_model'])).stem}` by `eegz train` on {where}"
                 + (", with balanced decoder upsampling (spec 6.2: no spectral lines at multiples of the frame rate)"
                    if cfg.get("upsampling") == "balanced" else "") + "."
                 if tr.get("from_model") else "trained from scratch on EEG by `eegz train` on 2 CPU cores."))
    lines = [f"# Model card: {NAME}", "", about, "",
             "## Configuration", "",
             f"`DAC({', '.join(f'{k}={v}' for k, v in config.dac_arguments().items())})`: codec rate {cfg['sample_rate']} Hz, "
             f"hop {hop} samples ({cfg['sample_rate'] / hop:g} frames/s), {cfg['n_codebooks']} codebooks of "
             f"{cfg['codebook_size']} (10 bits), so {10 * cfg['sample_rate'] / hop:g} bit/s per codebook per channel "
             "before side information. Weights: `" + NAME + ".npz` (float32, pickle-free), SHA-256 "
             f"`{card['weights_sha256']}`.", "",
             "## Training", "",
             f"- Data: {', '.join(Path(i).name for i in tr['inputs'])} from the shared data folder (PhysioNet eegmat and "
             "eegmmidb, ODC-By 1.0" + ("; Bonn sets A-E, Andrzejak et al. 2001, freely distributed for research with "
                                      "citation; segments 001-050 train, 051-070 validate"
                                      if any(Path(i).name == "bonn" for i in tr["inputs"]) else "") + ").",
             f"- Train subjects: {', '.join(tr['train_subjects'])}; validation (whole subjects, never trained on): "
             f"{', '.join(tr['val_subjects'])}.",
             "- Preprocessing: " + (f"resample to 256 Hz, then exactly what compression applies: {tr['normalization']}."
                                    if tr.get("normalization") else
                                    "(training only) resample to 256 Hz, 0.1 Hz high-pass, clip ±200 µV, scale to [-1, 1]."),
             f"- Loss: {st['waveform_weight']:g} × L1 waveform + {st['mel_weight']:g} × DAC multi-scale mel "
             + (f"(windows 32-256); frozen: {', '.join(tr.get('frozen', []))}; the number of codebooks drawn "
                "uniformly from 3-9 per step" + ("; the waveform L1 taken relative to the frozen DAC-SC decoder's L1 "
                "at the same number of codebooks" if tr.get("objective") else "") + "; " if mc else
                "(windows 32-256) + "
                + "".join(f"{st[k]:g} × {label} + " for k, label in (
                    ("stft_weight", "multi-resolution STFT magnitude (linear and log)"),
                    ("line_length_weight", "line-length error"),
                    ("excess_weight", "spectral excess (invented power)"),
                    ("line_weight", "invented lines on each source's running spectrum"),
                    ("image_weight", "upsampling images (the decoder's copies of its input's spectrum)")) if st.get(k))
                + f"{st['commitment_weight']:g} × commitment + {st['codebook_weight']:g} × codebook; "
                f"quantizer dropout {st['quantizer_dropout']}; ")
             + "AdamW, betas (0.8, 0.99), "
             + (tr["schedule"] if tr.get("schedule") else f"lr {st['lr']:g}"
                + (f" decaying along a cosine to {st['lr_final']:g}" if st.get("lr_final") else "")
                + (f" after a linear warm-up over {st['warmup_steps']} steps" if st.get("warmup_steps") else ""))
             + "; batch "
             f"{st['batch_size']} × {st['window_seconds']:g} s; seed {st['seed']}; no adversarial phase.",
             f"- Steps: {tr['steps']} ({took}).", "",
             "## Validation during training (held-out subjects, preprocessed 4-s windows at 256 Hz)", "",
             "| step | PRDN 3 cb | PRDN 6 cb | PRDN 9 cb |", "|---|---|---|---|"]
    if mc:
        lines[-2:] = ["Step 0 is the DAC-SC model it starts from (the mixing starts as an identity); 'no mixing' "
                      "decodes with the fine-tuned decoder but without the channel mixing.", "",
                      "| step | PRDN 3 cb | PRDN 6 cb | PRDN 9 cb | no mixing 3 / 6 / 9 |", "|---|---|---|---|---|"]
    shown = tr["history"][::max(1, len(tr["history"]) // 12)]
    if tr["history"] and shown[-1] is not last:
        shown.append(last)
    per_set = bool(tr["history"]) and "eegmat_prdn_3" in tr["history"][0]
    if per_set:  # validation per dataset (eegmat subjects, Bonn segments), normalized as compression does
        lines[-4:] = ["## Validation during training (held-out eegmat subjects and Bonn segments, 4-s windows at 256 Hz, "
                      "normalized as compression does)", "",
                      "The line column counts bins up to 0.95 × 128 Hz as training logged it (eegz 0.3); for Bonn, "
                      "whose own Nyquist frequency is 86.8 Hz, a line above it is removed on the way back "
                      "(benchmarks/results/training_ablation.md measures below it).", "",
                      "| step | eegmat PRDN 3 / 6 / 9 | Bonn PRDN 3 / 6 / 9 | invented line × (eegmat / Bonn, 6 cb) |",
                      "|---|---|---|---|"]
    for h in shown:
        row = f"| {h['step']} | {h.get('prdn_3', 0):.1f} | {h.get('prdn_6', 0):.1f} | {h.get('prdn_9', 0):.1f} |"
        if per_set:
            row = (f"| {h['step']} | " + " / ".join(f"{h[f'eegmat_prdn_{n}']:.1f}" for n in (3, 6, 9)) + " | "
                   + " / ".join(f"{h[f'bonn_prdn_{n}']:.1f}" for n in (3, 6, 9)) + " | "
                   f"{h['eegmat_line_ratio_6']:.1f} / {h['bonn_line_ratio_6']:.1f} |")
        if mc:
            row += " " + " / ".join(f"{h.get(f'prdn_{n}_unmixed', 0):.1f}" for n in (3, 6, 9)) + " |"
        lines.append(row)
    for name, title in ((TAG, "Through eegz compress/decompress (raw EDF, own units)"),
                        ("baselines" if TAG == "lossy" else f"baselines_{TAG}", "Against classical coding at equal bitrate")):
        path = ROOT / "benchmarks" / "results" / f"{name}.md"
        if path.exists():
            body = path.read_text().split("\n", 1)[1]
            lines += ["", f"## {title}", body.strip()]
    if mc:
        lines += ["", "## Limits", "",
                  "The channel mixing helps at 3 codebooks, is even with DAC-SC at 6 and slightly worse at 9 (tables "
                  "above): use it for the smallest files. Not for clinical reading; use the "
                  "lossless or near-lossless modes for that."]
    elif per_set:
        lines += ["", "## Limits", "",
                  f"Small model, short {'GPU' if gpu else 'CPU'} fine-tuning. Against the 0.2 model it trades waveform error (about 1-2 PRDN "
                  "points) for a spectrum with far fewer invented lines (benchmarks/results/lossy.md and clinical.md). "
                  + ("Through eegz 0.13 (the band envelope of format 13) the strongest invented line is at most 1.41x "
                     "in every Bonn set's mean spectrum at 6 and 9 codebooks (1.51x at 3), and 1.9-2.5x in single "
                     "channels of held-out eegmat recordings (at 55 Hz, where some hold a narrow line of their own "
                     "that the decoder does not keep and the envelope places 0.5 Hz off, and at 79-126 Hz): the line "
                     "loss sees each dataset's mean spectrum, not a channel's. The decoder also makes a hump at "
                     "49.6-50.3 Hz that it learned from mains; format 13 replaces what it puts in the mains bands "
                     "with noise. " if "line_weight" in st and st["line_weight"] else
                     "The lines left (up to 5x, at 50-62 Hz) are mains frequencies learned from the training data. ")
                  + "It still smooths fast activity, which the band envelope (spec 6.4) restores as energy, not as "
                  "waveform. Not for clinical reading; use the lossless or near-lossless modes for that."]
    else:
        lines += ["", "## Limits", "",
                  "Small model, short CPU training: it keeps the waveform's shape (correlation 0.95-0.98 on held-out "
                  "subjects) but smooths beta and gamma activity; at equal bitrate it beats DCT coding at 3 and 6 "
                  "codebooks and ties it at 9 (see the table above). Not for clinical reading; use the lossless or "
                  "near-lossless modes for that."]
    (ROOT / "src" / "eegz" / "models" / f"{NAME}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
