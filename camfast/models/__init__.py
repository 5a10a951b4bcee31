"""GAN backbones: StarGAN, AttGAN, STGAN.

    G, D = build("attgan", image_size=128, shortcut_layers=1, inject_layers=1)
    adv, logits = D(x)                      # every D returns (adversarial output, [B, n_attrs])
    D.default_cam_layer, D.cam_layers       # names in dict(D.named_modules())

Options common to all: ``image_size`` (64, 128 or 256), ``n_attrs`` or ``attrs`` (a list
of attribute names; default: the original's list, see ``ATTRIBUTES``) and ``conv_dim``
(shorthand for every base width of that backbone). The rest, per backbone, are listed by
``options(name)``; a more specific width overrides ``conv_dim``. See docs/backbones.md.
"""
from __future__ import annotations

from . import attgan, stargan, stgan
from .attributes import ATTRIBUTES, CELEBA_ATTRIBUTES
from .layers import IMAGE_SIZES

# config key -> the (part, constructor argument) pairs it sets; part is "G" or "D".
# "conv_dim" is a shorthand applied before the specific keys, which override it.
_STARGAN = {
    "conv_dim": [("G", "conv_dim"), ("D", "conv_dim")],
    "g_conv_dim": [("G", "conv_dim")],
    "d_conv_dim": [("D", "conv_dim")],
    "g_repeat_num": [("G", "repeat_num")],
    "d_repeat_num": [("D", "repeat_num")],
}
_ATTGAN = {
    "conv_dim": [("G", "enc_dim"), ("G", "dec_dim"), ("D", "dim")],
    "enc_dim": [("G", "enc_dim")],
    "dec_dim": [("G", "dec_dim")],
    "enc_layers": [("G", "enc_layers")],
    "dec_layers": [("G", "dec_layers")],
    "shortcut_layers": [("G", "shortcut_layers")],
    "inject_layers": [("G", "inject_layers")],
    "dis_dim": [("D", "dim")],
    "dis_fc_dim": [("D", "fc_dim")],
    "dis_layers": [("D", "n_layers")],
    "lrelu_slope": [("G", "lrelu_slope"), ("D", "lrelu_slope")],
}
_STGAN = {
    **_ATTGAN,
    "use_stu": [("G", "use_stu")],
    "stu_kernel_size": [("G", "stu_kernel_size")],
    "stu_inject_layers": [("G", "stu_inject_layers")],
    "one_more_conv": [("G", "one_more_conv")],
}
_SHORTHANDS = ("conv_dim",)

_REGISTRY = {
    "stargan": (stargan.Generator, stargan.Discriminator, _STARGAN),
    "attgan": (attgan.Generator, attgan.Discriminator, _ATTGAN),
    "stgan": (stgan.Generator, stgan.Discriminator, _STGAN),
}
BACKBONES = tuple(_REGISTRY)


def _lookup(name):
    if name not in _REGISTRY:
        raise ValueError(f"name: unknown backbone {name!r}; expected one of {list(BACKBONES)}")
    return _REGISTRY[name]


def options(name: str) -> list[str]:
    """The config keys ``build(name, ...)`` accepts."""
    return ["image_size", "n_attrs", "attrs"] + list(_lookup(name)[2])


def _n_attrs(name: str, attrs, n_attrs) -> int:
    if attrs is None:
        return len(ATTRIBUTES[name]) if n_attrs is None else n_attrs
    if isinstance(attrs, str) or not all(isinstance(a, str) for a in attrs):
        raise ValueError(f"attrs: expected a list of attribute names, got {attrs!r}")
    if n_attrs is not None and n_attrs != len(attrs):
        raise ValueError(f"n_attrs: got {n_attrs!r} but attrs lists {len(attrs)} attributes")
    return len(attrs)


def _split(name: str, config: dict) -> tuple[type, type, dict, dict]:
    """Validate ``config`` and turn it into the G and D constructor arguments."""
    G, D, table = _lookup(name)
    config = dict(config)
    unknown = sorted(set(config) - set(options(name)))
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {unknown}; accepted: {options(name)}")
    n = _n_attrs(name, config.pop("attrs", None), config.pop("n_attrs", None))
    common = {"n_attrs": n, "image_size": config.pop("image_size", 128)}
    kwargs = {"G": dict(common), "D": dict(common)}
    ordered = [k for k in config if k in _SHORTHANDS] + [k for k in config if k not in _SHORTHANDS]
    for key in ordered:
        for part, arg in table[key]:
            kwargs[part][arg] = config[key]
    return G, D, kwargs["G"], kwargs["D"]


def build(name: str, **config):
    """``(G, D)`` of backbone ``name`` ("stargan", "attgan", "stgan"); ValueError on bad config."""
    G, D, g_kwargs, d_kwargs = _split(name, config)
    return G(**g_kwargs), D(**d_kwargs)


def build_generator(name: str, **config):
    G, _, g_kwargs, _ = _split(name, config)
    return G(**g_kwargs)


def build_discriminator(name: str, **config):
    _, D, _, d_kwargs = _split(name, config)
    return D(**d_kwargs)


__all__ = [
    "ATTRIBUTES", "BACKBONES", "CELEBA_ATTRIBUTES", "IMAGE_SIZES",
    "attgan", "build", "build_discriminator", "build_generator", "options", "stargan", "stgan",
]
