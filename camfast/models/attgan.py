"""AttGAN (He et al., TIP 2019), as in the widely used PyTorch port.

Module names (``enc_layers``, ``dec_layers``, ``conv``, ``fc_adv``, ``fc_cls``, each
block holding a ``layers`` Sequential) follow that port, so its state-dict keys read
the same.

The condition ``c`` is taken as given. The original feeds ``(a * 2 - 1) * thres_int``
for binary attributes ``a`` (``thres_int = 0.5``, so entries are +-0.5) and, at test
time, scales the edited entry by a chosen intensity; that encoding is the caller's.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import ConvBlock, LinearBlock, check_image_size, check_int, check_slope, tile

MAX_DIM = 1024  # channel cap of every conv layer (64 * 16)
# LeakyReLU slope of G's encoder and of D. The authors' TensorFlow AttGAN and STGAN use 0.2;
# the PyTorch port (whose module names and parameter counts camfast follows) uses
# nn.LeakyReLU()'s 0.01. camfast follows the authors: lrelu_slope=0.01 gives the port's.
LRELU_SLOPE = 0.2


class Generator(nn.Module):
    """Encoder-decoder G(x, c) = decode(encode(x), c).

    Encoder: ``enc_layers`` 4x4 stride-2 convs + batch norm + LeakyReLU(``lrelu_slope``).
    Decoder: ``dec_layers`` 4x4 stride-2 transposed convs + batch norm + ReLU, the last
    one to 3 channels with tanh. ``c`` is tiled and concatenated to the bottleneck; the
    first ``shortcut_layers`` decoder outputs are concatenated with the encoder feature
    of the same size (U-Net style) and the first ``inject_layers`` with ``c`` again.
    """

    def __init__(self, n_attrs: int = 13, image_size: int = 128, enc_dim: int = 64, dec_dim: int = 64,
                 enc_layers: int = 5, dec_layers: int = 5, shortcut_layers: int = 1, inject_layers: int = 0,
                 lrelu_slope: float = LRELU_SLOPE):
        super().__init__()
        slope = check_slope(lrelu_slope)
        self.n_attrs = check_int("n_attrs", n_attrs, 1)
        check_int("enc_dim", enc_dim, 1)
        check_int("dec_dim", dec_dim, 1)
        check_int("enc_layers", enc_layers, 1)
        self.image_size = check_image_size(image_size, enc_layers, "enc_layers")
        if dec_layers != enc_layers:
            # The decoder must undo every halving of the encoder to give back an image of the input size.
            raise ValueError(f"dec_layers: expected {enc_layers} (= enc_layers), got {dec_layers!r}")
        # The original clamps these to dec_layers - 1; we refuse instead of silently changing them.
        self.shortcut_layers = check_int("shortcut_layers", shortcut_layers, 0, dec_layers - 1)
        self.inject_layers = check_int("inject_layers", inject_layers, 0, dec_layers - 1)

        enc_ch = [min(enc_dim * 2 ** i, MAX_DIM) for i in range(enc_layers)]
        self.enc_channels = enc_ch
        n_in, blocks = 3, []
        for ch in enc_ch:
            blocks.append(ConvBlock(n_in, ch, norm="batch", act="lrelu", slope=slope))
            n_in = ch
        self.enc_layers = nn.ModuleList(blocks)

        n_in, blocks = enc_ch[-1] + n_attrs, []
        for i in range(dec_layers - 1):
            n_out = min(dec_dim * 2 ** (dec_layers - 1 - i), MAX_DIM)
            blocks.append(ConvBlock(n_in, n_out, norm="batch", act="relu", transpose=True))
            n_in = n_out
            if i < shortcut_layers:
                n_in += enc_ch[-2 - i]
            if i < inject_layers:
                n_in += n_attrs
        blocks.append(ConvBlock(n_in, 3, norm="none", act="tanh", transpose=True))
        self.dec_layers = nn.ModuleList(blocks)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every encoder block's output, shallow to deep."""
        zs = []
        for layer in self.enc_layers:
            x = layer(x)
            zs.append(x)
        return zs

    def decode(self, zs: list[torch.Tensor], c: torch.Tensor) -> torch.Tensor:
        c = c.to(zs[-1].dtype)
        z = torch.cat([zs[-1], tile(c, zs[-1].shape[-2:])], dim=1)
        for i, layer in enumerate(self.dec_layers):
            z = layer(z)
            if i < self.shortcut_layers:
                z = torch.cat([z, zs[-2 - i]], dim=1)
            if i < self.inject_layers:
                z = torch.cat([z, tile(c, z.shape[-2:])], dim=1)
        return z

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x), c)


class Discriminator(nn.Module):
    """``D(x) -> (adv [B, 1], logits [B, n_attrs])``.

    ``n_layers`` 4x4 stride-2 convs + instance norm (affine) + LeakyReLU(``lrelu_slope``), flattened,
    then two heads: Linear(flat, fc_dim) + ReLU + Linear(fc_dim, 1 or n_attrs).
    """

    def __init__(self, n_attrs: int = 13, image_size: int = 128, dim: int = 64, fc_dim: int = 1024,
                 n_layers: int = 5, lrelu_slope: float = LRELU_SLOPE):
        super().__init__()
        slope = check_slope(lrelu_slope)
        self.n_attrs = check_int("n_attrs", n_attrs, 1)
        check_int("dim", dim, 1)
        check_int("fc_dim", fc_dim, 1)
        # The CAM layer is the third stride-2 block, so there must be one.
        check_int("n_layers", n_layers, 3)
        self.image_size = check_image_size(image_size, n_layers, "n_layers")

        blocks, n_in, size = [], 3, image_size
        # cam_layers: name -> (channels, h, w) of that block's output (after its LeakyReLU),
        # shallow to deep. Default: the third block, 256 x 16 x 16 at 128 px.
        self.cam_layers = {}
        for i in range(n_layers):
            ch = min(dim * 2 ** i, MAX_DIM)
            blocks.append(ConvBlock(n_in, ch, norm="instance", act="lrelu", slope=slope))
            n_in, size = ch, size // 2
            self.cam_layers[f"conv.{i}"] = (ch, size, size)
        self.conv = nn.Sequential(*blocks)
        self.default_cam_layer = "conv.2"

        n_flat = n_in * size * size
        self.fc_adv = nn.Sequential(LinearBlock(n_flat, fc_dim, act="relu"), LinearBlock(fc_dim, 1, act="none"))
        self.fc_cls = nn.Sequential(LinearBlock(n_flat, fc_dim, act="relu"), LinearBlock(fc_dim, n_attrs, act="none"))

    def forward(self, x: torch.Tensor):
        h = self.conv(x).flatten(1)
        return self.fc_adv(h), self.fc_cls(h)
