"""camfast-eval: every metric on inputs with a known answer, then a tiny end-to-end run.

The end-to-end part trains a tiny AttGAN for 2 iterations and a classifier for 1 epoch on a
40-image synthetic set (the same tiny settings as test_train.py), then runs camfast-eval.
"""
import json
import math
import os
import shutil

import pytest
import torch

from camfast.data import synthetic
from camfast.cli.eval import main as eval_main
from camfast.evaluation import classifier as clf_mod
from camfast.evaluation import metrics as M
from camfast.cli.train import main as train_main
from camfast.cli.train_classifier import main as clf_main

N_IMAGES = 40


@pytest.fixture(autouse=True)
def keep_thread_count():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------- PSNR, L1

def test_psnr_identical_is_inf_or_the_cap():
    x = torch.rand(2, 3, 8, 8)
    assert torch.isinf(M.psnr(x, x)).all()
    assert torch.equal(M.psnr(x, x, max_db=M.PSNR_CAP), torch.full((2,), 100.0, dtype=torch.float64))


def test_psnr_of_a_known_mse():
    a = torch.zeros(1, 3, 4, 4)
    b = torch.full((1, 3, 4, 4), 0.1)  # MSE 0.01 on range 1 -> 20 dB
    assert M.psnr(a, b).item() == pytest.approx(20.0)
    assert M.psnr(a * 255, b * 255, data_range=255).item() == pytest.approx(20.0)
    assert M.psnr_from_mse(torch.tensor(1e-4)).item() == pytest.approx(40.0)


def test_outside_metrics_ignore_changes_inside_the_region():
    real = torch.rand(2, 3, 16, 16)
    region = torch.zeros(2, 16, 16, dtype=torch.bool)
    region[:, 4:10, 5:12] = True
    edited = real.clone()
    edited[:, :, 4:10, 5:12] = 1 - edited[:, :, 4:10, 5:12]  # change only inside
    assert torch.equal(M.outside_l1(real, edited, region), torch.zeros(2, dtype=torch.float64))
    assert torch.isinf(M.outside_psnr(real, edited, region)).all()
    assert (M.masked_l1(real, edited, region) > 0).all()
    # a change of 0.2 everywhere outside: L1 0.2, PSNR 10 log10(1/0.04)
    edited2 = torch.where(region[:, None], real, real + 0.2)
    assert M.outside_l1(real, edited2, region).tolist() == pytest.approx([0.2, 0.2])
    assert M.outside_psnr(real, edited2, region).tolist() == pytest.approx([10 * math.log10(25)] * 2)


def test_region_covering_everything_gives_nan_not_zero():
    x = torch.rand(1, 3, 4, 4)
    assert torch.isnan(M.outside_l1(x, x + 1, torch.ones(1, 4, 4, dtype=torch.bool))).all()
    assert M.nanmean([float("nan"), 1.0, 3.0]) == 2.0 and M.nanmean([float("nan")]) is None


def test_mask_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="mask"):
        M.outside_l1(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), torch.ones(1, 5, 5, dtype=torch.bool))


# ---------------------------------------------------------------- SSIM

def test_ssim_identical_is_one():
    x = torch.rand(3, 3, 32, 32)
    assert M.ssim(x, x).tolist() == pytest.approx([1.0] * 3)


def test_ssim_of_constant_images_is_the_luminance_term():
    # Constant images: variances and covariance are 0, so SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1).
    m1, m2, c1 = 0.3, 0.6, 0.01 ** 2
    s = M.ssim(torch.full((1, 3, 16, 16), m1), torch.full((1, 3, 16, 16), m2)).item()
    assert s == pytest.approx((2 * m1 * m2 + c1) / (m1 ** 2 + m2 ** 2 + c1), rel=1e-9)


def test_ssim_of_a_negated_pattern_is_negative_and_symmetric():
    # b = 1 - a: same means where a is symmetric about 0.5 on average, perfect anticorrelation.
    a = torch.rand(1, 1, 32, 32)
    assert M.ssim(a, 1 - a).item() < 0
    assert M.ssim(a, 1 - a).item() == pytest.approx(M.ssim(1 - a, a).item())


# ---------------------------------------------------------------- localisation

def test_iou_of_known_masks():
    a = torch.zeros(1, 4, 4, dtype=torch.bool)
    b = torch.zeros(1, 4, 4, dtype=torch.bool)
    a[0, :2, :] = True  # 8 pixels
    b[0, 1:3, :] = True  # 8 pixels, 4 shared -> IoU 4 / 12
    assert M.iou(a, b).item() == pytest.approx(1 / 3)
    assert M.iou(a, a).item() == 1.0
    assert M.iou(a, ~a).item() == 0.0
    assert torch.isnan(M.iou(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)))


def test_cam_iou_thresholds_the_mask():
    cam = torch.zeros(1, 1, 4, 4)
    cam[0, 0, :2] = 0.7
    cam[0, 0, 2] = 0.49  # below 0.5: not part of the predicted region
    region = torch.zeros(1, 4, 4, dtype=torch.bool)
    region[0, :3] = True
    assert M.cam_iou(cam, region, 0.5).item() == pytest.approx(8 / 12)
    assert M.cam_iou(cam, region, 0.4).item() == pytest.approx(1.0)


