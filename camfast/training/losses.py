"""The originals' losses: WGAN-GP and the auxiliary attribute classifier."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def d_adversarial(adv_real: torch.Tensor, adv_fake: torch.Tensor) -> torch.Tensor:
    """WGAN critic loss: -(E[D(real)] - E[D(fake)]) (StarGAN's D outputs a patch map: mean over it)."""
    return adv_fake.float().mean() - adv_real.float().mean()


def g_adversarial(adv_fake: torch.Tensor) -> torch.Tensor:
    return -adv_fake.float().mean()


def gradient_penalty(D, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: E[(||grad_x D(x_hat)||_2 - 1)^2] at random points between real and fake.

    ``create_graph=True`` so the penalty trains D (a second-order term, like the CAM loss).
    """
    alpha = torch.rand(real.size(0), 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    adv, _ = D(x_hat)
    (grad,) = torch.autograd.grad(adv.float().sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def classification(logits: torch.Tensor, target: torch.Tensor, reduction: str) -> torch.Tensor:
    """Binary cross-entropy of the attribute logits.

    ``sum``: summed over attributes, averaged over the batch (StarGAN);
    ``mean``: averaged over both (AttGAN, STGAN).
    """
    loss = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="sum" if reduction == "sum" else "mean")
    return loss / logits.size(0) if reduction == "sum" else loss


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).abs().mean()
