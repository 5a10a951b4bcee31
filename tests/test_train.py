"""camfast-train: every backbone's steps, the CAM terms, checkpoints, resume, DDP, the CLI.

Tiny models (conv_dim 8, 64 px, batch 2) on a 40-image synthetic set made once per session.
"""
import os
import signal
import subprocess
import sys

import pytest
import torch

from camfast import models
from camfast.data import synthetic
from camfast.gradcam import GradCAM
from camfast.cli.train import main
from camfast.training import checkpoint, config
from camfast.training.distributed import Dist
from camfast.training.trainer import Trainer

import conftest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def cache(synthetic_cache):
    return synthetic_cache


def tiny_sets(backbone, **over):
    return conftest.tiny_sets(backbone, **{"steps": 4, "n_samples": 2, **over})


def tiny_trainer(backbone, cache, tmp_path, **over):
    cfg = config.resolve(flags={"backbone": backbone, "data_cache": cache}, sets=tiny_sets(backbone, **over))
    return Trainer(cfg, str(tmp_path / "run"), Dist(), torch.device("cpu"))


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def iterate(tr, n):
    """``n`` training iterations (``Trainer.iteration``, as fit runs them), returning the metrics of each."""
    batches, out = tr._batches(), []
    for _ in range(n):
        tr.last = {}
        tr.iteration(*next(batches))
        out.append({k: float(v) for k, v in tr.last.items()})
    return out


# ---------------------------------------------------------------- the objective

@pytest.mark.parametrize("cam", [True, False], ids=["cam", "baseline"])
@pytest.mark.parametrize("backbone", models.BACKBONES)
def test_steps_are_finite_and_train_both_models(backbone, cam, cache, tmp_path):
    lam = {} if cam else {"lambda_cam_g": 0, "lambda_cam_d": 0}
    tr = tiny_trainer(backbone, cache, tmp_path, **lam)
    g0, d0 = snapshot(tr.G_inner), snapshot(tr.D_inner)
    metrics = iterate(tr, 2)
    for m in metrics:
        assert all(torch.isfinite(torch.tensor(v)) for v in m.values()), m
    assert {"d_loss", "d_adv", "d_gp", "d_cls"} <= set(metrics[0])
    assert {"g_loss", "g_adv", "g_cls", "g_rec"} <= set(metrics[1])
    if cam:
        assert {"d_cam", "d_mask", "g_cam", "g_mask"} <= set(metrics[1])
        assert 0 <= metrics[1]["d_mask"] <= 1 and 0 <= metrics[1]["g_mask"] <= 1
    else:
        assert not {"d_cam", "g_cam", "d_mask", "g_mask"} & set(metrics[1])
    for before, model in ((g0, tr.G_inner), (d0, tr.D_inner)):
        changed = [k for k, p in model.named_parameters() if not torch.equal(p.detach(), before[k])]
        assert len(changed) > len(list(model.parameters())) // 2, f"few parameters changed: {changed}"


def test_trainer_without_data_runs_the_same_iteration(cache, tmp_path):
    """The Trainer bench_train_step times: the same initial weights and the same step as a
    full one, built without a data set or a run folder."""
    full = tiny_trainer("attgan", cache, tmp_path)
    bare = Trainer.without_data(full.cfg, torch.device("cpu"))
    x, a = next(full._batches())
    for tr in (full, bare):
        torch.manual_seed(5)
        tr.iteration(x, a)
    for m_full, m_bare in ((full.G_inner, bare.G_inner), (full.D_inner, bare.D_inner)):
        for (k, p), q in zip(m_full.state_dict().items(), m_bare.state_dict().values()):
            assert torch.equal(p, q), k
    assert bare.step == 1 and set(bare.last) == set(full.last)
    default = Trainer.without_data(config.resolve("stargan", sets=tiny_sets("stargan")), torch.device("cpu"))
    assert default.attrs == models.ATTRIBUTES["stargan"]


