"""The reference against an independent float64 numpy implementation, and its gradients."""
import numpy as np
import pytest
import torch

from camfast import reference


def np_bilinear(u, H, W):
    """align_corners=False bilinear upsampling written out from its definition."""
    h, w = u.shape

    def taps(n_in, n_out):
        scale = n_in / n_out
        out = []
        for o in range(n_out):
            src = max(scale * (o + 0.5) - 0.5, 0.0)
            i0 = int(np.floor(src))
            i1 = min(i0 + 1, n_in - 1)
            l1 = src - i0
            out.append((i0, i1, 1 - l1, l1))
        return out

    ty, tx = taps(h, H), taps(w, W)
    m = np.zeros((H, W))
    for y, (y0, y1, a0, a1) in enumerate(ty):
        for x, (x0, x1, b0, b1) in enumerate(tx):
            m[y, x] = a0 * (b0 * u[y0, x0] + b1 * u[y0, x1]) + a1 * (b0 * u[y1, x0] + b1 * u[y1, x1])
    return m


def np_loss(real, fake, feats, grads, normalize="minmax", eps=1e-6, reduction="mean"):
    B, K, H, W = real.shape
    per_sample = []
    for b in range(B):
        ns = []
        for f, g in zip(feats, grads):
            alpha = g[b].mean(axis=(1, 2))
            cam = np.maximum(np.tensordot(alpha, f[b], axes=(0, 0)), 0)
            if normalize == "minmax":
                n = (cam - cam.min()) / (cam.max() - cam.min() + eps)
            else:
                n = cam / (cam.max() + eps)
            ns.append(n)
        u = np.max(np.stack(ns), axis=0)
        m = np_bilinear(u, H, W)
        per_sample.append((np.abs(real[b] - fake[b]) * (1 - m)[None]).sum())
    per_sample = np.array(per_sample)
    if reduction == "mean":
        return per_sample.sum() / real.size
    if reduction == "sum":
        return per_sample.sum()
    return per_sample / (K * H * W)


