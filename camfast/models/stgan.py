"""STGAN (Liu et al., CVPR 2019): AttGAN with Selective Transfer Units on the shortcuts.

G is conditioned on the *difference* attribute vector ``c_diff = target - source``
(in the original, both binary vectors are first mapped to ``(a * 2 - 1) * thres_int``
with ``thres_int = 0.5``, so entries of ``c_diff`` are in {-1, 0, 1}); the encoding is
the caller's. D is AttGAN's.
"""
from __future__ import annotations

import torch
from torch import nn

from . import attgan
from .layers import ConvBlock, check_choice, check_int, tile


class STU(nn.Module):
    """Selective Transfer Unit: a convolutional GRU cell run from deep to shallow.

    With ``f`` the encoder feature of this layer and ``s`` the state from the deeper
    layer (already concatenated with ``c_diff`` where the original injects it)::

        s_hat = ConvT4x4/2([s, c_diff])          up-sample the state to f's size
        r     = sigmoid(conv([f, s_hat]))        reset gate
        u     = sigmoid(conv([f, s_hat]))        update gate
        s_new = r * s_hat                        state passed to the shallower unit
        f_hat = tanh(conv([f, s_new]))
        out   = (1 - u) * s_hat + u * f_hat      what the decoder gets instead of f

    So the gates see ``c_diff`` through ``s_hat``, as in the paper's equations.
    Convs have biases and no norm (the original's defaults).
    """

    def __init__(self, channels: int, state_channels: int, kernel_size: int = 3):
        super().__init__()
        pad = kernel_size // 2
        self.up = nn.ConvTranspose2d(state_channels, channels, 4, 2, 1)
        self.reset_gate = nn.Conv2d(2 * channels, channels, kernel_size, 1, pad)
        self.update_gate = nn.Conv2d(2 * channels, channels, kernel_size, 1, pad)
        self.hidden = nn.Conv2d(2 * channels, channels, kernel_size, 1, pad)

    def forward(self, f: torch.Tensor, state: torch.Tensor):
        s_hat = self.up(state)
        fs = torch.cat([f, s_hat], dim=1)
        r = torch.sigmoid(self.reset_gate(fs))
        u = torch.sigmoid(self.update_gate(fs))
        s_new = r * s_hat
        f_hat = torch.tanh(self.hidden(torch.cat([f, s_new], dim=1)))
        return (1 - u) * s_hat + u * f_hat, s_new


class Generator(attgan.Generator):
    """G(x, c_diff) = decode(encode(x), c_diff).

    AttGAN's encoder and decoder, ``shortcut_layers=4`` and ``inject_layers=4`` by
    default. With ``use_stu`` the shortcut features first pass through one STU each
    (deepest shortcut first); without, they are copied as in AttGAN.
    ``stu_inject_layers``: ``c_diff`` is always concatenated to the first STU's state
    (the bottleneck) and also to the state handed on by the first ``stu_inject_layers`` STUs.
    ``one_more_conv`` (0 = off, the default; 1 or 3): the last decoder layer up-samples
    to ``dec_dim // 4`` channels (BN + ReLU) and a stride-1 transposed conv of that kernel
    size maps to the image, as the original's option.
    """

    def __init__(self, n_attrs: int = 13, image_size: int = 128, enc_dim: int = 64, dec_dim: int = 64,
                 enc_layers: int = 5, dec_layers: int = 5, shortcut_layers: int = 4, inject_layers: int = 4,
                 use_stu: bool = True, stu_kernel_size: int = 3, stu_inject_layers: int = 4,
                 one_more_conv: int = 0, lrelu_slope: float = attgan.LRELU_SLOPE):
        super().__init__(n_attrs, image_size, enc_dim, dec_dim, enc_layers, dec_layers,
                         shortcut_layers, inject_layers, lrelu_slope)
        if not isinstance(use_stu, bool):
            raise ValueError(f"use_stu: expected a bool, got {use_stu!r}")
        check_choice("stu_kernel_size", stu_kernel_size, (1, 3, 5, 7), "an odd kernel size in")
        # Like inject_layers; values >= shortcut_layers - 1 all mean "every STU".
        self.stu_inject_layers = check_int("stu_inject_layers", stu_inject_layers, 0, dec_layers - 1)
        check_choice("one_more_conv", one_more_conv, (0, 1, 3))  # 0 = off

        if one_more_conv:
            if dec_dim < 4:
                raise ValueError(f"dec_dim: one_more_conv needs dec_dim >= 4 (it adds a dec_dim // 4 layer), got {dec_dim}")
            last = self.dec_layers[-1].layers[0]
            self.dec_layers[-1] = nn.Sequential(
                ConvBlock(last.in_channels, dec_dim // 4, norm="batch", act="relu", transpose=True),
                ConvBlock(dec_dim // 4, 3, norm="none", act="tanh", transpose=True,
                          kernel_size=one_more_conv, stride=1, padding=one_more_conv // 2),
            )

        self.stu = None
        if use_stu and shortcut_layers > 0:
            units, state_ch = [], self.enc_channels[-1]
            for i in range(shortcut_layers):
                if i <= stu_inject_layers:   # STU 0 always gets c_diff, then the first stu_inject_layers
                    state_ch += n_attrs
                ch = self.enc_channels[-2 - i]
                units.append(STU(ch, state_ch, stu_kernel_size))
                state_ch = ch
            self.stu = nn.ModuleList(units)

    def transfer(self, zs: list[torch.Tensor], c: torch.Tensor) -> list[torch.Tensor]:
        """Replace the shortcut features ``zs[-2], zs[-3], ...`` by their STU outputs."""
        zs = list(zs)
        state = zs[-1]
        for i, unit in enumerate(self.stu):
            if i <= self.stu_inject_layers:
                state = torch.cat([state, tile(c, state.shape[-2:])], dim=1)
            zs[-2 - i], state = unit(zs[-2 - i], state)
        return zs

    def decode(self, zs: list[torch.Tensor], c: torch.Tensor) -> torch.Tensor:
        c = c.to(zs[-1].dtype)
        if self.stu is not None:
            zs = self.transfer(zs, c)
        return super().decode(zs, c)


class Discriminator(attgan.Discriminator):
    """AttGAN's discriminator (see :class:`camfast.models.attgan.Discriminator`)."""
