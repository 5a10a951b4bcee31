"""What the CPU training budget relies on: the weight average of G, the learning curve, the
G-side CAM schedule, the originals' test-time settings and the synthetic-* presets.

Tiny models (conv_dim 8, 64 px, batch 2) on a 40-image synthetic set made once per module.
"""
import csv
import json
import os

import pytest
import torch

from camfast import models
from camfast.data import synthetic
from camfast.cli.eval import main as eval_main
from camfast.evaluation.translate import GMode
from camfast.cli.train import main as train_main
from camfast.cli.train_classifier import main as clf_main
from camfast.training import config, schedule
from camfast.training.conditions import Conditions, flip
from camfast.training.distributed import Dist
from camfast.training.ema import EMA
from camfast.training.trainer import Trainer

import conftest

N_IMAGES = conftest.TINY_IMAGES
SYNTHETIC_PRESETS = ["synthetic-stargan", "synthetic-attgan", "synthetic-stgan"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, synthetic_cache):
    """A 40-image synthetic set and a 1-epoch classifier on it."""
    base = tmp_path_factory.mktemp("budget")
    cache, clf = synthetic_cache, str(base / "clf.pt")
    assert clf_main(["--out", clf, "--synthetic-images", str(N_IMAGES), "--data-cache", cache, "--epochs", "1",
                     "--width", "8", "--threads", "1"]) == 0
    return {"cache": cache, "clf": clf, "base": base}


def tiny_sets(backbone, **over):
    return conftest.tiny_sets(backbone, **{"n_critic": 1, "steps": 3, **over})


def tiny_args(backbone, cache, out, **over):
    return conftest.tiny_args(backbone, cache, out, **{"n_critic": 1, "steps": 3, **over})


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- weight average

def test_ema_is_the_average_it_claims():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = EMA(net, 0.9)
    w0 = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].running_mean.fill_(5.0)
    ema.update(net)            # the warm-up caps the first decay at 2/11
    d = 2.0 / 11.0
    torch.testing.assert_close(ema.model[0].weight, d * w0 + (1 - d) * (w0 + 1.0))
    assert torch.equal(ema.model[1].running_mean, net[1].running_mean)   # buffers are copied
    for _ in range(200):
        ema.update(net)
    torch.testing.assert_close(ema.model[0].weight, net[0].weight, atol=1e-6, rtol=0)
    assert not any(p.requires_grad for p in ema.model.parameters())
    with pytest.raises(ValueError, match="g_ema"):
        EMA(net, 1.0)


def test_ema_run_resumes_exactly_and_is_what_eval_uses(tiny, tmp_path):
    straight, broken = str(tmp_path / "straight"), str(tmp_path / "broken")
    assert train_main(tiny_args("attgan", tiny["cache"], straight, steps=4, g_ema=0.9, lr_decay="none")) == 0
    assert train_main(tiny_args("attgan", tiny["cache"], broken, steps=2, g_ema=0.9, lr_decay="none")) == 0
    assert train_main(["--resume", broken, "--steps", "4"]) == 0
    a = torch.load(os.path.join(straight, "checkpoint.pt"), weights_only=False)
    b = torch.load(os.path.join(broken, "checkpoint.pt"), weights_only=False)
    assert a["G_ema"]["updates"] == b["G_ema"]["updates"] == 4
    for k, v in a["G_ema"]["model"].items():
        assert torch.equal(v, b["G_ema"]["model"][k]), k
    assert any(not torch.equal(v, a["G"][k]) for k, v in a["G_ema"]["model"].items() if v.is_floating_point())
    # camfast-eval takes the average by default and says so; --weights raw takes G
    for weights in ("auto", "raw"):
        out = str(tmp_path / f"eval-{weights}")
        assert eval_main(["--run", straight, "--classifier", tiny["clf"], "--out", out, "--limit", "2",
                          "--no-progress", "--n-samples", "0", "--weights", weights]) == 0
        with open(os.path.join(out, "eval.json")) as f:
            r = json.load(f)
        assert r["settings"]["g_weights"] == ("ema" if weights == "auto" else "raw")
        assert r["settings"]["g_mode"] == "eval"      # AttGAN's test code: running statistics


