"""`eegz train`: short real runs on real EEG (no mocks), DAC-checkpoint transfer and resume."""
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

import eegz
from eegz import api
from eegz.errors import EegzError, ModelError
from eegz.neural import TOKEN_COUNTS_KEY, ModelConfig, NeuralCodec, build_dac
from eegz.train import MIN_FIT_STEPS, TrainSettings, split_subjects, subject_of, train, train_multichannel

from .conftest import EXAMPLE, SHARED

TINY = ModelConfig(encoder_dim=4, decoder_dim=16, n_codebooks=9, codebook_size=1024)


@pytest.fixture()
def two_subjects(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for sid in ("Subject90_2.edf", "Subject91_2.edf"):
        shutil.copy(EXAMPLE, folder / sid)
    return folder


def _settings(**kw):
    return TrainSettings(**{"steps": 2, "batch_size": 4, "window_seconds": 2.0, "eval_every": 2,
                            "checkpoint_every": 2, **kw})


def test_train_writes_a_usable_model_and_resumes(two_subjects, tmp_path):
    out = tmp_path / "run"
    result = train([str(two_subjects)], out, TINY, _settings(), quiet=True, log=lambda m: None)
    assert result["step"] == 2 and all(f"data_{k}_{n}" in result for k in ("prdn", "line_ratio", "band_gamma")
                                       for n in (3, 6, 9))
    card = json.loads((out / "model.json").read_text())
    assert card["training"]["val_subjects"] == ["Subject91"] and card["config"]["encoder_dim"] == 4
    with np.load(out / "model.npz") as z:  # the entropy coder's token tables travel with the weights
        assert z["eegz.token_counts"].shape == (9, 1024) and z["eegz.token_counts"][0].sum() > 0
    resumed = train([str(two_subjects)], out, TINY, _settings(steps=4), resume=True, quiet=True, log=lambda m: None)
    assert resumed["step"] == 4 and [h["step"] for h in json.loads((out / "model.json").read_text())["training"]["history"]] == [0, 2, 4]
    again = train([str(two_subjects)], tmp_path / "again", ModelConfig(), _settings(steps=1, lr=0.0),
                  from_model=out / "model.npz", quiet=True, log=lambda m: None)
    assert again["step"] == 1
    with np.load(out / "model.npz") as a, np.load(tmp_path / "again" / "model.npz") as b:
        key = "encoder.block.0.weight_v"  # lr 0: continuing from an eegz model keeps its weights
        np.testing.assert_allclose(a[key], b[key], atol=1e-7)
    codec = NeuralCodec.load(str(out / "model.npz"), "cpu")
    summary = api.compress(EXAMPLE, tmp_path / "x.eegz", codebooks=3, model=str(out / "model.npz"), device="cpu")
    assert summary["model"] == "model" and summary["codec"]["weights_sha256"] == codec.sha256
    with pytest.raises(ModelError, match="this file needs model 'model'"):
        api.decompress(tmp_path / "x.eegz", tmp_path / "y.edf", device="cpu")
    assert not (tmp_path / "y.edf").exists()
    api.decompress(tmp_path / "x.eegz", tmp_path / "x.edf", model=str(out / "model.npz"), device="cpu")


def _fine_tuned(two_subjects, tmp_path, is_frozen, **freeze) -> tuple:
    """A tiny model, then one fine-tuned from it with `freeze`: (the first's weights, the second's). Asserts that
    the tensors `is_frozen(key)` names stay as they were and that more than half of the others moved."""
    first, out = tmp_path / "first", tmp_path / "tuned"
    train([str(two_subjects)], first, TINY, _settings(), quiet=True, log=lambda m: None)
    train([str(two_subjects)], out, TINY, _settings(lr=1e-2, **freeze), from_model=first / "model.npz",
          quiet=True, log=lambda m: None)
    with np.load(first / "model.npz") as a, np.load(out / "model.npz") as b:
        frozen = [k for k in a.files if k != TOKEN_COUNTS_KEY and is_frozen(k)]
        trained = [k for k in a.files if k != TOKEN_COUNTS_KEY and not is_frozen(k)]
        assert frozen and trained
        assert all(np.array_equal(a[k], b[k]) for k in frozen)
        assert sum(not np.array_equal(a[k], b[k]) for k in trained) > len(trained) // 2
        return first / "model.npz", out / "model.npz", frozen


def test_a_frozen_encoder_trains_the_decoder_and_keeps_every_token(two_subjects, tmp_path):
    """freeze_encoder (`eegz train --freeze-encoder`): DAC-SC fine-tunes only its decoder, so a file compressed
    with the new model holds the same tokens as with the model it started from."""
    first, out, _ = _fine_tuned(two_subjects, tmp_path, lambda k: not k.startswith("decoder."), freeze_encoder=True)
    codes = []
    for name, model in (("a", first), ("b", out)):
        api.compress(EXAMPLE, tmp_path / f"{name}.eegz", codebooks=3, model=str(model), device="cpu")
        with eegz.open(tmp_path / f"{name}.eegz", model=str(model), device="cpu") as f:
            codes.append([f.tokens(c) for c in ("EEG Fp1", "EEG O2")])
    assert all(np.array_equal(a, b) and (a >= 0).any() for a, b in zip(*codes))


def test_a_widened_decoder_starts_decoding_as_the_model_it_widens(two_subjects, tmp_path):
    """decoder_dim (`eegz train --from-model M --decoder-dim N`): every decoder layer gets more channels, which the
    trained ones read with weight zero, so before any step the wider model decodes the same tokens to the same
    samples; then the new channels learn."""
    first = tmp_path / "first"
    train([str(two_subjects)], first, TINY, _settings(), quiet=True, log=lambda m: None)
    runs = {}
    for name, lr in (("same", 0.0), ("tuned", 1e-2)):
        runs[name] = tmp_path / name / "model.npz"
        train([str(two_subjects)], runs[name].parent, TINY, _settings(steps=1, lr=lr, decoder_dim=32, freeze_encoder=True),
              from_model=first / "model.npz", quiet=True, log=lambda m: None)
    assert json.loads(runs["same"].with_suffix(".json").read_text())["config"]["decoder_dim"] == 32
    old, same, tuned = (NeuralCodec.load(str(m), device="cpu") for m in (first / "model.npz", runs["same"], runs["tuned"]))
    count = lambda codec: sum(p.numel() for p in codec.model.decoder.parameters())
    assert count(same) > 2 * count(old)
    x = np.sin(np.arange(TINY.hop * 32) / 5.0).astype(np.float32) * 0.3
    codes = old.encode([x], 6)[0]
    assert np.array_equal(codes, same.encode([x], 6)[0])
    a, b, c = old.decode([codes])[0], same.decode([codes])[0], tuned.decode([codes])[0]
    np.testing.assert_allclose(b, a, atol=1e-6)
    assert np.ptp(a) > 0 and np.abs(c - a).max() > 1e-3
    for dim, match in ((8, "at least the model's 16 channels"), (40, "a multiple of 16")):
        with pytest.raises(EegzError, match=match):
            train([str(two_subjects)], tmp_path / "bad", TINY, _settings(decoder_dim=dim), from_model=first / "model.npz",
                  quiet=True, log=lambda m: None)
    with pytest.raises(EegzError, match="give it --from-model"):
        train([str(two_subjects)], tmp_path / "bad", TINY, _settings(decoder_dim=32), quiet=True, log=lambda m: None)


def test_a_frozen_decoder_trains_the_encoder_and_keeps_what_each_token_means(two_subjects, tmp_path):
    """freeze_decoder on DAC-SC (`eegz train --freeze-decoder`): only the encoder and the projections that pick
    the codes learn; codebooks and decoder stay, so the same tokens decode to the same signal with either model."""
    first, out, frozen = _fine_tuned(two_subjects, tmp_path,
                                     lambda k: not (k.startswith("encoder.") or ".in_proj." in k), freeze_decoder=True)
    assert any(".codebook." in k for k in frozen) and any(".out_proj." in k for k in frozen)
    old, new = (NeuralCodec.load(str(m), device="cpu") for m in (first, out))
    x = np.sin(np.arange(TINY.hop * 32) / 5.0).astype(np.float32) * 0.3
    codes = old.encode([x], 3)[0]
    assert not np.array_equal(codes, new.encode([x], 3)[0])  # the encoder learned
    a, b = old.decode([codes])[0], new.decode([codes])[0]
    assert np.array_equal(a, b) and np.ptp(a) > 0
    with pytest.raises(EegzError, match="not both"):
        train([str(two_subjects)], tmp_path / "both", TINY, _settings(freeze_decoder=True, freeze_encoder=True),
              from_model=first / "model.npz", quiet=True, log=lambda m: None)


def test_training_quantizes_as_dac_does_with_each_windows_own_count_of_codebooks():
    import torch
    from eegz.train import codebook_counts_for_training, latent_loss, quantize_for_training
    torch.manual_seed(0)
    model = build_dac(TINY).eval()
    z = model.encoder(torch.randn(5, 1, 512))
    counts = torch.tensor([1, 3, 6, 9, 9])
    z_q, _, _, rebuilt = quantize_for_training(model.quantizer, z, counts, rebuild=True)
    for row, n in enumerate(counts.tolist()):  # DAC's own quantizer at that count, window by window
        torch.testing.assert_close(z_q[row], model.quantizer(z[row:row + 1], n)[0][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rebuilt, z_q, atol=1e-5, rtol=1e-5)  # the same sum, from the codes
    latent_loss(z, rebuilt).backward()  # reaches the codebooks and output projections, not the encoder
    stage = model.quantizer.quantizers[0]
    assert stage.codebook.weight.grad.abs().sum() > 0 and stage.out_proj.weight_v.grad.abs().sum() > 0
    assert stage.in_proj.weight_v.grad is None and all(p.grad is None for p in model.encoder.parameters())
    z = z.detach()
    drawn = codebook_counts_for_training(1000, 9, _settings(min_codebooks=3, quantizer_dropout=0.5), torch)
    assert set(drawn[:500].tolist()) == set(range(3, 10)) and set(drawn[500:].tolist()) == {9}
    assert set(codebook_counts_for_training(1000, 9, _settings(), torch)[:500].tolist()) == set(range(1, 10))
    assert float(latent_loss(z, z)) == 0.0 and abs(float(latent_loss(z, 0 * z)) - 1.0) < 1e-6


def test_the_latent_loss_trains_and_is_logged(two_subjects, tmp_path):
    result = train([str(two_subjects)], tmp_path / "run", TINY, _settings(latent_weight=1.0, min_codebooks=3),
                   quiet=True, log=lambda m: None)
    assert result["step"] == 2 and result["latent"] > 0
    with pytest.raises(EegzError, match="--freeze-encoder keeps"):
        train([str(two_subjects)], tmp_path / "no", TINY, _settings(latent_weight=1.0, freeze_encoder=True),
              quiet=True, log=lambda m: None)
    with pytest.raises(EegzError, match="DAC-MC keeps it frozen"):
        train_multichannel([str(two_subjects)], tmp_path / "no", tmp_path / "run" / "model.npz",
                           _settings(min_codebooks=3), quiet=True, log=lambda m: None)


def test_a_warm_up_starts_fine_tuning_with_small_steps(two_subjects, tmp_path):
    """warmup_steps reaches DAC-SC's optimizer: a trained model under a fresh Adam moves by about lr on its first
    step whatever the gradient, and by lr / warmup_steps with the warm-up."""
    base = tmp_path / "base"
    train([str(two_subjects)], base, TINY, _settings(steps=1), quiet=True, log=lambda m: None)
    moved = {}
    for warmup in (0, 10**6):
        out = tmp_path / f"warmup{warmup}"
        train([str(two_subjects)], out, ModelConfig(), _settings(steps=1, lr=1e-2, warmup_steps=warmup),
              from_model=base / "model.npz", quiet=True, log=lambda m: None)
        with np.load(base / "model.npz") as a, np.load(out / "model.npz") as b:
            key = "encoder.block.0.weight_v"
            moved[warmup] = float(np.max(np.abs(a[key] - b[key])))
    assert moved[0] > 1e-3 and moved[10**6] < 1e-6
    from click.testing import CliRunner

    from eegz.cli import main
    result = CliRunner().invoke(main, ["train", str(two_subjects), "-o", str(tmp_path / "cli"), "--from-model",
                                       str(base / "model.npz"), "--steps", "1", "--batch-size", "4", "--window-seconds",
                                       "2", "--lr", "1e-2", "--warmup-steps", str(10**6), "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    with np.load(base / "model.npz") as a, np.load(tmp_path / "cli" / "model.npz") as b:
        assert float(np.max(np.abs(a["encoder.block.0.weight_v"] - b["encoder.block.0.weight_v"]))) < 1e-6


def test_a_time_limit_fits_the_schedule_and_stops_with_a_saved_model(two_subjects, tmp_path):
    logged = []
    settings = _settings(steps=100000, eval_every=5, checkpoint_every=1000, max_seconds=6.0)
    result = train([str(two_subjects)], tmp_path / "run", TINY, settings, quiet=True, log=logged.append)
    fitted = [m for m in logged if "the schedule ends at step" in m]
    assert result["step"] == settings.steps < 100000  # the schedule ended where the time ran out
    # fitted from the pace once MIN_FIT_STEPS have run (a busy machine may not get that far in 6 s: CI beside a
    # training run reached fewer)
    assert bool(fitted) == (result["step"] > MIN_FIT_STEPS)
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    assert card["training"]["steps"] == result["step"] and card["training"]["settings"]["max_seconds"] == 6.0


def test_training_on_recordings_already_loaded_matches_loading_them(two_subjects, tmp_path):
    from eegz.train import load_recordings
    recordings = load_recordings([str(two_subjects)], 256)
    a = train([str(two_subjects)], tmp_path / "a", TINY, _settings(), quiet=True, log=lambda m: None)
    b = train([str(two_subjects)], tmp_path / "b", TINY, _settings(), quiet=True, log=lambda m: None,
              recordings=recordings)
    a.pop("seconds"), b.pop("seconds")
    assert a == b


def test_training_on_a_gpu_that_is_not_there_is_refused(two_subjects, tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelError, match="no CUDA GPU"):
        train([str(two_subjects)], tmp_path / "run", TINY, _settings(device="cuda"), quiet=True, log=lambda m: None)


def test_the_codec_runs_in_full_float32_and_restores_the_flags():
    import torch
    from eegz.neural import full_float32
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with full_float32(torch):
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_init_from_a_dac_checkpoint_in_the_official_format(two_subjects, tmp_path):
    """A checkpoint written by DAC.save (as the official 44.1 kHz weights are) is the starting point."""
    dac = build_dac(ModelConfig(encoder_dim=8, decoder_dim=32, sample_rate=44100))
    ckpt = tmp_path / "dac_audio.pth"
    dac.save(str(ckpt))
    out = tmp_path / "ft"
    train([str(two_subjects)], out, TINY, _settings(steps=1, lr=0.0), init=ckpt, quiet=True, log=lambda m: None)
    card = json.loads((out / "model.json").read_text())
    assert card["config"]["encoder_dim"] == 8 and card["config"]["sample_rate"] == 256
    with np.load(out / "model.npz") as trained:
        for key, value in dac.state_dict().items():
            if "codebook" in key or "in_proj" in key:  # lr 0: the transferred weights are kept as loaded
                np.testing.assert_allclose(trained[key], value.numpy(), rtol=0, atol=1e-6)


def test_subject_ids():
    from pathlib import Path
    assert subject_of(Path("Subject07_1.edf")) == "Subject07"
    assert subject_of(Path("S001R03.edf")) == "S001"
    assert subject_of(Path("bonn/E_S/S017.txt")) == "bonn-E-001-050"
    assert subject_of(Path("bonn/A_Z/Z061.txt")) == "bonn-A-051-070"


def test_validation_patterns_split_whole_subjects():
    train_ids, val_ids = split_subjects(["Subject13", "Subject14", "Subject17", "bonn-A-001-050", "bonn-A-051-070"],
                                        0.2, ("Subject1[4-7]", "bonn-*-051-070"))
    assert val_ids == ["Subject14", "Subject17", "bonn-A-051-070"] and train_ids == ["Subject13", "bonn-A-001-050"]


@pytest.mark.skipif(not (SHARED / "bonn" / "E_S").is_dir(), reason="shared data absent")
def test_bonn_segments_load_normalized_as_inference_sees_them():
    """A Bonn segment (4097 integers at 173.61 Hz) becomes one 256 Hz channel, each 16-s block normalized by
    its own median and 16 robust σ, exactly as compression normalizes it."""
    from eegz.lossy import block_normalization
    from eegz.train import load_recordings
    (rec,) = load_recordings([str(SHARED / "bonn" / "E_S" / "S001.txt")], 256)
    assert rec.subject == "bonn-E-001-050" and rec.signals.shape == (1, 6042)
    x = np.loadtxt(SHARED / "bonn" / "E_S" / "S001.txt")
    from eegz.dsp import resample
    u = resample(x, 173.61, 256)[:4096]
    offset, scale = block_normalization(u)
    np.testing.assert_allclose(rec.signals[0, :4096], (u - offset) / scale, rtol=1e-5, atol=1e-6)


def test_balanced_upsampling_answers_a_constant_with_a_constant():
    """The frame-rate lines come from transposed convolutions whose phases sum differently; balanced ones
    map a constant latent to a constant output (DAC's own: a pattern repeating every frame)."""
    import torch
    torch.manual_seed(0)
    for upsampling, flat in (("dac", False), ("balanced", True)):
        dac = build_dac(ModelConfig(upsampling=upsampling))
        with torch.no_grad():
            for p in dac.decoder.parameters():
                p.add_(0.05 * torch.randn_like(p))
            y = dac.decoder(torch.ones(1, dac.latent_dim, 64))[0, 0, 1024:-1024]
        assert (float(y.std()) < 1e-6) == flat, (upsampling, float(y.std()))


def test_spectral_losses_see_a_narrow_line():
    """The multi-resolution STFT loss is zero for the same signal and grows with an invented 44 Hz line;
    the line-length loss is the relative error of the summed |differences|."""
    import torch
    from eegz.losses import MultiResolutionSTFTLoss, line_length_loss
    torch.manual_seed(0)
    x = torch.cumsum(torch.randn(4, 1, 1024), -1)
    x = 0.05 * (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True)
    line = torch.sin(2 * np.pi * 44 * torch.arange(1024) / 256.0)
    stft = MultiResolutionSTFTLoss()
    losses = [float(stft(x + a * line, x)) for a in (0.0, 0.0005, 0.002)]
    assert losses[0] == 0.0 and 0.01 < losses[1] < losses[2]  # measured 0.0, 0.017, 0.061
    assert float(line_length_loss(x, x)) == 0.0 and float(line_length_loss(0.5 * x, x)) == pytest.approx(0.5, abs=1e-6)


def test_image_pairs_of_the_shipped_decoder():
    """Decoder rates [4, 4, 2, 2] at 256 Hz, hop 64: layers whose inputs run at 4, 16, 64 and 128 Hz; an
    alpha rhythm at 7 Hz has copies at 16 + 7, 32 - 7, ..., 64 - 7 = 57 Hz (the line measured on held-out
    eegmat) and 128 - 7 = 121 Hz; 16 - 7 = 9 Hz lies too close to 7 Hz to be told apart in a window."""
    from eegz.losses import image_pairs
    pairs = {tuple(p) for p in image_pairs(1024, 256.0, [4, 4, 2, 2], 64).tolist()}
    source = 7 * 4  # 7 Hz in 0.25-Hz bins
    assert {(source, g * 4, True) for g in (25, 41, 57, 73, 89, 105, 121)} <= pairs and (source, 36, True) not in pairs
    assert {(source, g * 4, False) for g in (23, 39, 55, 71, 87, 103, 119)} <= pairs
    assert not any(g < 8 or g >= 512 or abs(g - f) <= 8 for f, g, _ in pairs)  # 2 Hz .. Nyquist, 2 Hz apart


def test_image_loss_charges_copies_of_the_input_not_lines_of_their_own():
    """A copy of each window's low frequencies modulated to 64 Hz (what an upsampling layer whose input runs
    at 64 Hz leaves) costs; a line at 57 Hz of random phase in every window (no copy of anything) costs
    nothing, nor does the original itself. The gradient reaches the decoded windows."""
    import torch
    from eegz.losses import ImageLoss
    torch.manual_seed(0)
    t = torch.arange(1024) / 256.0
    x = torch.cumsum(torch.randn(64, 1, 1024), -1)
    x = 0.05 * (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True)
    x = x + 0.05 * torch.sin(2 * np.pi * 7 * t + 6.28 * torch.rand(64, 1, 1))  # an alpha rhythm
    low = torch.fft.irfft(torch.fft.rfft(x) * (torch.fft.rfftfreq(1024, 1 / 256.0) < 12), 1024)
    copies = x + 0.05 * low * torch.cos(2 * np.pi * 64 * t)  # at 64 - f and 64 + f
    line = x + 0.003 * torch.sin(2 * np.pi * 57 * t + 6.28 * torch.rand(64, 1, 1))
    tops = [128.0] * 64
    loss = lambda y: float(ImageLoss(256.0, [4, 4, 2, 2], 64)(y, x, tops))  # noqa: E731
    assert loss(x) == 0.0 and loss(line) < 0.5 and loss(copies) > 20.0  # measured 0.0, 0.0, 35.4
    y = copies.clone().requires_grad_(True)
    ImageLoss(256.0, [4, 4, 2, 2], 64)(y, x, tops).backward()
    assert torch.isfinite(y.grad).all() and float(y.grad.abs().sum()) > 0


def test_line_loss_charges_a_line_the_decoder_adds_to_one_source_not_one_it_keeps():
    """On each source's running spectrum: a 50 Hz line added to one source's windows costs, though the other
    source holds a real 50 Hz line; the same line present in the original costs nothing, and a missing one
    costs nothing either (that is the other losses' job). Bins above the source's Nyquist do not count."""
    import torch
    from eegz.losses import RunningLineLoss
    torch.manual_seed(0)
    x = 0.05 * torch.randn(32, 1, 1024)
    line = 0.01 * torch.sin(2 * np.pi * 50 * torch.arange(1024) / 256.0)
    sources = [0] * 16 + [1] * 16
    mains = torch.zeros(32, 1, 1) + torch.tensor([0.0] * 16 + [1.0] * 16).view(32, 1, 1)
    x = x + mains * line  # source 1 has a real 50 Hz line
    invented = x + (1 - mains) * line  # the decoder adds one to source 0
    tops = [128.0] * 32
    assert float(RunningLineLoss(256)(x, x, sources, tops)) == 0.0
    added = RunningLineLoss(256)(invented, x, sources, tops)
    assert float(added) > 1.0  # measured 1.39 (source 0's sum over the line's bins, averaged over 2 sources)
    assert float(RunningLineLoss(256)(x - mains * line, x, sources, tops)) == 0.0  # a real line lost
    assert float(RunningLineLoss(256)(invented, x, sources, [40.0] * 32)) == 0.0  # above 0.95 x Nyquist
    y = invented.clone().requires_grad_(True)
    RunningLineLoss(256)(y, x, sources, tops).backward()
    assert torch.isfinite(y.grad).all() and float(y.grad[:16].abs().sum()) > 0

def test_windows_in_groups_of_one_channel_keep_the_line_loss_per_channel():
    """line_group: each group of rows is one channel of one recording at different times, and a line the
    decoder adds to that one channel costs in full, where a mean over its source's spectrum dilutes it. Groups
    of one draw exactly the windows plain batches draw (earlier runs stay reproducible)."""
    import torch
    from eegz.losses import RunningLineLoss
    from eegz.train import Recording, WindowSampler
    rng = np.random.default_rng(0)
    recordings = [Recording(0, "s1", ["a", "b", "c"], rng.standard_normal((3, 6000)).astype(np.float32), 128.0),
                  Recording(1, "s2", ["x"], rng.standard_normal((1, 4000)).astype(np.float32), 86.8)]
    plain, grouped = WindowSampler(recordings, 1024, 1, 7), WindowSampler(recordings, 1024, 1, 7)
    np.testing.assert_array_equal(plain.batch(6)[0], grouped.batch(6, 1)[0])
    x, _ = grouped.batch(8, 4)
    keys = grouped.channel_keys
    assert keys[:4] == [keys[0]] * 4 and keys[4:] == [keys[4]] * 4 and len({float(r[0, 0]) for r in x[:4]}) == 4
    torch.manual_seed(0)
    x = 0.05 * torch.randn(32, 1, 1024)
    y = x.clone()
    y[:4] += 0.008 * torch.sin(2 * np.pi * 57 * torch.arange(1024) / 256.0)  # one channel's invented line
    tops, per_source = [128.0] * 32, [0] * 32
    per_channel = [k // 4 for k in range(32)]
    diluted = float(RunningLineLoss(256)(y, x, per_source, tops))
    loss = RunningLineLoss(256, decay=0.0)
    kept = float(loss(y, x, per_channel, tops)) * len(set(per_channel))  # the one channel's own sum
    assert kept > 1.5 and kept > 4 * diluted and loss.means == {}  # measured 2.27 and 0.38


def test_training_windows_hold_no_line_that_the_encoder_takes_out(tmp_path):
    """The encoder takes each block's stationary tones out before the codec sees it (spec 6.6), so training does
    too (train.encoder_input): a steady 50.02-Hz line of 60 digital units added to the example's Fp1 (recorded
    through a notch) is gone from the training signal at the codec rate, before the writer's padding (which the
    encoder bridges over as a constant run, spec 6.7, where the line left it constant)."""
    from scipy.signal import welch

    from eegz.dsp import resample
    from eegz.edf import encode_recording, read_edf
    from eegz.train import codec_rate_channels
    rec = read_edf(EXAMPLE)
    plain = codec_rate_channels(EXAMPLE, 256)[0][2]
    s = rec.header.signals[0]
    t = np.arange(len(rec.digital[0])) / s.sample_rate
    rec.digital[0][:] = np.clip(np.rint(rec.digital[0] + 60.0 * np.cos(2 * np.pi * 50.02 * t + 0.7)),
                                s.digital_min, s.digital_max)
    (tmp_path / "line.edf").write_bytes(encode_recording(rec))
    label, rate, lined = codec_rate_channels(tmp_path / "line.edf", 256)[0]
    assert (label, rate, len(lined)) == (s.label, s.sample_rate, len(plain))
    left_in = resample(s.to_physical(rec.digital[0]), s.sample_rate, 256)
    body = slice(0, len(plain) - 3 * 256)  # before the writer's padding, which the line fills (no run there)
    f, p_plain = welch(plain[body], 256, nperseg=1024)
    band = (f >= 49.5) & (f <= 50.5)
    ratio = {name: welch(x[body], 256, nperseg=1024)[1][band].sum() / p_plain[band].sum()
             for name, x in (("taken out", lined), ("left in", left_in))}
    # the example's notch leaves 49.5-50.5 Hz almost empty: the line is 7.5e5 times its power there, and what the
    # tone leaves of it is 7.6e-4 of the line's
    assert ratio["left in"] > 1e5 and ratio["taken out"] < 2e-3 * ratio["left in"], ratio


def test_a_model_with_euclidean_code_lookup_trains_encodes_and_keeps_its_lookup(two_subjects, tmp_path):
    """--code-lookup euclidean: DAC's VectorQuantize picks the nearest code by distance (neural.EuclideanCodes);
    rvq_codes, which compression runs, picks the same codes as DAC's own quantizer; the card keeps the lookup, so a
    loaded model encodes as it was trained; unused codes move onto the data."""
    import torch

    from eegz.neural import euclidean_codes_class, load_state_into, rvq_codes
    from eegz.train import restart_dead_codes
    config = ModelConfig(encoder_dim=4, decoder_dim=16, code_lookup="euclidean")
    out = tmp_path / "run"
    train([str(two_subjects)], out, config, _settings(), quiet=True, log=lambda m: None)
    card = json.loads((out / "model.json").read_text())
    assert card["config"]["code_lookup"] == "euclidean"
    assert "code_lookup" not in ModelConfig().to_json()  # DAC's lookup is the absent one: earlier files stay as they were
    codec = NeuralCodec.load(str(out / "model.npz"), "cpu")
    assert all(type(q) is euclidean_codes_class() for q in codec.model.quantizer.quantizers)
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 0.05, (2, 1, 1024)).astype(np.float32))
    with torch.inference_mode():
        z = codec.model.encoder(x)
        codes = rvq_codes(codec.model.quantizer, z, 9).numpy()
        np.testing.assert_array_equal(codes, codec.model.quantizer(z, 9)[1].numpy())
        layer = codec.model.quantizer.quantizers[0]
        z_e = layer.in_proj(z).transpose(1, 2).reshape(-1, 8)
        nearest = torch.cdist(z_e, layer.codebook.weight).argmin(1).numpy()
        np.testing.assert_array_equal(codes[:, 0].reshape(-1), nearest)  # distance, not direction
    cosine = build_dac(ModelConfig(encoder_dim=4, decoder_dim=16))
    load_state_into(cosine, out / "model.npz")
    with torch.inference_mode():
        assert np.any(rvq_codes(cosine.quantizer, z, 9).numpy() != codes)  # the lookup changes the codes
    usage = [torch.ones(1024, dtype=torch.long) for _ in range(9)]
    usage[2][[5, 700]] = 0
    before = codec.model.quantizer.quantizers[2].codebook.weight.detach().clone()
    with torch.no_grad():
        moved = restart_dead_codes(codec.model.quantizer, z, usage, torch.Generator().manual_seed(0))
    after = codec.model.quantizer.quantizers[2].codebook.weight.detach()
    assert moved == 2 and all(int(u.sum()) == 0 for u in usage)
    changed = torch.nonzero((after != before).any(1)).reshape(-1).tolist()
    assert changed == [5, 700]


def test_a_trained_model_switched_to_codes_by_distance_keeps_its_lookup_when_resumed(two_subjects, tmp_path):
    """--from-model M --code-lookup euclidean: each stage's codebook is refitted by k-means to what the stage is
    given, so the switched codes quantize it more closely than the cosine-trained vectors looked up by distance;
    output projections refitted by least squares then make every stage shrink the latent left to code; resuming
    the run keeps the lookup its card names, whatever the config passed in."""
    import torch

    from eegz.neural import distance_scores, euclidean_codes_class
    from eegz.relookup import refit_output_projections, switch_to_distance_lookup
    from eegz.train import WindowSampler, load_recordings
    base = tmp_path / "base"
    train([str(two_subjects)], base, TINY, _settings(steps=1), quiet=True, log=lambda m: None)
    model = build_dac(TINY)
    from eegz.neural import load_state_into
    load_state_into(model, base / "model.npz")
    windows = WindowSampler(load_recordings([str(two_subjects)], 256), 512, 1, 0).batch(192)[0][:, 0]  # 1536 frames
    with torch.no_grad():
        z = model.encoder(torch.from_numpy(windows)[:, None])
        stage = model.quantizer.quantizers[0]
        rows = stage.in_proj(z).transpose(1, 2).reshape(-1, 8)

        def error(book):
            return float(((rows - book[distance_scores(rows, book).argmax(1)]) ** 2).sum(1).mean())
        before = error(stage.codebook.weight.clone())
        left = switch_to_distance_lookup(model, z, iterations=5)
        after = error(stage.codebook.weight)
    assert len(left) == 9 and all(type(q) is euclidean_codes_class() for q in model.quantizer.quantizers)
    assert after < 0.5 * before, (before, after)
    refitted = refit_output_projections(model, z)  # least squares: no stage can leave more than it was given
    assert all(b <= a * (1 + 1e-4) for a, b in zip([1.0] + refitted, refitted)), refitted
    assert refitted[-1] < left[-1], (left, refitted)
    logged = []
    run = tmp_path / "switched"
    train([str(two_subjects)], run, ModelConfig(), _settings(steps=1), from_model=base / "model.npz",
          switch_lookup=True, quiet=True, log=logged.append)
    assert any(m.startswith("codebooks refitted by distance") for m in logged)
    assert json.loads((run / "model.json").read_text())["config"]["code_lookup"] == "euclidean"
    train([str(two_subjects)], run, ModelConfig(), _settings(steps=2), resume=True, quiet=True, log=lambda m: None)
    card = json.loads((run / "model.json").read_text())
    assert card["config"]["code_lookup"] == "euclidean" and card["training"]["steps"] == 2


def test_kmeans_ends_with_each_centre_the_mean_of_the_rows_nearest_it():
    import torch

    from eegz.neural import distance_scores
    from eegz.relookup import kmeans
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(3000, 8, generator=generator)
    first = kmeans(rows, 16, 0, torch.Generator().manual_seed(1))  # no iteration: 16 rows drawn
    centres = kmeans(rows, 16, 100, torch.Generator().manual_seed(1))
    index = distance_scores(rows, centres).argmax(1)
    assert torch.bincount(index, minlength=16).min() > 0
    means = torch.stack([rows[index == k].mean(0) for k in range(16)])
    assert float((means - centres).abs().max()) < 1e-5  # converged: Lloyd's fixed point

    def error(c):
        return float(((rows - c[distance_scores(rows, c).argmax(1)]) ** 2).sum(1).mean())
    assert error(centres) < 0.8 * error(first)


def test_code_lookup_is_refused_where_the_model_has_its_own(two_subjects, tmp_path):
    from click.testing import CliRunner

    from eegz.cli import main
    base = tmp_path / "base"
    train([str(two_subjects)], base, TINY, _settings(steps=1), quiet=True, log=lambda m: None)
    for extra in (["--from-model", str(base / "model.npz"), "--code-lookup", "cosine"],
                  ["--variant", "mc", "--code-lookup", "euclidean"]):
        result = CliRunner().invoke(main, ["train", str(two_subjects), "-o", str(tmp_path / "cli"), *extra,
                                           "--steps", "1"])
        assert result.exit_code == 2 and "keeps its own" in result.output
        assert not (tmp_path / "cli").exists()
    # a run resumes from the command that started it: the run's own card gives the model, new-run options are moot
    result = CliRunner().invoke(main, ["train", str(two_subjects), "-o", str(base), "--resume", "--code-lookup",
                                       "euclidean", "--steps", "2",
                                       "--batch-size", "4", "--window-seconds", "2", "-q"])
    assert result.exit_code == 0, result.output
    card = json.loads((base / "model.json").read_text())
    assert card["training"]["steps"] == 2 and "code_lookup" not in card["config"]


def test_a_frame_start_model_passes_frames_through_and_starts_as_a_frame_quantizer(two_subjects, tmp_path):
    """--frame-start: DAC's own layers set so that the encoder writes each hop's 64 samples into the first 64 latent
    channels and the decoder reads them back; each stage fitted to its residual, so that every stage refines and
    more codebooks decode closer to the input."""
    import torch

    from eegz.framestart import _pass_frames_through_decoder, _pass_frames_through_encoder, start_as_frame_quantizer
    from eegz.metrics import prdn_windows
    from eegz.train import WindowSampler, load_recordings
    config = ModelConfig(encoder_dim=4, decoder_dim=64, codebook_size=64, upsampling="dac", code_lookup="euclidean")
    windows = WindowSampler(load_recordings([str(two_subjects)], 256), 1024, 1, 0).batch(200)[0][:, 0]
    model = build_dac(config)
    with torch.no_grad():
        _pass_frames_through_encoder(model.encoder)
        _pass_frames_through_decoder(model.decoder)
        x = torch.from_numpy(windows[:8])[:, None]
        z = model.encoder(x)
        frames = windows[:8].reshape(8, -1, 64).transpose(0, 2, 1)
        assert z.shape == (8, 64, 16) and float(np.abs(z.numpy() - frames).max()) < 5e-3 * float(np.abs(frames).max())  # Snake: x + αx²
        assert prdn_windows(windows[:8], model.decoder(z)[:, 0].numpy()) < 1.0  # the decoder's tanh: all that is left
    model = build_dac(config)
    left = start_as_frame_quantizer(model, windows)
    assert all(b < a for a, b in zip(left, left[1:])) and left[-1] < 0.1, left
    model.eval()
    with torch.inference_mode():
        z = model.encoder(torch.from_numpy(windows)[:, None])
        prdn = [prdn_windows(windows, model.decoder(model.quantizer(z, n)[0])[:, 0].numpy()) for n in (3, 6, 9)]
    assert prdn[0] > prdn[1] > prdn[2], prdn
    run = tmp_path / "frames"
    train([str(two_subjects)], run, replace(config, upsampling="balanced", code_lookup="cosine"), _settings(steps=0),
          frame_start=True, quiet=True, log=lambda m: None)  # --steps 0: the start itself, evaluated and saved
    card = json.loads((run / "model.json").read_text())
    assert card["config"]["upsampling"] == "dac" and card["config"]["code_lookup"] == "euclidean"
    assert card["training"]["frame_start"] is True and card["training"]["steps"] == 0
    start = card["training"]["history"][0]

    def logged(n):
        return next(v for k, v in start.items() if k.endswith(f"_prdn_{n}"))
    assert start["step"] == 0 and logged(9) < logged(3)
    with pytest.raises(ModelError, match="as wide as the samples"):
        start_as_frame_quantizer(build_dac(replace(TINY, upsampling="dac")), windows)