def test_pointing_game_hit_and_miss():
    region = torch.zeros(3, 8, 8, dtype=torch.bool)
    region[:, 2:4, 2:4] = True
    cam = torch.rand(3, 1, 8, 8) * 0.5
    cam[0, 0, 3, 3] = 1.0  # max inside -> hit
    cam[1, 0, 6, 6] = 1.0  # max outside -> miss
    cam[2] = 0.0           # flat CAM points nowhere -> miss, even though pixel 0 ... is outside anyway
    assert M.pointing_game(cam, region).tolist() == [1.0, 0.0, 0.0]
    region[2, 0, 0] = True  # a flat map's argmax (pixel 0) now in the region: still a miss
    assert M.pointing_game(cam, region)[2].item() == 0.0


# ---------------------------------------------------------------- edit accuracy

def test_edit_accuracy_on_a_fake_classifier():
    logits = torch.tensor([[3.0, -1.0], [-2.0, 5.0], [1.0, 1.0], [-1.0, -1.0]])
    target = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    # attribute 0: decisions 1,0,1,0 vs targets 1,1,0,0 -> hit, miss, miss, hit
    assert M.edit_accuracy(logits, target, 0).tolist() == [1.0, 0.0, 0.0, 1.0]
    # per-image attribute indices
    assert M.edit_accuracy(logits, target, torch.tensor([1, 1, 1, 0])).tolist() == [1.0, 1.0, 1.0, 1.0]


# ---------------------------------------------------------------- Frechet distance

def test_fid_of_identical_feature_sets_is_zero():
    f = torch.randn(500, 16, dtype=torch.float64)
    assert M.fid_from_features(f, f.clone()) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_closed_form_for_commuting_covariances():
    # C1 = Q diag(d1) Q^T, C2 = Q diag(d2) Q^T with a random rotation Q:
    # FD = |mu1 - mu2|^2 + sum (sqrt d1 - sqrt d2)^2.
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    d1 = torch.tensor([1.0, 2.0, 0.5, 4.0, 0.1], dtype=torch.float64)
    d2 = torch.tensor([2.0, 1.0, 0.5, 1.0, 0.9], dtype=torch.float64)
    mu1, mu2 = torch.zeros(5, dtype=torch.float64), torch.arange(5, dtype=torch.float64)
    want = float((mu1 - mu2).pow(2).sum() + (d1.sqrt() - d2.sqrt()).pow(2).sum())
    got = M.frechet_distance(mu1, q @ torch.diag(d1) @ q.T, mu2, q @ torch.diag(d2) @ q.T)
    assert got == pytest.approx(want, rel=1e-9)


def test_frechet_distance_general_case_matches_the_1d_and_scalar_forms():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2.
    assert M.frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([3.0]),
                              torch.tensor([[9.0]])) == pytest.approx(4 + 1)
    # Non-commuting 2-D covariances: tr sqrt(C1 C2) from the eigenvalues of C1 C2 (real, >= 0).
    c1 = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    c2 = torch.tensor([[1.0, -0.3], [-0.3, 3.0]], dtype=torch.float64)
    ev = torch.linalg.eigvals(c1 @ c2).real.clamp(min=0)
    want = float(torch.trace(c1) + torch.trace(c2) - 2 * ev.sqrt().sum())
    z = torch.zeros(2, dtype=torch.float64)
    assert M.frechet_distance(z, c1, z, c2) == pytest.approx(want, rel=1e-9)


def test_fid_of_samples_from_two_gaussians_approaches_the_closed_form():
    g = torch.Generator().manual_seed(1)
    n = 20000
    a = torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    b = torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([2.0, 2.0, 1.0], dtype=torch.float64) + 1.0
    want = 3 * 1.0 + (1 - 2) ** 2 + 0 + (0.5 - 1) ** 2  # |dmu|^2 + sum (s1 - s2)^2
    assert M.fid_from_features(a, b) == pytest.approx(want, abs=0.05)


# ---------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-iteration AttGAN run and a 1-epoch classifier on a 40-image synthetic set."""
    base = tmp_path_factory.mktemp("eval")
    cache, run, clf = str(base / "cache"), str(base / "run"), str(base / "clf.pt")
    synthetic.ensure(n_images=N_IMAGES, image_size=64, seed=0, cache=cache, progress=False)
    sets = {"image_size": 64, "batch_size": 2, "n_critic": 1, "steps": 2, "synthetic_images": N_IMAGES,
            "num_workers": 0, "n_samples": 1, "sample_every": 0, "save_every": 0, "tensorboard": False,
            "progress": False, "threads": 1, "model.conv_dim": 8, "model.dis_fc_dim": 16}
    args = ["--backbone", "attgan", "--data-cache", cache, "--out", run]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    assert train_main(args) == 0
    assert clf_main(["--out", clf, "--synthetic-images", str(N_IMAGES), "--data-cache", cache, "--epochs", "1",
                     "--width", "8", "--threads", "1"]) == 0
    return {"cache": cache, "run": run, "clf": clf, "base": base}