def test_resume_with_ema_on_a_run_without_it_is_refused(tiny, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert train_main(tiny_args("attgan", tiny["cache"], out, steps=1)) == 0
    assert train_main(["--resume", out, "--steps", "2", "--set", "g_ema=0.9"]) != 0


# ---------------------------------------------------------------- learning curve

def test_learning_curve_rows_and_resume(tiny, tmp_path):
    out = str(tmp_path / "run")
    args = tiny_args("stgan", tiny["cache"], out, steps=4, eval_every=2, eval_images=3, lr_decay="none",
                     eval_classifier=tiny["clf"], save_every=2)
    assert train_main(args) == 0
    rows = read_csv(os.path.join(out, "curve.csv"))
    assert [r["step"] for r in rows] == ["2", "4"]
    for r in rows:
        assert 0 <= float(r["edit_accuracy"]) <= 1 and float(r["recon_psnr"]) > 0
        accs = [float(r[f"acc_{a}"]) for a in synthetic.ATTRIBUTES]
        assert float(r["edit_accuracy"]) == pytest.approx(sum(accs) / len(accs), abs=1e-5)
    # a resume from step 2 drops the rows logged after it, then logs them again
    first = rows
    assert train_main(args[:-2] + ["--out", str(tmp_path / "again"), "--set", "steps=2"]) == 0
    assert train_main(["--resume", str(tmp_path / "again"), "--steps", "4"]) == 0
    again = read_csv(os.path.join(str(tmp_path / "again"), "curve.csv"))
    assert [r["step"] for r in again] == ["2", "4"]
    assert [r["recon_psnr"] for r in again] == [r["recon_psnr"] for r in first]


def test_learning_curve_without_classifier_logs_psnr_only(tiny, tmp_path):
    out = str(tmp_path / "run")
    assert train_main(tiny_args("stargan", tiny["cache"], out, steps=2, eval_every=1, eval_images=2)) == 0
    rows = read_csv(os.path.join(out, "curve.csv"))
    assert len(rows) == 2 and rows[0]["edit_accuracy"] == "" and float(rows[0]["recon_psnr"]) > 0


def test_learning_curve_refuses_a_classifier_of_other_attributes(tiny, tmp_path, capsys):
    clf = str(tmp_path / "clf3.pt")
    assert clf_main(["--out", clf, "--synthetic-images", str(N_IMAGES), "--data-cache", tiny["cache"], "--epochs",
                     "1", "--width", "8", "--threads", "1", "--attrs", "Eyeglasses,Mustache"]) == 0
    out = str(tmp_path / "run")
    assert train_main(tiny_args("attgan", tiny["cache"], out, eval_every=1, eval_classifier=clf)) != 0
    assert "eval_classifier" in capsys.readouterr().err


def test_curve_does_not_change_the_run(tiny, tmp_path):
    """Evaluating (G in eval or train mode) must not touch G's statistics or any random stream."""
    plain, curved = str(tmp_path / "plain"), str(tmp_path / "curved")
    assert train_main(tiny_args("attgan", tiny["cache"], plain, steps=3)) == 0
    assert train_main(tiny_args("attgan", tiny["cache"], curved, steps=3, eval_every=1, eval_images=2,
                                test_g_mode="train", eval_classifier=tiny["clf"])) == 0
    a = torch.load(os.path.join(plain, "checkpoint.pt"), weights_only=False)
    b = torch.load(os.path.join(curved, "checkpoint.pt"), weights_only=False)
    for k in a["G"]:
        assert torch.equal(a["G"][k], b["G"][k]), k


# ---------------------------------------------------------------- CAM schedule

def test_cam_g_schedule():
    cfg = {"cam_g_start": 10, "cam_g_ramp": 4}
    assert [schedule.cam_g_factor(cfg, s) for s in (0, 9, 10, 11, 12, 13, 50)] == [0, 0, 0.25, 0.5, 0.75, 1, 1]
    assert schedule.cam_g_factor({"cam_g_start": 0, "cam_g_ramp": 0}, 0) == 1.0


def test_g_cam_term_is_off_before_cam_g_start(tiny, tmp_path):
    cfg = config.resolve(flags={"backbone": "attgan", "data_cache": tiny["cache"]},
                         sets=tiny_sets("attgan", cam_g_start=2))
    tr = Trainer(cfg, str(tmp_path / "run"), Dist(), torch.device("cpu"))
    x, a = next(tr._batches())
    b = flip(a, 0, tr.attrs)
    tr.step = 1
    assert "g_cam" not in tr.g_step(x, a, b, tr.cond.edit(a, b))
    tr.step = 2
    assert "g_cam" in tr.g_step(x, a, b, tr.cond.edit(a, b))


# ---------------------------------------------------------------- the originals' test settings

def test_test_time_intensity_is_plus_minus_one():
    """AttGAN's test code feeds the flipped target entry as +-1; STGAN's difference entry is +-1
    (its training previews show +-1.5, which test_int=2 gives)."""
    a = torch.tensor([[1.0, 0.0, 1.0]])
    b = torch.tensor([[0.0, 0.0, 1.0]])
    att = Conditions("attgan").test_edit(a, b, 0, 1.0)
    assert att.tolist() == [[-1.0, -0.5, 0.5]]
    st = Conditions("stgan").test_edit(a, b, 0, 1.0)
    assert st.tolist() == [[-1.0, 0.0, 0.0]]
    assert Conditions("stgan").test_edit(a, b, 0, 2.0).tolist() == [[-1.5, 0.0, 0.0]]
    # training sees the same +-1 difference for a flipped attribute
    assert Conditions("stgan").edit(a, b).tolist() == [[-1.0, 0.0, 0.0]]


def test_backbone_test_settings_follow_the_originals():
    assert config.defaults("stargan")["flip"] is True
    for name in ("attgan", "stgan"):
        assert config.defaults(name)["flip"] is False
        assert config.defaults(name)["test_g_mode"] == "eval"
    assert config.defaults("stargan")["test_g_mode"] == "train"


def test_g_mode_restores_statistics_and_flag():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.BatchNorm2d(2)).eval()
    before = {k: v.clone() for k, v in net.named_buffers()}
    with GMode(net, "train") as g, torch.no_grad():
        assert g.training
        g(torch.randn(2, 3, 4, 4))
    assert not net.training
    for k, v in net.named_buffers():
        assert torch.equal(v, before[k]), k
    with pytest.raises(ValueError, match="g_mode"):
        GMode(net, "test")


