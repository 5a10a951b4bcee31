"""camfast.CAMConsistency against the lower-level pieces, and the misuse errors of the capture."""
import copy

import pytest
import torch
import torch.distributed as dist
from torch import nn

import camfast
from camfast import CAMConsistency, GradCAM, GradCAMError

LAYER = "trunk.3"
B, K, S = 4, 3, 16


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is much faster on a busy machine; the session's count comes back."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class SmallD(nn.Module):
    """``D(x) -> (adv map, attribute logits [B, K])``; the CAM layer is ``trunk.3`` (8 ch, 4 x 4)."""

    def __init__(self, eager_head=False):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 6, 3, 2, 1), nn.LeakyReLU(0.1), nn.Conv2d(6, 8, 3, 2, 1), nn.LeakyReLU(0.1))
        self.post = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1), nn.LeakyReLU(0.1))  # a non-linear head: D's
        self.adv = nn.Conv2d(8, 1, 3, 1, 1)                                     # side is a true double backward
        self.cls = nn.Conv2d(8, K, 4)
        self.spare = nn.Conv2d(8, 8, 1)  # never run
        self.eager_head = eager_head

    def forward(self, x):
        h = self.trunk(x)
        return self.adv(h), (self._eager_logits(h) if self.eager_head else self._logits(h))

    def _logits(self, h):
        return self.cls(self.post(h)).flatten(1)

    @torch.compiler.disable
    def _eager_logits(self, h):
        return self._logits(h)


def batch():
    x = torch.randn(B, 3, S, S)
    fake = torch.randn(B, 3, S, S)
    a = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    b = torch.tensor([[0.0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 0, 1]])  # the last sample: no edit
    return x, fake, a, b


def pieces(D, x, fake, a, b, sources, side):
    """The loss the way docs/api.md writes it with GradCAM + cam_consistency_loss."""
    w_real, w_fake = camfast.score_weights(a, b)
    d_side = side == "d"
    feats, grads = [], []
    with GradCAM(D, LAYER) as tape:
        for on, img, w in ((sources in ("both", "real"), x, w_real), (sources in ("both", "fake"), fake, w_fake)):
            if on:
                _, logits = D(img if d_side else img.detach().requires_grad_())
                f, g = tape.gradients(logits, w, create_graph=d_side)
                feats.append(f if d_side else f.detach())
                grads.append(g if d_side else g.detach())
    return camfast.cam_consistency_loss(x, fake, feats, grads)


def with_object(cam, D, x, fake, a, b, side, mode):
    loss_fn = cam.d_loss if side == "d" else cam.g_loss
    if mode == "run":  # the object runs D itself
        return loss_fn(x, fake, a, b)
    with cam.capture():
        real_in = x if side == "d" else x.detach().requires_grad_()
        _, logits_real = D(real_in)
        _, logits_fake = D(fake)
        return loss_fn(x, fake, a, b, logits_real, logits_fake)


def grads_of(loss, params):
    return torch.autograd.grad(loss, params, allow_unused=True)


def assert_same(got, want):
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def assert_same_grads(got, want):
    for g, w in zip(got, want):
        if g is None or w is None:
            assert g is None and w is None or (g if w is None else w).abs().sum() == 0
        else:
            assert_same(g, w)


def check_against_pieces(D_obj, D_ref, sources, side, mode, compare_d=None):
    """Same loss and gradients: D's parameters on D's side, the translated image on G's."""
    x, fake, a, b = batch()
    cam = CAMConsistency(D_obj, LAYER, sources=sources)
    if side == "d":
        loss = with_object(cam, D_obj, x, fake, a, b, side, mode)
        want = pieces(D_ref, x, fake, a, b, sources, side)
        assert_same(loss, want)
        inner = compare_d or D_obj
        got_g = grads_of(loss, list(inner.parameters()))
        assert_same_grads(got_g, grads_of(want, list(D_ref.parameters())))
        # D's classifier lies after the CAM layer: it learns from this term only through its Grad-CAM.
        cls = [g for (name, _), g in zip(inner.named_parameters(), got_g) if name == "cls.weight"][0]
        assert cls is not None and cls.abs().sum() > 0
    else:
        fake_obj = fake.clone().requires_grad_()
        fake_ref = fake.clone().requires_grad_()
        loss = with_object(cam, D_obj, x, fake_obj, a, b, side, mode)
        want = pieces(D_ref, x, fake_ref, a, b, sources, side)
        assert_same(loss, want)
        (g,) = torch.autograd.grad(loss, fake_obj)
        (w,) = torch.autograd.grad(want, fake_ref)
        assert_same(g, w)
        # The mask is given: no gradient reaches D.
        assert all(p is None for p in grads_of(loss, list((compare_d or D_obj).parameters())))
    return loss


