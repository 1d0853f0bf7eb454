"""`eegz train`: short real runs on real EEG (no mocks), DAC-checkpoint transfer and resume."""
import json
import shutil

import numpy as np
import pytest

from eegz import api
from eegz.errors import ModelError
from eegz.neural import ModelConfig, NeuralCodec, build_dac
from eegz.train import TrainSettings, subject_of, train

from .conftest import EXAMPLE

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
    assert result["step"] == 2 and all(k in result for k in ("prdn_3", "prdn_6", "prdn_9"))
    card = json.loads((out / "model.json").read_text())
    assert card["training"]["val_subjects"] == ["Subject91"] and card["config"]["encoder_dim"] == 4
    with np.load(out / "model.npz") as z:  # the entropy coder's token tables travel with the weights
        assert z["eegz.token_counts"].shape == (9, 1024) and z["eegz.token_counts"][0].sum() > 0
    resumed = train([str(two_subjects)], out, TINY, _settings(steps=4), resume=True, quiet=True, log=lambda m: None)
    assert resumed["step"] == 4 and len(json.loads((out / "model.json").read_text())["training"]["history"]) == 2
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


def test_adversarial_phase_runs_with_dacs_discriminator(two_subjects, tmp_path):
    result = train([str(two_subjects)], tmp_path / "gan", TINY, _settings(steps=2, adversarial_steps=1),
                   quiet=True, log=lambda m: None)
    assert result["step"] == 2 and np.isfinite(result["wave_l1"])
