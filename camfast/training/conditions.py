"""What each backbone's G is conditioned on, and how it reconstructs.

Attributes ``a`` (source) and ``b`` (target) are float tensors ``[B, K]`` in {0, 1}.

=========  ==========================================  ==============================
backbone   condition of the edit G(x, .)               reconstruction (lambda_rec)
=========  ==========================================  ==============================
stargan    b                                           G(G(x, b), a)   (cycle)
attgan     (2b - 1) * thres_int  (intensity sampled)   G(x, (2a - 1) * thres_int)
stgan      enc(b) - enc(a)  (the difference vector)    G(x, 0)         (zero difference)
=========  ==========================================  ==============================
"""
from __future__ import annotations

import torch

HAIR = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")


def sample_targets(a: torch.Tensor) -> torch.Tensor:
    """Target attributes: the source attributes of a shuffled batch (StarGAN, AttGAN, STGAN)."""
    # The permutation is drawn on the CPU generator whatever the device, so one RNG state
    # (saved in checkpoints) decides it.
    return a[torch.randperm(a.size(0)).to(a.device)].contiguous()


def _enc(a: torch.Tensor, thres_int: float) -> torch.Tensor:
    return (a * 2 - 1) * thres_int


def _enc_target(b: torch.Tensor, thres_int: float, distribution: str) -> torch.Tensor:
    """AttGAN's target encoding with a random intensity (``b_distribution``)."""
    sign = b * 2 - 1
    if distribution == "none":
        return sign * thres_int
    if distribution == "uniform":
        return sign * torch.rand_like(b) * (2 * thres_int)
    if distribution == "truncated_normal":
        return sign * (torch.fmod(torch.randn_like(b), 2) + 2) / 4.0 * (2 * thres_int)
    raise ValueError(f"b_distribution: expected none, uniform or truncated_normal, got {distribution!r}")


class Conditions:
    def __init__(self, backbone: str, thres_int: float = 0.5, b_distribution: str = "none"):
        self.backbone, self.thres_int, self.b_distribution = backbone, thres_int, b_distribution

    def edit(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """G's condition for translating images with attributes ``a`` to ``b`` (training)."""
        if self.backbone == "stargan":
            return b
        cb = _enc_target(b, self.thres_int, self.b_distribution)
        return cb if self.backbone == "attgan" else cb - _enc(a, self.thres_int)

    def identity(self, a: torch.Tensor) -> torch.Tensor:
        """G's condition for "keep the attributes ``a``"."""
        if self.backbone == "stargan":
            return a
        if self.backbone == "attgan":
            return _enc(a, self.thres_int)
        return torch.zeros_like(a)

    def reconstruct(self, G, x: torch.Tensor, fake: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The reconstruction the backbone's lambda_rec term compares with ``x``: StarGAN
        translates the fake back (a cycle), AttGAN and STGAN re-generate x with "no change"."""
        if self.backbone == "stargan":
            return G(fake, a)
        return G(x, self.identity(a))

    def test_edit(self, a: torch.Tensor, b: torch.Tensor, k: int, test_int: float = 1.0) -> torch.Tensor:
        """Condition for evaluation and the sample grids: attribute ``k`` flipped at the
        originals' test-time intensity ``test_int`` (StarGAN has none).

        AttGAN's test code feeds the flipped entry as ``+-test_int`` (the others stay at
        ``+-thres_int``): +-1 at the default 1.0. STGAN's test code scales the encoded target
        entry by ``test_int`` *without* dividing by ``thres_int``, so the flipped entry of the
        difference is ``+-(test_int + 1) * thres_int``: +-1 at the default, the value it is
        trained on. (STGAN's training previews divide by ``thres_int`` and show +-1.5;
        ``test_int: 2`` gives that here.)
        """
        if self.backbone == "stargan":
            return b
        cb = _enc(b, self.thres_int)
        if self.backbone == "attgan":
            cb[:, k] = cb[:, k] * test_int / self.thres_int
            return cb
        cb[:, k] = cb[:, k] * test_int
        return cb - _enc(a, self.thres_int)


def flip(a: torch.Tensor, k: int, attrs: list[str]) -> torch.Tensor:
    """``a`` with attribute ``k`` flipped; a hair colour switched on switches the others off."""
    b = a.clone()
    b[:, k] = 1 - b[:, k]
    if attrs[k] in HAIR:
        others = [i for i, n in enumerate(attrs) if n in HAIR and i != k]
        on = b[:, k] == 1
        for i in others:
            b[on, i] = 0
    return b