SOURCES = [("real", 1), ("fake", 1), ("both", 2)]


@pytest.mark.parametrize("mode", ["logits", "run"])
@pytest.mark.parametrize("side", ["d", "g"])
@pytest.mark.parametrize("sources", [s for s, _ in SOURCES], ids=[f"S{n}-{s}" for s, n in SOURCES])
def test_matches_the_lower_level_pieces(sources, side, mode):
    D = SmallD()
    check_against_pieces(D, copy.deepcopy(D), sources, side, mode)


def test_frozen_d_on_g_side():
    """docs/training.md's G step freezes D: the object runs it on inputs that require grad."""
    D = SmallD()
    ref = copy.deepcopy(D)
    D.requires_grad_(False)
    x, fake, a, b = batch()
    cam = CAMConsistency(D, LAYER)
    assert_same(cam.g_loss(x, fake, a, b), pieces(ref, x, fake, a, b, "both", "g"))


def test_return_mask_and_mask():
    D = SmallD()
    x, fake, a, b = batch()
    cam = CAMConsistency(D, LAYER)
    loss, mask = cam.d_loss(x, fake, a, b, return_mask=True)
    assert mask.shape == (B, 1, S, S) and not mask.requires_grad
    assert 0 <= mask.min() and mask.max() <= 1
    assert torch.equal(mask[-1], torch.zeros_like(mask[-1]))      # no edit: nothing may change
    torch.testing.assert_close(cam.mask(x, fake, a, b), mask)
    assert cam.mask(x, fake, a, b, size=4).shape == (B, 1, 4, 4)
    with torch.no_grad():  # a mask for display works under no_grad too
        torch.testing.assert_close(cam.mask(x, fake, a, b), mask)


def test_reduction_backend_and_module_behaviour():
    D = SmallD()
    x, fake, a, b = batch()
    cam = CAMConsistency(D, LAYER, reduction="none", backend="reference")
    per = cam.g_loss(x, fake, a, b)
    assert per.shape == (B,)
    assert_same(per.mean(), CAMConsistency(D, LAYER).g_loss(x, fake, a, b))
    # A loss module: D's parameters stay D's own.
    assert list(cam.parameters()) == [] and cam.state_dict() == {}
    assert "layer='trunk.3'" in repr(cam)
    assert CAMConsistency(D, D.trunk[3]).layer == "trunk.3"


def test_bf16_autocast():
    D = SmallD()
    x, fake, a, b = batch()
    cam = CAMConsistency(D, LAYER)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with cam.capture():
            _, lr = D(x)
            _, lf = D(fake)
            loss = cam.d_loss(x, fake.bfloat16(), a, b, lr, lf)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(D.cls.weight.grad).all()


# ---------------------------------------------------------------- DDP and torch.compile

