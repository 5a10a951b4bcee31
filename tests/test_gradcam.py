"""Grad-CAM capture against a direct computation, under DDP and autocast, hook hygiene."""
import pytest
import torch
import torch.distributed as dist
from torch import nn

import camfast
from camfast.gradcam import GradCAM, attribute_score, grad_cam


class SmallD(nn.Module):
    def __init__(self, n_attrs=3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, 2, 1), nn.LeakyReLU(0.1),
            nn.Conv2d(6, 8, 3, 2, 1), nn.LeakyReLU(0.1),
        )
        self.adv = nn.Conv2d(8, 1, 3, 1, 1)
        self.cls = nn.Conv2d(8, n_attrs, 4)

    def forward(self, x):
        h = self.features(x)
        return self.adv(h), self.cls(h).flatten(1)


def _direct(D, x, weights):
    h = D.features(x)
    logits = D.cls(h).flatten(1)
    (g,) = torch.autograd.grad((logits * weights).sum(), h)
    return h, g


def test_capture_matches_direct_computation():
    D = SmallD()
    x = torch.randn(2, 3, 16, 16)
    w = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    with GradCAM(D, "features.3") as cam:
        _, logits = D(x)
        feats, grads = cam.gradients(logits, w, create_graph=False)
    h, g = _direct(D, x, w)
    torch.testing.assert_close(feats, h)
    torch.testing.assert_close(grads, g)
    # Per-sample independence: sample 0's gradient equals the one computed alone.
    _, g0 = _direct(D, x[:1], w[:1])
    torch.testing.assert_close(grads[:1], g0)


def test_two_calls_in_one_step():
    D = SmallD()
    xr, xf = torch.randn(2, 2, 3, 16, 16)
    wr, wf = torch.rand(2, 2, 3)
    with GradCAM(D, "features.3") as cam:
        _, lr = D(xr)
        _, lf = D(xf)
        assert len(cam.activations) == 2
        fr, gr = cam.gradients(lr, wr, call=0)
        ff, gf = cam.gradients(lf, wf, call=1)
    torch.testing.assert_close(gr, _direct(D, xr, wr)[1])
    torch.testing.assert_close(gf, _direct(D, xf, wf)[1])


def test_create_graph_gives_second_order_path():
    D = SmallD()
    x = torch.randn(2, 3, 16, 16)
    with GradCAM(D, "features.3") as cam:
        _, logits = D(x)
        feats, grads = cam.gradients(logits, torch.ones(2, 3), create_graph=True)
    assert grads.requires_grad
    loss = camfast.cam_consistency_loss(x, torch.randn_like(x), feats.detach(), grads)
    loss.backward()
    assert D.cls.weight.grad is not None and D.cls.weight.grad.abs().sum() > 0


def test_hooks_removed_on_exit_and_on_error():
    D = SmallD()
    layer = D.features[3]
    with GradCAM(D, layer):
        assert len(layer._forward_hooks) == 1
    assert len(layer._forward_hooks) == 0
    with pytest.raises(ZeroDivisionError):
        with GradCAM(D, layer):
            1 / 0
    assert len(layer._forward_hooks) == 0


def test_errors():
    D = SmallD()
    with pytest.raises(ValueError, match="no module named 'nope'.*features"):
        GradCAM(D, "nope")
    with pytest.raises(TypeError, match="layer"):
        GradCAM(D, 3)
    with pytest.raises(ValueError, match="not part of the model"):
        GradCAM(D, nn.Conv2d(1, 1, 1))
    with GradCAM(D, "features.3") as cam:
        with pytest.raises(RuntimeError, match="no activations"):
            cam.gradients(torch.zeros(2, 3), torch.zeros(2, 3))
        with torch.no_grad():
            _, logits = D(torch.randn(2, 3, 16, 16))
        with pytest.raises(RuntimeError, match="no_grad"):
            cam.gradients(logits, torch.ones(2, 3))
    with pytest.raises(ValueError, match="weights"):
        attribute_score(torch.zeros(2, 3), torch.zeros(2, 4))


def test_autocast_bf16():
    D = SmallD()
    x = torch.randn(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with GradCAM(D, "features.1") as cam:
            _, logits = D(x)
            feats, grads = cam.gradients(logits, torch.ones(2, 3))
    assert feats.dtype == torch.bfloat16 and grads.dtype == torch.bfloat16
    loss = camfast.cam_consistency_loss(x, torch.randn_like(x), feats, grads)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(D.cls.weight.grad).all()


def test_ddp_wrapped_model(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        D = SmallD()
        ddp = nn.parallel.DistributedDataParallel(D)
        x = torch.randn(2, 3, 16, 16)
        w = torch.rand(2, 3)
        out, feats, grads = grad_cam(ddp, "features.3", x, w, create_graph=True)
        torch.testing.assert_close(grads, _direct(D, x, w)[1])
        loss = camfast.cam_consistency_loss(x, torch.randn_like(x), feats, grads) + out[0].mean()
        loss.backward()
        assert D.cls.weight.grad.abs().sum() > 0
    finally:
        dist.destroy_process_group()


def test_zero_weights_give_zero_grads():
    D = SmallD()
    with GradCAM(D, "features.3") as cam:
        _, logits = D(torch.randn(2, 3, 16, 16))
        _, grads = cam.gradients(logits, torch.zeros(2, 3))
    assert torch.equal(grads, torch.zeros_like(grads))
