"""The loop of train_minimal.py through the lower-level pieces: GradCAM + cam_consistency_loss.

For code that already captures D's activations, or needs a variant that CAMConsistency does
not cover. Each step does by hand what CAMConsistency does: the score weights of the
removed and added attributes, one Grad-CAM per image from the forwards the adversarial
losses also use, ``create_graph=True`` on D's side only, and a detached mask on G's side.

    python examples/lower_level.py              # CPU, a few seconds
"""
import argparse

import torch
import torch.nn.functional as F

import camfast
from train_minimal import Discriminator, Generator, toy_batch

LAYER = "main.3"


def main(argv=None):
    p = argparse.ArgumentParser(description="The toy GAN of train_minimal.py with GradCAM + cam_consistency_loss.")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args(argv)
    torch.manual_seed(0)

    G, D = Generator(), Discriminator()
    g_opt = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    lambda_cam_d, lambda_cam_g, lambda_rec = 1.0, 10.0, 10.0

    for step in range(1, args.steps + 1):
        x_real, c_src = toy_batch(args.batch)
        c_trg = c_src[torch.randperm(len(c_src))]
        # Score weights: the attributes being removed (their evidence is in the real image)
        # and those being added (in the translated one).
        w_real, w_fake = camfast.score_weights(c_src, c_trg)

        # D step. create_graph=True: D's gradient also flows through its Grad-CAM.
        x_fake = G(x_real, c_trg).detach()
        with camfast.GradCAM(D, LAYER) as tape:
            adv_real, cls_real = D(x_real)       # forward call 0
            adv_fake, cls_fake = D(x_fake)       # forward call 1
            f_real, g_real = tape.gradients(cls_real, w_real, create_graph=True)  # finds call 0
            f_fake, g_fake = tape.gradients(cls_fake, w_fake, create_graph=True)  # finds call 1
        d_cam = camfast.cam_consistency_loss(x_real, x_fake, [f_real, f_fake], [g_real, g_fake])
        d_loss = (F.softplus(-adv_real).mean() + F.softplus(adv_fake).mean()
                  + F.binary_cross_entropy_with_logits(cls_real, c_src) + lambda_cam_d * d_cam)
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()

        # G step. create_graph=False and detached feats/grads: D's mask is taken as given.
        # (With D frozen by requires_grad_(False), run it on x_real.detach().requires_grad_().)
        x_fake = G(x_real, c_trg)
        with camfast.GradCAM(D, LAYER) as tape:
            adv_fake, cls_fake = D(x_fake)
            _, cls_real = D(x_real)
            f_real, g_real = tape.gradients(cls_real, w_real, create_graph=False)
            f_fake, g_fake = tape.gradients(cls_fake, w_fake, create_graph=False)
        g_cam = camfast.cam_consistency_loss(x_real, x_fake, [f_real.detach(), f_fake.detach()],
                                             [g_real.detach(), g_fake.detach()])
        g_loss = (F.softplus(-adv_fake).mean() + F.binary_cross_entropy_with_logits(cls_fake, c_trg)
                  + lambda_rec * (G(x_fake, c_src) - x_real).abs().mean() + lambda_cam_g * g_cam)
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()

        if step == 1 or step % 10 == 0 or step == args.steps:
            print(f"step {step:4d}  d_loss {d_loss.item():.4f}  g_loss {g_loss.item():.4f}  "
                  f"d_cam {d_cam.item():.4f}  g_cam {g_cam.item():.4f}")

    mask = camfast.grad_cam_mask([f_real.detach(), f_fake.detach()], [g_real.detach(), g_fake.detach()],
                                 x_real.shape[-2:])  # [B, 1, H, W], for display
    print(f"done: D's mask covers {mask.mean().item():.1%} of the last batch")


if __name__ == "__main__":
    main()