@pytest.fixture
def gloo(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("sources", ["fake", "both"], ids=["S1", "S2"])
def test_ddp_wrapped_d(gloo, sources):
    D = SmallD()
    ref = copy.deepcopy(D)
    ddp = nn.parallel.DistributedDataParallel(D)
    for side in ("d", "g"):
        for mode in ("logits", "run"):
            check_against_pieces(ddp, ref, sources, side, mode, compare_d=D)


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("sources", ["fake", "both"], ids=["S1", "S2"])
def test_compiled_d(fresh_dynamo, sources):
    """G's side with a fully compiled D; D's side with D's head (CAM layer -> logits) eager."""
    D = SmallD()
    ref = copy.deepcopy(D)
    compiled = torch.compile(D, backend="aot_eager")
    check_against_pieces(compiled, ref, sources, "g", "logits", compare_d=D)
    check_against_pieces(compiled, ref, sources, "g", "run", compare_d=D)
    D.eager_head = True
    check_against_pieces(compiled, ref, sources, "d", "logits", compare_d=D)


def test_compiled_d_step_function(fresh_dynamo):
    """torch.compile of a whole D step that includes the loss: same loss and gradients as eager."""
    D = SmallD(eager_head=True)
    cam = CAMConsistency(D, LAYER)
    x, fake, a, b = batch()

    def d_step(x, fake, a, b):
        with cam.capture():
            adv_real, cls_real = D(x)
            adv_fake, cls_fake = D(fake)
            d_cam = cam.d_loss(x, fake, a, b, cls_real, cls_fake)
        return adv_real.mean() - adv_fake.mean() + d_cam

    want = d_step(x, fake, a, b)
    want_g = grads_of(want, list(D.parameters()))
    step = torch.compile(d_step, backend="aot_eager")
    for _ in range(2):  # the second call runs the cached graphs
        got = step(x, fake, a, b)
        assert_same(got, want)
        assert_same_grads(grads_of(got, list(D.parameters())), want_g)


def test_compiled_head_on_d_side_is_named(fresh_dynamo):
    D = SmallD()
    compiled = torch.compile(D, backend="aot_eager")
    x, fake, a, b = batch()
    cam = CAMConsistency(compiled, LAYER)
    with pytest.raises(GradCAMError, match="double backward.*torch.compiler.disable"):
        cam.d_loss(x, fake, a, b)


# ---------------------------------------------------------------- misuse errors

def test_call_index_out_of_range_says_how_many():
    D = SmallD()
    with GradCAM(D, LAYER) as tape:
        _, logits = D(torch.randn(2, 3, S, S))
        with pytest.raises(ValueError, match=r"call: 1 is out of range: 1 forward captured .*call 0 \.\. 0"):
            tape.gradients(logits, torch.ones(2, K), call=1)
        with pytest.raises(ValueError, match=r"call: -2 is out of range"):
            tape.gradients(logits, torch.ones(2, K), call=-2)
        with pytest.raises(TypeError, match="call: expected an int"):
            tape.gradients(logits, torch.ones(2, K), call=0.0)
        tape.gradients(logits, torch.ones(2, K), call=-1)


def test_logits_of_another_forward_are_named():
    D = SmallD()
    x, fake, a, b = batch()
    _, before = D(x)  # a forward outside the block
    with GradCAM(D, LAYER) as tape:
        _, lr = D(x)
        _, lf = D(fake)
        with pytest.raises(ValueError, match=r"not from forward call 1 but from call 0 .*pass call=0"):
            tape.gradients(lr, torch.ones(B, K), call=1)
        with pytest.raises(ValueError, match="do not come from any of the 2 forward"):
            tape.gradients(before, torch.ones(B, K))
        with pytest.raises(ValueError, match="do not come from forward call 0"):
            tape.gradients(before, torch.ones(B, K), call=0)
        with pytest.raises(ValueError, match="no graph .*detached"):
            tape.gradients(lr.detach(), torch.ones(B, K))
        # The default finds each forward by itself, whatever the order.
        torch.testing.assert_close(tape.gradients(lf, torch.ones(B, K))[0], tape.activations[1])
        torch.testing.assert_close(tape.gradients(lr, torch.ones(B, K))[0], tape.activations[0])


def test_frozen_d_names_the_fix():
    D = SmallD().requires_grad_(False)
    x = torch.randn(2, 3, S, S)
    with GradCAM(D, LAYER) as tape:
        _, logits = D(x)
        with pytest.raises(ValueError, match=r"frozen \(requires_grad_\(False\)\).*input that requires grad"):
            tape.gradients(logits, torch.ones(2, K))
        _, logits = D(x.requires_grad_())  # the fix
        tape.gradients(logits, torch.ones(2, K))
    cam = CAMConsistency(D, LAYER)
    with cam.capture():
        _, lr = D(torch.randn(2, 3, S, S))
        with pytest.raises(ValueError, match=r"logits_real: .*frozen"):
            cam.g_loss(torch.randn(2, 3, S, S), torch.randn(2, 3, S, S), torch.ones(2, K), torch.zeros(2, K), lr, None)


def test_no_grad_forward_is_named():
    D = SmallD()
    with GradCAM(D, LAYER) as tape:
        with torch.no_grad():
            _, logits = D(torch.randn(2, 3, S, S))
        with pytest.raises(ValueError, match=r"no_grad.*enable_grad"):
            tape.gradients(logits, torch.ones(2, K))


def test_layer_never_run():
    D = SmallD()
    with GradCAM(D, "spare") as tape:
        _, logits = D(torch.randn(2, 3, S, S))
        with pytest.raises(ValueError, match=r"no activations captured at layer 'spare'.*does not go through"):
            tape.gradients(logits, torch.ones(2, K))
    cam = CAMConsistency(D, "spare")
    with pytest.raises(ValueError, match=r"D\(real\), run by CAMConsistency: .*no activations captured"):
        cam.d_loss(*batch())


def test_outside_the_with_block():
    D = SmallD()
    with GradCAM(D, LAYER) as tape:
        _, logits = D(torch.randn(2, 3, S, S))
    with pytest.raises(RuntimeError, match=r"not recording.*inside the `with GradCAM\(...\)` block"):
        tape.gradients(logits, torch.ones(2, K))
    x, fake, a, b = batch()
    cam = CAMConsistency(D, LAYER)
    with cam.capture():
        _, lr = D(x)
        _, lf = D(fake)
    with pytest.raises(RuntimeError, match=r"outside `with cam.capture\(\):`"):
        cam.d_loss(x, fake, a, b, lr, lf)
    with cam.capture():
        with pytest.raises(RuntimeError, match="do not nest"):
            with cam.capture():
                pass


def test_errors_are_value_errors_and_still_runtime_errors():
    assert issubclass(GradCAMError, ValueError) and issubclass(GradCAMError, RuntimeError)


def test_bad_arguments():
    D = SmallD()
    x, fake, a, b = batch()
    with pytest.raises(TypeError, match="D: expected an nn.Module"):
        CAMConsistency("D", LAYER)
    with pytest.raises(ValueError, match="has no default_cam_layer"):
        CAMConsistency(D)
    with pytest.raises(ValueError, match="no module named 'nope'"):
        CAMConsistency(D, "nope")
    for kw, match in ((dict(sources="all"), "sources"), (dict(score="some"), "score"), (dict(normalize="l2"), "normalize"),
                      (dict(eps=0.0), "eps"), (dict(reduction="max"), "reduction"), (dict(backend="fast"), "backend")):
        with pytest.raises(ValueError, match=match):
            CAMConsistency(D, LAYER, **kw)
    with pytest.raises(TypeError, match="logits_fn"):
        CAMConsistency(D, LAYER, logits_fn=3)
    cam = CAMConsistency(D, LAYER)
    with pytest.raises(ValueError, match="c_trg: expected shape"):
        cam.g_loss(x, fake, a, b[:, :2])
    with pytest.raises(ValueError, match="c_src: expected batch size 4"):
        cam.g_loss(x, fake, a[:2], b[:2])
    with pytest.raises(ValueError, match="fake: expected shape"):
        cam.g_loss(x, fake[:, :2], a, b)
    with pytest.raises(TypeError, match="real: expected a float16"):
        cam.g_loss(x.to(torch.uint8), fake, a, b)
    with cam.capture():
        out = D(x)
        with pytest.raises(TypeError, match=r"logits_real: logits: expected the attribute logits.*got tuple"):
            cam.g_loss(x, fake, a, b, out, None)
    class TripleD(SmallD):
        def forward(self, x):
            return (*super().forward(x), x)
    with pytest.raises(TypeError, match="D returned tuple: pass logits_fn="):
        CAMConsistency(TripleD(), LAYER).g_loss(x, fake, a, b)
    # A D that returns a dict: logits_fn picks the logits.
    class DictD(SmallD):
        def forward(self, x):
            adv, logits = super().forward(x)
            return {"adv": adv, "cls": logits}
    cam = CAMConsistency(DictD(), LAYER, logits_fn=lambda out: out["cls"])
    assert torch.isfinite(cam.g_loss(x, fake, a, b))