CASES = [
    # B, K, H, W, C, h, w, S
    (1, 1, 7, 5, 1, 3, 2, 1),
    (2, 3, 13, 11, 4, 4, 5, 2),
    (3, 2, 3, 4, 3, 6, 7, 1),   # H < h: downsampling
    (2, 3, 16, 16, 5, 4, 4, 2),  # exact multiple
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("normalize", ["minmax", "max"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reference_matches_numpy(case, normalize, reduction):
    B, K, H, W, C, h, w, S = case
    rng = np.random.default_rng(sum(case))
    real, fake = rng.standard_normal((2, B, K, H, W))
    feats = [rng.standard_normal((B, C, h, w)) for _ in range(S)]
    grads = [rng.standard_normal((B, C, h, w)) for _ in range(S)]
    want = np_loss(real, fake, feats, grads, normalize, 1e-6, reduction)
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    got = reference.cam_consistency_loss(t(real), t(fake), [t(f) for f in feats], [t(g) for g in grads],
                                         normalize, 1e-6, reduction)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def test_bilinear_matches_numpy():
    u = torch.rand(1, 5, 3, dtype=torch.float64)
    for H, W in [(5, 3), (17, 8), (2, 2), (1, 1), (11, 30)]:
        got = reference.upsample_mask(u, (H, W))[0, 0].numpy()
        np.testing.assert_allclose(got, np_bilinear(u[0].numpy(), H, W), rtol=1e-12, atol=1e-14)


def test_hand_worked_case():
    # One channel, 1x2 CAM [1, 3] -> minmax gives [0, 1]; upsampled to 1x4 the mask is
    # [0, 0.25, 0.75, 1] (taps at -0.25 -> 0, 0.25, 0.75, 1.25 -> clamp), so with
    # |real - fake| = 1 everywhere the mean is (1 + 0.75 + 0.25 + 0) / 4 = 0.5.
    feats = torch.tensor([[[[1.0, 3.0]]]], dtype=torch.float64)
    grads = torch.ones_like(feats)
    real = torch.zeros(1, 1, 1, 4, dtype=torch.float64)
    fake = torch.ones_like(real)
    m = reference.grad_cam_mask([feats], [grads], (1, 4), eps=0.0 + 1e-12)
    torch.testing.assert_close(m[0, 0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0], dtype=torch.float64))
    loss = reference.cam_consistency_loss(real, fake, [feats], [grads], eps=1e-12)
    assert abs(loss.item() - 0.5) < 1e-9


def test_zero_cam_gives_zero_mask_and_plain_l1():
    feats = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    grads = -torch.rand(2, 3, 4, 4, dtype=torch.float64)  # negative weights: ReLU zeroes the CAM
    m = reference.grad_cam_mask([feats], [grads], (8, 8))
    assert torch.equal(m, torch.zeros_like(m))
    real, fake = torch.randn(2, 2, 3, 8, 8, dtype=torch.float64)
    loss = reference.cam_consistency_loss(real, fake, [feats], [grads])
    torch.testing.assert_close(loss, (real - fake).abs().mean())


def test_dtypes_keep_input_dtype():
    for dt in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        real, fake = torch.randn(2, 2, 3, 9, 9).to(dt)
        f, g = torch.randn(2, 2, 4, 3, 3).to(dt)
        out = reference.cam_consistency_loss(real, fake, [f], [g])
        assert out.dtype == dt and torch.isfinite(out)
        m = reference.grad_cam_mask([f], [g], (9, 9))
        assert m.dtype == (torch.float64 if dt == torch.float64 else torch.float32)


@pytest.mark.parametrize("normalize", ["minmax", "max"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("S", [1, 2])
def test_reference_gradcheck(normalize, reduction, S):
    B, K, H, W, C, h, w = 2, 2, 5, 7, 3, 3, 4
    dt = torch.float64
    real = torch.randn(B, K, H, W, dtype=dt, requires_grad=True)
    fake = torch.randn(B, K, H, W, dtype=dt, requires_grad=True)
    feats = [torch.randn(B, C, h, w, dtype=dt, requires_grad=True) for _ in range(S)]
    grads = [torch.randn(B, C, h, w, dtype=dt, requires_grad=True) for _ in range(S)]

    def fn(real, fake, *fg):
        return reference.cam_consistency_loss(real, fake, list(fg[:S]), list(fg[S:]), normalize, 1e-6, reduction)

    assert torch.autograd.gradcheck(fn, (real, fake, *feats, *grads), eps=1e-6, atol=1e-5)


class TinyD(torch.nn.Module):
    """A small float64 discriminator: conv -> (CAM layer) -> conv -> pooled attribute logits."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, 2, 1), torch.nn.Tanh())
        self.head = torch.nn.Conv2d(4, 3, 3, 1, 1)

    def forward(self, x):
        f = self.body(x)
        return f, self.head(torch.tanh(f)).mean(dim=(2, 3))


def test_second_order_reaches_discriminator_params():
    """The loss reaches head parameters (after the CAM layer) only through grads."""
    torch.manual_seed(0)
    D = TinyD().double()
    real = torch.randn(2, 2, 9, 11, dtype=torch.float64)
    fake = torch.randn(2, 2, 9, 11, dtype=torch.float64)
    weights = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    params = [D.head.weight]  # its bias shifts the score but not the score's gradient

    def loss_of(p_flat):
        torch.nn.utils.vector_to_parameters(p_flat, params)
        feats, logits = D(real)
        (grads,) = torch.autograd.grad((logits * weights).sum(), feats, create_graph=True)
        return reference.cam_consistency_loss(real, fake, [feats.detach()], [grads])

    p0 = torch.nn.utils.parameters_to_vector(params).detach().clone()
    feats, logits = D(real)
    # feats detached, so only the second-order path through grads is left.
    (grads,) = torch.autograd.grad((logits * weights).sum(), feats, create_graph=True)
    loss = reference.cam_consistency_loss(real, fake, [feats.detach()], [grads])
    (analytic,) = torch.autograd.grad(loss, params)
    analytic = analytic.flatten()
    assert analytic.abs().max() > 1e-6
    # Central finite differences on a few coordinates.
    for i in range(0, p0.numel(), 7):
        e = torch.zeros_like(p0)
        e[i] = 1e-6
        num = (loss_of(p0 + e).item() - loss_of(p0 - e).item()) / 2e-6
        assert abs(num - analytic[i].item()) < 1e-6 * max(1.0, abs(num)) + 1e-7, i
    torch.nn.utils.vector_to_parameters(p0, params)