@pytest.mark.parametrize("name", ["attgan", "stgan"])
def test_lrelu_slope_option(name):
    G, D = models.build(name, image_size=64, conv_dim=8, dis_fc_dim=8)
    slopes = {m.negative_slope for m in list(G.modules()) + list(D.modules()) if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.2}
    G, D = models.build(name, image_size=64, conv_dim=8, dis_fc_dim=8, lrelu_slope=0.01)
    slopes = {m.negative_slope for m in list(G.modules()) + list(D.modules()) if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.01}
    with pytest.raises(ValueError, match="lrelu_slope"):
        models.build(name, image_size=64, lrelu_slope=1.5)


# ---------------------------------------------------------------- presets

@pytest.mark.parametrize("preset", SYNTHETIC_PRESETS)
def test_synthetic_presets_build_and_take_a_step(preset, tiny, tmp_path):
    cfg = config.resolve(files=[("--preset", config.preset_path(preset))])
    assert cfg["backbone"] == preset.split("-")[1] and cfg["data"] is None and cfg["image_size"] == 64
    assert cfg["eval_every"] > 0 and cfg["g_ema"] > 0
    cfg = config.resolve(files=[("--preset", config.preset_path(preset))],
                         flags={"data_cache": tiny["cache"]},
                         sets=[f"synthetic_images={N_IMAGES}", "batch_size=2", "steps=1", "eval_every=0",
                               "sample_every=0", "save_every=0", "progress=false", "n_samples=1"])
    tr = Trainer(cfg, str(tmp_path / "run"), Dist(), torch.device("cpu"))
    assert tr.fit() == "done" and tr.step == 1


def test_eval_scorecard(tiny, tmp_path, capsys):
    run = str(tmp_path / "run")
    assert train_main(tiny_args("stgan", tiny["cache"], run, steps=1)) == 0
    capsys.readouterr()
    assert eval_main(["--run", run, "--classifier", tiny["clf"], "--out", str(tmp_path / "ev"), "--limit", "2",
                      "--no-progress", "--n-samples", "0", "--scorecard"]) == 0
    out = capsys.readouterr().out
    assert "scorecard (stgan, step 1, 2 test images, G eval mode, raw weights)" in out
    for words in ("edit accuracy", "change outside region", "D's CAM IoU", "reconstruction PSNR", "Mustache"):
        assert words in out, words


def test_eval_refuses_a_checkpoint_with_python_objects_unless_trusted(tiny, tmp_path, capsys):
    import datetime
    run = str(tmp_path / "run")
    assert train_main(tiny_args("attgan", tiny["cache"], run, steps=1)) == 0
    path = os.path.join(run, "checkpoint.pt")
    ck = torch.load(path, weights_only=True)
    ck["note"] = datetime.date(2026, 12, 2)        # unpickling a class: could be anything
    torch.save(ck, path)
    args = ["--run", run, "--classifier", tiny["clf"], "--out", str(tmp_path / "ev"), "--limit", "2",
            "--no-progress", "--n-samples", "0"]
    capsys.readouterr()
    assert eval_main(args) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--trust-checkpoint" in err and "datetime" in err
    assert eval_main(args + ["--trust-checkpoint"]) == 0
