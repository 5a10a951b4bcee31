"""Backbones: shapes, exact parameter counts, gradients, Grad-CAM at the default layer."""
import pytest
import torch

from camfast import models, reference
from camfast.gradcam import GradCAM

SIZES = models.IMAGE_SIZES


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def small(name, **config):
    """A narrow model: enough to test shapes and gradients in milliseconds."""
    if name != "stargan":
        config.setdefault("dis_fc_dim", 16)
    return models.build(name, conv_dim=8, **config)


def condition(name, batch, n_attrs, generator=None):
    """A condition in each backbone's usual encoding."""
    a = torch.randint(0, 2, (batch, n_attrs), generator=generator).float()
    if name == "stargan":
        return a                                   # target attributes in {0, 1}
    if name == "attgan":
        return (a * 2 - 1) * 0.5                   # (a * 2 - 1) * thres_int
    b = torch.randint(0, 2, (batch, n_attrs), generator=generator).float()
    return (b - a)                                 # target - source, in {-1, 0, 1}


# ---------------------------------------------------------------- shapes

@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", models.BACKBONES)
def test_output_shapes(name, size):
    torch.manual_seed(0)
    G, D = small(name, image_size=size)
    n = len(models.ATTRIBUTES[name])
    x = torch.rand(2, 3, size, size) * 2 - 1
    y = G(x, condition(name, 2, n))
    assert y.shape == x.shape
    assert y.abs().max() <= 1                      # tanh output
    seen = {}
    modules = dict(D.named_modules())
    hooks = [modules[k].register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o.shape[1:]))
             for k in D.cam_layers]
    adv, logits = D(y)
    for h in hooks:
        h.remove()
    assert seen == {k: torch.Size(v) for k, v in D.cam_layers.items()}   # cam_layers tells the truth
    assert D.cam_layers[D.default_cam_layer][1:] == (size // 8, size // 8)
    assert logits.shape == (2, n)
    if name == "stargan":                          # PatchGAN map, 2^6 times smaller than the image
        assert adv.shape == (2, 1, size // 64, size // 64)
    else:
        assert adv.shape == (2, 1)


@pytest.mark.parametrize("name", ["attgan", "stgan"])
def test_encode_decode_is_forward(name):
    torch.manual_seed(0)
    G, _ = small(name, image_size=64)
    G.eval()                                       # batch norm: same statistics in both calls
    x, c = torch.randn(2, 3, 64, 64), condition(name, 2, 13)
    zs = G.encode(x)
    assert [z.shape[1] for z in zs] == [8, 16, 32, 64, 128]
    assert [z.shape[-1] for z in zs] == [32, 16, 8, 4, 2]
    torch.testing.assert_close(G.decode(zs, c), G(x, c))


@pytest.mark.parametrize("config", [{"use_stu": False}, {"one_more_conv": 3}, {"one_more_conv": 1},
                                    {"shortcut_layers": 1, "inject_layers": 0, "stu_inject_layers": 0},
                                    {"shortcut_layers": 0}, {"n_attrs": 4}])
def test_stgan_options(config):
    torch.manual_seed(0)
    G, D = small("stgan", image_size=64, **config)
    n = config.get("n_attrs", 13)
    assert (G.stu is None) == (not config.get("use_stu", True) or config.get("shortcut_layers") == 0)
    y = G(torch.randn(2, 3, 64, 64), condition("stgan", 2, n))
    assert y.shape == (2, 3, 64, 64)
    assert D(y)[1].shape == (2, n)


# ---------------------------------------------------------------- parameter counts
# Built on the meta device: no memory, no initialisation, no forward pass.

def count(name, **config):
    with torch.device("meta"):
        G, D = models.build(name, image_size=128, **config)
    return n_params(G), n_params(D)


def test_stargan_parameter_counts():
    # The authors' implementation, CelebA, 128 px, 5 attributes.
    assert count("stargan") == (8_430_528, 44_762_048)


def test_attgan_parameter_counts():
    # The PyTorch port's defaults, 128 px, 13 attributes, shortcut_layers=1.
    assert count("attgan", inject_layers=0) == (43_352_707, 44_718_990)
    assert count("attgan", inject_layers=1) == (43_459_203, 44_718_990)


def test_stgan_reuses_attgan_discriminator():
    g_st, d_st = count("stgan")
    _, d_att = count("attgan")
    assert d_st == d_att
    assert g_st > count("stgan", use_stu=False)[0]      # the STUs add parameters


@pytest.mark.parametrize("name", models.BACKBONES)
def test_default_cam_layer_is_third_block_at_full_width(name):
    with torch.device("meta"):
        _, D = models.build(name, image_size=128)
    modules = dict(D.named_modules())
    assert D.default_cam_layer in D.cam_layers
    assert all(layer in modules for layer in D.cam_layers)
    assert D.cam_layers[D.default_cam_layer] == (256, 16, 16)
    assert list(D.cam_layers).index(D.default_cam_layer) == 2


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("name", models.BACKBONES)
def test_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    G, D = small(name, image_size=64)
    x = torch.randn(2, 3, 64, 64)
    adv, logits = D(G(x, condition(name, 2, G.n_attrs)))
    (adv.mean() + logits.mean()).backward()
    for part in (G, D):
        missing = [n for n, p in part.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, f"{type(part).__module__}: no gradient for {missing}"


# Parameters on the classifier path after the default CAM layer (default depths).
AFTER_CAM = {
    "stargan": ["main.6.", "main.8.", "main.10.", "conv2."],
    "attgan": ["conv.3.", "conv.4.", "fc_cls."],
    "stgan": ["conv.3.", "conv.4.", "fc_cls."],
}
ADV_HEAD = {"stargan": "conv1.", "attgan": "fc_adv.", "stgan": "fc_adv."}


@pytest.mark.parametrize("name", models.BACKBONES)
def test_gradcam_at_default_layer(name):
    torch.manual_seed(0)
    size, batch = 128, 3
    _, D = small(name, image_size=size)
    real = torch.rand(batch, 3, size, size) * 2 - 1
    fake = (real + 0.3 * torch.randn_like(real)).clamp(-1, 1)
    weights = torch.zeros(batch, D.n_attrs)
    weights[:, :2] = 1                                            # a score on two attributes

    with GradCAM(D, D.default_cam_layer) as cam:
        adv, logits = D(real)
        feats, grads = cam.gradients(logits, weights, create_graph=True)

    channels, h, w = D.cam_layers[D.default_cam_layer]
    assert (h, w) == (16, 16)
    assert feats.shape == grads.shape == (batch, channels, 16, 16)
    assert grads.requires_grad                                    # second-order graph kept

    mask = reference.grad_cam_mask([feats], [grads], (size, size))
    assert mask.shape == (batch, 1, size, size)
    assert mask.min() >= 0 and mask.max() <= 1
    assert mask.flatten(1).amax(1).gt(0.5).all()                  # min-max: a non-trivial CAM per sample

    # feats detached: the loss reaches D only through grads, i.e. through the
    # derivative of the classifier that lies after the CAM layer (second order).
    # Every weight there must get a gradient. Biases may not: a bias followed only by
    # piecewise-linear layers shifts the score without changing its derivative.
    D.zero_grad(set_to_none=True)
    loss = reference.cam_consistency_loss(real, fake, [feats.detach()], [grads])
    loss.backward()
    params = dict(D.named_parameters())
    after = [n for n in params if any(n.startswith(p) for p in AFTER_CAM[name]) and n.endswith("weight")]
    assert after
    for n in after:
        assert params[n].grad is not None and params[n].grad.abs().sum() > 0, n
    for n, p in params.items():                                   # the score never used the adversarial head
        if n.startswith(ADV_HEAD[name]):
            assert p.grad is None or not p.grad.any(), n


# ---------------------------------------------------------------- registry and config errors

def test_attribute_lists():
    assert models.ATTRIBUTES["stargan"] == ["Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young"]
    assert len(models.ATTRIBUTES["attgan"]) == 13
    assert models.ATTRIBUTES["stgan"] == models.ATTRIBUTES["attgan"]
    assert len(models.CELEBA_ATTRIBUTES) == 40
    for attrs in models.ATTRIBUTES.values():
        assert set(attrs) <= set(models.CELEBA_ATTRIBUTES)


def test_attrs_sets_n_attrs():
    with torch.device("meta"):
        G, D = models.build("attgan", attrs=["Bald", "Bangs", "Young"])
        assert G.n_attrs == D.n_attrs == 3
        assert models.build_generator("stargan").n_attrs == 5
        assert models.build_discriminator("stgan", n_attrs=7).n_attrs == 7


def test_specific_width_overrides_conv_dim():
    with torch.device("meta"):
        G, D = models.build("stargan", conv_dim=8, d_conv_dim=4)
    assert G.main[0].out_channels == 8 and D.main[0].out_channels == 4


@pytest.mark.parametrize("name, config, match", [
    ("cyclegan", {}, r"unknown backbone 'cyclegan'.*stargan.*attgan.*stgan"),
    ("stargan", {"image_size": 100}, r"image_size: expected one of \(64, 128, 256\), got 100"),
    ("attgan", {"image_size": 512}, r"image_size: expected one of \(64, 128, 256\)"),
    ("stgan", {"image_size": "128"}, r"image_size"),
    ("stargan", {"image_size": 128.0}, r"image_size: expected one of"),
    ("attgan", {"enc_dims": 8}, r"unknown option\(s\) \['enc_dims'\]; accepted: .*enc_dim"),
    ("stargan", {"shortcut_layers": 1}, r"unknown option"),
    ("stargan", {"n_attrs": 0}, r"n_attrs: expected an int >= 1, got 0"),
    ("attgan", {"attrs": "Bald"}, r"attrs: expected a list"),
    ("attgan", {"attrs": ["Bald", "Bangs"], "n_attrs": 3}, r"n_attrs: got 3 but attrs lists 2"),
    ("attgan", {"conv_dim": 8.0}, r"enc_dim: expected an int"),
    ("attgan", {"shortcut_layers": 5}, r"shortcut_layers: expected an int in \[0, 4\], got 5"),
    ("attgan", {"inject_layers": -1}, r"inject_layers"),
    ("attgan", {"dec_layers": 4}, r"dec_layers: expected 5"),
    ("attgan", {"image_size": 64, "enc_layers": 7}, r"enc_layers=7: image_size 64 is not divisible"),
    ("stargan", {"d_repeat_num": 7, "image_size": 64}, r"repeat_num=7"),
    ("stargan", {"d_repeat_num": 2}, r"repeat_num: expected an int >= 3"),
    ("stgan", {"one_more_conv": 2}, r"one_more_conv: expected one of \(0, 1, 3\), got 2"),
    ("stgan", {"use_stu": 1}, r"use_stu: expected a bool"),
    ("stgan", {"stu_kernel_size": 4}, r"stu_kernel_size"),
])
def test_bad_config(name, config, match):
    with torch.device("meta"), pytest.raises(ValueError, match=match):
        models.build(name, **config)
