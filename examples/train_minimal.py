"""The CAM-consistency loss in a minimal conditional GAN, written from scratch.

A StarGAN-style loop on toy images: G edits an image towards target attributes; D scores
real against fake and classifies the attributes. The lines marked `# camfast` are the whole
integration; without them this is a plain conditional GAN.

    python examples/train_minimal.py            # CPU, a few seconds
"""
import argparse

import torch
import torch.nn.functional as F
from torch import nn

import camfast

K = 2  # attributes: 0 = a bright square near the top left, 1 = a bright band at the bottom


def toy_batch(n, size=32):
    """Images ``[n, 3, size, size]`` in [-1, 1] and attributes ``[n, K]`` in {0, 1}."""
    c = torch.randint(0, 2, (n, K)).float()
    x = 0.2 * torch.randn(n, 3, size, size)
    q = size // 4
    x[:, :, q:2 * q, q:2 * q] += 1.5 * c[:, 0, None, None, None]
    x[:, :, 3 * q:, :] += 1.5 * c[:, 1, None, None, None]
    return x.clamp(-1, 1), c


class Generator(nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3 + K, width, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(width, 3, 3, 1, 1), nn.Tanh())

    def forward(self, x, c):  # the target attributes enter as constant planes
        planes = c[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        return self.net(torch.cat([x, planes], dim=1))


class Discriminator(nn.Module):
    """``D(x) -> (real/fake score map, attribute logits [B, K])``."""

    def __init__(self, width=16, size=32):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.01),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.01))  # "main.3": 8 x 8 at 32 px
        self.adv = nn.Conv2d(2 * width, 1, 3, 1, 1)
        self.cls = nn.Conv2d(2 * width, K, size // 4)

    def forward(self, x):
        h = self.main(x)
        return self.adv(h), self.cls(h).flatten(1)


def main(argv=None):
    p = argparse.ArgumentParser(description="Train a toy conditional GAN with the CAM-consistency loss.")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args(argv)
    torch.manual_seed(0)

    G, D = Generator(), Discriminator()
    g_opt = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    cam = camfast.CAMConsistency(D, "main.3")                                  # camfast
    lambda_cam_d, lambda_cam_g, lambda_rec = 1.0, 10.0, 10.0

    for step in range(1, args.steps + 1):
        x_real, c_src = toy_batch(args.batch)
        c_trg = c_src[torch.randperm(len(c_src))]  # edit towards another image's attributes

        # D step: D learns to attend to what G changed (its gradient flows through its Grad-CAM).
        x_fake = G(x_real, c_trg).detach()
        with cam.capture():                                                    # camfast
            adv_real, cls_real = D(x_real)
            adv_fake, cls_fake = D(x_fake)
            d_cam = cam.d_loss(x_real, x_fake, c_src, c_trg, cls_real, cls_fake)  # camfast
        d_loss = (F.softplus(-adv_real).mean() + F.softplus(adv_fake).mean()
                  + F.binary_cross_entropy_with_logits(cls_real, c_src)
                  + lambda_cam_d * d_cam)                                      # camfast
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()

        # G step: G keeps everything outside D's mask (the mask taken as given).
        x_fake = G(x_real, c_trg)
        adv_fake, cls_fake = D(x_fake)
        g_cam = cam.g_loss(x_real, x_fake, c_src, c_trg)          # camfast (runs D on both images)
        g_loss = (F.softplus(-adv_fake).mean()
                  + F.binary_cross_entropy_with_logits(cls_fake, c_trg)
                  + lambda_rec * (G(x_fake, c_src) - x_real).abs().mean()
                  + lambda_cam_g * g_cam)                                      # camfast
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()

        if step == 1 or step % 10 == 0 or step == args.steps:
            print(f"step {step:4d}  d_loss {d_loss.item():.4f}  g_loss {g_loss.item():.4f}  "
                  f"d_cam {d_cam.item():.4f}  g_cam {g_cam.item():.4f}")

    mask = cam.mask(x_real, x_fake, c_src, c_trg)  # D's mask [B, 1, H, W] for the last edit
    print(f"done: D's mask covers {mask.mean().item():.1%} of the last batch")


if __name__ == "__main__":
    main()