def test_baseline_computes_no_gradcam(cache, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("Grad-CAM computed with both CAM weights at 0")
    monkeypatch.setattr(GradCAM, "gradients", refuse)
    monkeypatch.setattr(GradCAM, "attach", refuse)
    tr = tiny_trainer("stargan", cache, tmp_path, lambda_cam_g=0, lambda_cam_d=0)
    iterate(tr, 2)


def test_cam_term_reaches_discriminator_through_its_gradients(cache, tmp_path):
    """StarGAN's classifier conv2 lies after the CAM layer: in a D step with no
    classification loss it gets a gradient only through grads (the second-order path)."""
    grads = {}
    for lam in (1.0, 0.0):
        tr = tiny_trainer("stargan", cache, tmp_path, lambda_cam_d=lam, lambda_cls_d=0, lambda_gp=0)
        x, a = next(tr._batches())
        b = 1 - a                                     # every attribute changes: both CAMs non-zero
        tr.d_step(x, a, b, tr.cond.edit(a, b))
        grads[lam] = tr.D_inner.conv2.weight.grad
    assert grads[0.0] is None or not grads[0.0].any()
    assert grads[1.0] is not None and grads[1.0].abs().sum() > 0


def test_g_gradient_through_mask_option(cache, tmp_path):
    tr = tiny_trainer("attgan", cache, tmp_path, cam_g_through_mask=True, cam_sources="fake", n_critic=1)
    m = iterate(tr, 1)[0]
    assert torch.isfinite(torch.tensor(m["g_cam"]))


def test_bf16_autocast_steps(cache, tmp_path):
    """--amp bf16 is meant for GPUs; autocast runs on the CPU too, which checks the dtype plumbing."""
    tr = tiny_trainer("stgan", cache, tmp_path, amp="bf16", n_critic=1)
    m = iterate(tr, 1)[0]
    assert all(torch.isfinite(torch.tensor(v)) for v in m.values()), m
    assert {"d_cam", "g_cam"} <= set(m)


def test_bad_cam_layer_is_named(cache, tmp_path):
    with pytest.raises(ValueError, match="no module named 'nope'"):
        tiny_trainer("stargan", cache, tmp_path, cam_layer="nope")


# ---------------------------------------------------------------- checkpoints and resume

def cli_args(backbone, cache, out, **over):
    args = ["--backbone", backbone, "--data-cache", cache, "--out", out]
    for s in tiny_sets(backbone, **over):
        args += ["--set", s]
    return args


def test_resume_continues_exactly(cache, tmp_path, monkeypatch):
    common = dict(steps=5, n_critic=2, lr_decay="linear", n_samples=1)
    straight, broken = str(tmp_path / "straight"), str(tmp_path / "broken")
    assert main(cli_args("stargan", cache, straight, **common)) == 0

    real_d_step = Trainer.d_step

    def ctrl_c_at_step_3(self, *args):
        out = real_d_step(self, *args)
        if self.step == 2:                            # the third iteration: Ctrl-C arrives mid-run
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(Trainer, "d_step", ctrl_c_at_step_3)
    assert main(cli_args("stargan", cache, broken, **common)) == 130
    assert torch.load(os.path.join(broken, "checkpoint.pt"), weights_only=False)["step"] == 3
    monkeypatch.setattr(Trainer, "d_step", real_d_step)
    assert main(["--resume", broken]) == 0

    a = torch.load(os.path.join(straight, "checkpoint.pt"), weights_only=False)
    b = torch.load(os.path.join(broken, "checkpoint.pt"), weights_only=False)
    assert a["step"] == b["step"] == 5
    for part in ("G", "D"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    for opt in ("g_opt", "d_opt"):
        for i, st in a[opt]["state"].items():
            for k, v in st.items():
                assert torch.equal(v, b[opt]["state"][i][k]), f"{opt} state {i}.{k} differs"
    assert a["data"] == b["data"]
    assert set(b["rng"][0]) >= {"python", "numpy", "torch"}

    def losses(path):
        import csv
        with open(os.path.join(path, "metrics.csv")) as f:
            return [(r["step"], r["d_loss"], r["g_loss"]) for r in csv.DictReader(f)]
    assert losses(straight) == losses(broken)             # one row per step, the same values


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = str(tmp_path / "checkpoint.pt")
    checkpoint.atomic_save({"format": checkpoint.FORMAT, "step": 1}, path)

    def dies_mid_write(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_save({"format": checkpoint.FORMAT, "step": 2}, path)
    monkeypatch.undo()
    assert checkpoint.torch_load(path)["step"] == 1
    assert os.listdir(tmp_path) == ["checkpoint.pt"]      # no temporary file left behind


def test_run_outputs(cache, tmp_path):
    out = str(tmp_path / "run")
    assert main(cli_args("attgan", cache, out, steps=2, sample_every=1, save_every=1, keep_every=2)) == 0
    def listing():  # the run's files; the hidden lock file of the run folder aside
        return sorted(n for n in os.listdir(out) if n != checkpoint.LOCK)
    assert listing() == ["checkpoint-0000002.pt", "checkpoint.pt", "config.yaml", "metrics.csv", "samples"]
    assert sorted(os.listdir(os.path.join(out, "samples"))) == ["step-0000001.png", "step-0000002.png"]
    resolved = config.load_yaml(os.path.join(out, "config.yaml"))
    assert resolved["attrs"] == synthetic.ATTRIBUTES and resolved["cam_layer"] == "conv.2"
    with open(os.path.join(out, "metrics.csv")) as f:
        header = f.readline()
    assert header.startswith("step,time_s") and "d_mask" in header and "g_mask" in header
    # an existing run is not overwritten; resuming a finished run asks for more steps
    assert main(cli_args("attgan", cache, out, steps=2)) == 2
    (tmp_path / "run" / "notes.txt").write_text("mine")
    assert main(cli_args("attgan", cache, out, steps=1) + ["--overwrite"]) == 0
    assert listing() == ["checkpoint.pt", "config.yaml", "metrics.csv", "notes.txt", "samples"]
    assert main(["--resume", out]) == 2
    assert main(["--resume", out, "--set", "lambda_rec=1", "--steps", "3"]) == 2   # would change the run


# ---------------------------------------------------------------- several processes

def test_ddp_two_processes_on_cpu(cache, tmp_path):
    """torchrun, 2 processes, gloo: CAM + gradient penalty double backward through DDP's D.
    The trainer checks at every checkpoint that both ranks hold the same parameters."""
    out = str(tmp_path / "ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "camfast.cli.train"] + cli_args("stgan", cache, out, steps=3, save_every=2)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "x 2 processes" in r.stderr
    ck = torch.load(os.path.join(out, "checkpoint.pt"), weights_only=False)
    assert ck["step"] == 3 and ck["world"] == 2 and len(ck["rng"]) == 2


# ---------------------------------------------------------------- command line

def test_help():
    r = subprocess.run([sys.executable, "-m", "camfast.cli.train", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "--preset" in r.stdout and "--resume" in r.stdout


@pytest.mark.parametrize("args, rc, message", [
    (["--backbone", "cyclegan"], 2, "unknown backbone 'cyclegan'"),
    (["--set", "lamda_rec=1"], 2, "did you mean 'lambda_rec'"),
    (["--set", "image_size=100"], 2, "image_size: expected one of [64, 128, 256]"),
    (["--set", "lambda_cam_g=lots"], 2, "lambda_cam_g: expected float"),
    (["--preset", "nope"], 2, "no preset 'nope'"),
    (["--steps", "many"], 2, "invalid int value"),
    (["--data", "/no/such/celeba"], 1, "data folder not found: /no/such/celeba"),
    (["--resume", "/no/such/run"], 2 - 1, "no such file or folder"),
])
def test_bad_input_is_one_line_and_nonzero(args, rc, message, capsys, tmp_path):
    try:
        got = main(args + ["--out", str(tmp_path / "r")])
    except SystemExit as e:                          # argparse's own errors
        got = e.code
    err = capsys.readouterr().err.strip()
    assert got == rc
    assert len(err.splitlines()) == 1 and message in err, err


def test_unreadable_image_during_training_is_one_line(capsys, tmp_path):
    """A corrupt JPEG met by a DataLoader worker: one line naming it, exit 1."""
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, 7)]
    from PIL import Image
    for n in names:
        Image.new("RGB", (178, 218), (90, 120, 200)).save(root / "img_align_celeba" / n)
    (root / "img_align_celeba" / names[2]).write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "list_attr_celeba.txt").write_text(
        "6\nBald Male\n" + "".join(f"{n} {1 if i % 2 else -1} {-1 if i % 3 else 1}\n" for i, n in enumerate(names)))
    (root / "list_eval_partition.txt").write_text("".join(f"{n} {0 if i < 4 else 1}\n" for i, n in enumerate(names)))
    args = cli_args("stargan", "unused", str(tmp_path / "r"), steps=4, num_workers=1, attrs="Bald,Male")
    assert main(args + ["--data", str(root)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len([ln for ln in err if "error" in ln]) == 1
    assert err[-1].startswith("camfast-train: error: cannot read image") and names[2] in err[-1]


def test_unknown_model_option_is_one_line(cache, capsys, tmp_path):
    assert main(cli_args("stargan", cache, str(tmp_path / "r"), **{"model.wings": 2})) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "wings" in err


def test_docs_describe_every_option():
    with open(os.path.join(ROOT, "docs", "training.md")) as f:
        doc = f.read()
    missing = [k for k in config.OPTIONS if f"`{k}`" not in doc]
    assert not missing, f"docs/training.md does not describe {missing}"
    assert config.options_markdown() in doc, "the table of All options is not config.options_markdown(); paste it in"


@pytest.mark.parametrize("preset", ["stargan", "attgan", "stgan", "quick"])
def test_presets_resolve(preset):
    cfg = config.resolve(files=[("--preset", config.preset_path(preset))])
    assert preset == "quick" or cfg["backbone"] == preset
    assert cfg["lambda_gp"] == 10 and cfg["beta1"] == 0.5
    assert cfg["n_critic"] == (1 if preset == "quick" else 5)   # quick: the synthetic-attgan budget
    if preset in ("stargan", "attgan", "stgan"):   # the preset spells out the built-in defaults
        base = config.defaults(preset)
        for key in ("g_lr", "lambda_cls_g", "lambda_cls_d", "lambda_rec", "lr_decay", "lambda_cam_g", "lambda_cam_d"):
            assert cfg[key] == base[key], key
    # flags and --set override the preset, --set last
    cfg = config.resolve(files=[("--preset", config.preset_path(preset))], flags={"steps": 7}, sets=["steps=9"])
    assert cfg["steps"] == 9
