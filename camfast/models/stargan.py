"""StarGAN (Choi et al., CVPR 2018), as in the authors' PyTorch implementation.

Module layout (``main``, ``conv1``, ``conv2``) follows the authors' code, so their
checkpoints' state-dict keys are the same.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import check_image_size, check_int, tile


def _instance_norm(n: int) -> nn.InstanceNorm2d:
    # affine + running statistics, as the original (eval mode then uses the running stats).
    return nn.InstanceNorm2d(n, affine=True, track_running_stats=True)


class ResidualBlock(nn.Module):
    """conv3x3 -> IN -> ReLU -> conv3x3 -> IN, plus the identity."""

    def __init__(self, dim: int):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(dim, dim, 3, 1, 1, bias=False), _instance_norm(dim), nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, 3, 1, 1, bias=False), _instance_norm(dim),
        )

    def forward(self, x):
        return x + self.main(x)


class Generator(nn.Module):
    """G(x, c): x [B, 3, H, W] in [-1, 1], c [B, n_attrs] the target attributes in {0, 1}.

    c is tiled over the image and concatenated to it on channels; then
    7x7 conv, two stride-2 down-sampling convs, ``repeat_num`` residual blocks,
    two stride-2 transposed convs, 7x7 conv, tanh.
    """

    def __init__(self, n_attrs: int = 5, image_size: int = 128, conv_dim: int = 64, repeat_num: int = 6):
        super().__init__()
        self.n_attrs = check_int("n_attrs", n_attrs, 1)
        self.image_size = check_image_size(image_size, 2, "down-sampling convs")
        check_int("conv_dim", conv_dim, 1)
        check_int("repeat_num", repeat_num, 0)

        layers = [nn.Conv2d(3 + n_attrs, conv_dim, 7, 1, 3, bias=False), _instance_norm(conv_dim), nn.ReLU(inplace=True)]
        dim = conv_dim
        for _ in range(2):      # down-sampling
            layers += [nn.Conv2d(dim, dim * 2, 4, 2, 1, bias=False), _instance_norm(dim * 2), nn.ReLU(inplace=True)]
            dim *= 2
        layers += [ResidualBlock(dim) for _ in range(repeat_num)]
        for _ in range(2):      # up-sampling
            layers += [nn.ConvTranspose2d(dim, dim // 2, 4, 2, 1, bias=False), _instance_norm(dim // 2), nn.ReLU(inplace=True)]
            dim //= 2
        layers += [nn.Conv2d(dim, 3, 7, 1, 3, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.main(torch.cat([x, tile(c.to(x.dtype), x.shape[-2:])], dim=1))


class Discriminator(nn.Module):
    """PatchGAN D with an auxiliary attribute classifier: ``D(x) -> (adv, logits)``.

    ``repeat_num`` stride-2 4x4 convs with LeakyReLU(0.01) (``conv_dim`` channels,
    doubling each time), then two heads on the final map: ``conv1`` a 3x3 real/fake
    map [B, 1, s, s] and ``conv2`` a conv whose kernel covers the whole map, giving
    the attribute logits [B, n_attrs].
    """

    def __init__(self, n_attrs: int = 5, image_size: int = 128, conv_dim: int = 64, repeat_num: int = 6):
        super().__init__()
        self.n_attrs = check_int("n_attrs", n_attrs, 1)
        check_int("conv_dim", conv_dim, 1)
        # The CAM layer is the third stride-2 block, so there must be one.
        check_int("repeat_num", repeat_num, 3)
        self.image_size = check_image_size(image_size, repeat_num, "repeat_num")

        layers, dim, size = [], conv_dim, image_size // 2
        self.cam_layers = {}
        layers += [nn.Conv2d(3, conv_dim, 4, 2, 1), nn.LeakyReLU(0.01)]
        self.cam_layers["main.1"] = (dim, size, size)
        for _ in range(1, repeat_num):
            layers += [nn.Conv2d(dim, dim * 2, 4, 2, 1), nn.LeakyReLU(0.01)]
            dim, size = dim * 2, size // 2
            self.cam_layers[f"main.{len(layers) - 1}"] = (dim, size, size)
        self.main = nn.Sequential(*layers)
        self.conv1 = nn.Conv2d(dim, 1, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(dim, n_attrs, size, bias=False)

        # cam_layers: name -> (channels, h, w) of that block's output (after its LeakyReLU),
        # shallow to deep. Default: the third block, 16x16 at 128 px, fine enough to localise.
        self.default_cam_layer = "main.5"

    def forward(self, x: torch.Tensor):
        h = self.main(x)
        return self.conv1(h), self.conv2(h).view(h.size(0), -1)
