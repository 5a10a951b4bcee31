"""torch.compile of a D step that includes the CAM-consistency loss.

D's side of the loss differentiates D's Grad-CAM: a double backward through the layers
between the CAM layer and the attribute logits. Graphs compiled by torch.compile have no
double backward, so those layers run eagerly (``torch.compiler.disable``); the rest of the
step compiles: D's layers up to the CAM layer, its adversarial head, the GAN losses and the
fused CAM-consistency loss. camfast's Grad-CAM hook breaks the graph at the CAM layer so
its activations stay in the autograd graph. (G's side takes D's mask as given and needs no
double backward: there a fully compiled D works.)

    python examples/compile_d_step.py                      # CPU; the first step compiles
    python examples/compile_d_step.py --backend aot_eager  # no code generation: faster to start
"""
import argparse

import torch
import torch.nn.functional as F

import camfast
from train_minimal import Discriminator, Generator, toy_batch


class CompiledFriendlyD(Discriminator):
    """The toy D with its attribute head kept eager under torch.compile."""

    def forward(self, x):
        h = self.main(x)
        return self.adv(h), self.logits(h)

    @torch.compiler.disable
    def logits(self, h):  # between the CAM layer ("main.3") and the logits: eager
        return self.cls(h).flatten(1)


def main(argv=None):
    p = argparse.ArgumentParser(description="A compiled D step with the CAM-consistency loss.")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--backend", default="inductor", help="torch.compile backend (default: inductor)")
    args = p.parse_args(argv)
    torch.manual_seed(0)

    G, D = Generator(), CompiledFriendlyD()
    d_opt = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    cam = camfast.CAMConsistency(D, "main.3")

    def d_step(x_real, x_fake, c_src, c_trg):
        with cam.capture():
            adv_real, cls_real = D(x_real)
            adv_fake, cls_fake = D(x_fake)
            d_cam = cam.d_loss(x_real, x_fake, c_src, c_trg, cls_real, cls_fake)
        return (F.softplus(-adv_real).mean() + F.softplus(adv_fake).mean()
                + F.binary_cross_entropy_with_logits(cls_real, c_src) + d_cam)

    compiled_d_step = torch.compile(d_step, backend=args.backend)

    for step in range(1, args.steps + 1):
        x_real, c_src = toy_batch(args.batch)
        c_trg = c_src[torch.randperm(len(c_src))]
        with torch.no_grad():
            x_fake = G(x_real, c_trg)
        if step == 1:  # the compiled step computes what the eager one does
            D.zero_grad()
            d_step(x_real, x_fake, c_src, c_trg).backward()
            eager = [p.grad.clone() for p in D.parameters()]
        d_opt.zero_grad()
        loss = compiled_d_step(x_real, x_fake, c_src, c_trg)
        loss.backward()
        if step == 1:
            diff = max((p.grad - e).abs().max().item() for p, e in zip(D.parameters(), eager))
            print(f"compiled vs eager D step: largest gradient difference {diff:.2e}")
            assert diff < 1e-4, diff
        d_opt.step()
        if step == 1 or step % 5 == 0 or step == args.steps:
            print(f"step {step:4d}  d_loss {loss.item():.4f}")
    print("done")


if __name__ == "__main__":
    main()