def test_eval_writes_every_field(tiny, capsys):
    out = str(tiny["base"] / "out")
    assert eval_main(["--run", tiny["run"], "--classifier", tiny["clf"], "--out", out, "--limit", "3",
                      "--no-progress", "--n-samples", "2"]) == 0
    with open(os.path.join(out, "eval.json")) as f:
        r = json.load(f)
    m = r["metrics"]
    assert set(m) == {"edit_accuracy", "outside_l1", "outside_psnr", "inside_l1", "cam_iou", "cam_pointing",
                      "recon_psnr", "recon_ssim", "classifier_fid", "inception_fid"}
    for k, v in m.items():
        if k == "inception_fid":
            assert v is None and "inception" in r["null_reasons"][k]
        else:
            assert isinstance(v, float) and math.isfinite(v), (k, v)
    assert 0 <= m["edit_accuracy"] <= 1 and 0 <= m["cam_iou"] <= 1 and 0 <= m["cam_pointing"] <= 1
    assert -1 <= m["recon_ssim"] <= 1 and m["classifier_fid"] >= 0
    assert r["n_images"] == 3 and len(r["per_attribute"]) == len(synthetic.ATTRIBUTES)
    assert os.path.isfile(os.path.join(out, "eval.md")) and os.path.isfile(os.path.join(out, "samples.png"))
    assert "camfast-eval: wrote" in capsys.readouterr().out
    # the comparison-table mode reads eval.json back
    assert eval_main(["--table", os.path.join(out, "eval.json")]) == 0
    assert "| run | backbone" in capsys.readouterr().out


def test_eval_of_one_image_leaves_out_fid_with_its_reason(tiny):
    """One image has no covariance: FID is null with a reason, the rest is computed."""
    out = str(tiny["base"] / "out1")
    assert eval_main(["--run", tiny["run"], "--classifier", tiny["clf"], "--out", out, "--limit", "1",
                      "--no-progress", "--n-samples", "1"]) == 0
    with open(os.path.join(out, "eval.json")) as f:
        r = json.load(f)
    assert r["metrics"]["classifier_fid"] is None and "at least 2 images" in r["null_reasons"]["classifier_fid"]
    assert isinstance(r["metrics"]["edit_accuracy"], float)


def test_data_without_masks_gives_null_region_metrics(tiny):
    # The same images in CelebA's layout without masks/ and synthetic.json: a "real" data set.
    src = synthetic.ensure(n_images=N_IMAGES, image_size=64, seed=0, cache=tiny["cache"], progress=False)
    plain = str(tiny["base"] / "plain")
    shutil.copytree(src, plain, ignore=shutil.ignore_patterns(synthetic.MASK_DIR, synthetic.PARAMS_FILE))
    out = str(tiny["base"] / "out-plain")
    assert eval_main(["--run", tiny["run"], "--data", plain, "--out", out, "--limit", "2", "--no-progress",
                      "--n-samples", "0"]) == 0
    with open(os.path.join(out, "eval.json")) as f:
        r = json.load(f)
    for k in ("outside_l1", "outside_psnr", "inside_l1", "cam_iou", "cam_pointing"):
        assert r["metrics"][k] is None and "mask" in r["null_reasons"][k]
    for k in ("edit_accuracy", "classifier_fid"):  # no --classifier given
        assert r["metrics"][k] is None and "--classifier" in r["null_reasons"][k]
    assert isinstance(r["metrics"]["recon_psnr"], float)


@pytest.mark.parametrize("make_args, expect", [
    (lambda t: ["--run", str(t["base"] / "nope")], "no such folder"),
    (lambda t: ["--run", str(t["base"])], "no checkpoint.pt"),
    (lambda t: ["--run", t["run"], "--classifier", str(t["base"] / "missing.pt")], "no such file"),
    (lambda t: ["--run", t["run"], "--classifier", os.path.join(t["run"], "config.yaml")], "cannot read"),
    (lambda t: ["--run", t["run"], "--inception-weights", str(t["base"] / "none.pth"), "--limit", "1",
                "--no-progress", "--n-samples", "0", "--out", str(t["base"] / "o3")], None),
])
def test_bad_input_is_one_line(tiny, capsys, make_args, expect):
    code = eval_main(make_args(tiny))
    err = capsys.readouterr().err.strip().splitlines()
    if expect is None:  # missing Inception weights: not fatal, the field is null with the reason
        assert code == 0
        with open(str(tiny["base"] / "o3" / "eval.json")) as f:
            r = json.load(f)
        assert r["metrics"]["inception_fid"] is None and "no such file" in r["null_reasons"]["inception_fid"]
        return
    assert code == 1
    assert len(err) == 1 and err[0].startswith("camfast-eval: error:") and expect in err[0], err


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as e:
        eval_main(["--help"])
    assert e.value.code == 0 and "--classifier" in capsys.readouterr().out


def test_classifier_round_trip(tiny):
    model, info = clf_mod.load(tiny["clf"])
    assert info["attrs"] == synthetic.ATTRIBUTES
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, len(synthetic.ATTRIBUTES))
