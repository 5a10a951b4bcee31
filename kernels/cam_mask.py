"""Stage 1: Grad-CAM of each source, normalised, unioned -> low-resolution mask [B, h, w].

Forward (docs/kernels.md, "Stage 1"): one program per sample ``b`` and one launch per source.
A program keeps the whole CAM of its sample in registers (``P = h*w`` is small: <= 1024 in
practice) and streams feats/grads through in blocks of channels, so each is read once:

    alpha[c] = mean_p grads[c, p];  pre[p] += sum_c alpha[c] * feats[c, p]

then ReLU, per-sample min/max, normalisation, and the union ``u = max_s n_s``. The union is a
read-modify-write of ``u`` by the launches of sources 1..S-1 (source 0 writes ``u``); the
launches run in order on one stream, so the result is deterministic.

Backward, in three steps (all tiny except the last, which is the one pass over feats):
1. the forward kernel again, per source, saving ``alpha`` [B, C_s], ``pre`` [S, B, P] and
   ``n`` [S, B, P] to fp32 scratch (no saved intermediates in the forward, per the contract);
2. S > 1 only: the union's gradient ``gn_s = gu * [n_s == u] / #ties`` from the saved ``n``;
3. per source, the normalisation/ReLU backward to ``gpre`` in registers, then one loop over
   channel blocks that writes ``dfeats = alpha * gpre`` and ``dgrads = (sum_p gpre * feats)/P``.
The tie tests (``n_s == u``, ``cam == mn``, ``cam == mx``) compare values that were computed
once and stored, or recomputed from stored ``pre`` by exact operations (min, max), so they are
exact.
"""
import torch
import triton
import triton.language as tl

from . import check_tensor, new_output, next_pow2

# A program holds BLOCK_C x BLOCK_P elements of feats (and of grads) at a time.
TILE_ELEMS = 4096


@triton.jit
def _normalizer(pre, valid, eps, MINMAX: tl.constexpr):
    """cam = relu(pre) and its (mn, R) over the valid positions: n = (cam - mn) / R.

    For ``max`` normalisation mn = 0, so ``(cam - 0) / (mx - 0 + eps)`` is bit-identical
    to ``cam / (mx + eps)`` and both modes share the code.
    """
    cam = tl.maximum(pre, 0.0)
    mx = tl.max(tl.where(valid, cam, float("-inf")), axis=0)
    if MINMAX:
        mn = tl.min(tl.where(valid, cam, float("inf")), axis=0)
    else:
        mn = 0.0
    r = mx - mn + eps
    return cam, mn, mx, r


@triton.jit
def _cam_source_kernel(
    feats_ptr, grads_ptr,        # [B, C, P] of one source, contiguous, any supported dtype
    out_ptr,                     # [B, P] fp32: the union so far (or n itself when FIRST)
    pre_ptr, alpha_ptr,          # fp32 scratch [B, P] and [B, C], written only when SAVE
    C, P, eps,
    MINMAX: tl.constexpr, FIRST: tl.constexpr, SAVE: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    offs_p = tl.arange(0, BLOCK_P)
    valid_p = offs_p < P
    src = b * C * P  # int64: feats can exceed 2**31 elements over the batch

    pre = tl.zeros([BLOCK_P], dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        offs_c = c0 + tl.arange(0, BLOCK_C)
        valid_c = offs_c < C
        idx = src + offs_c[:, None] * P + offs_p[None, :]
        m2 = valid_c[:, None] & valid_p[None, :]
        g = tl.load(grads_ptr + idx, mask=m2, other=0.0).to(tl.float32)
        alpha = tl.sum(g, axis=1) / P                      # [BLOCK_C]
        f = tl.load(feats_ptr + idx, mask=m2, other=0.0).to(tl.float32)
        pre += tl.sum(alpha[:, None] * f, axis=0)          # padded channels add 0
        if SAVE:
            tl.store(alpha_ptr + b * C + offs_c, alpha, mask=valid_c)

    cam, mn, mx, r = _normalizer(pre, valid_p, eps, MINMAX)
    n = (cam - mn) / r
    dst = out_ptr + b * P + offs_p
    if FIRST:
        tl.store(dst, n, mask=valid_p)
    else:
        tl.store(dst, tl.maximum(tl.load(dst, mask=valid_p, other=0.0), n), mask=valid_p)
    if SAVE:
        tl.store(pre_ptr + b * P + offs_p, pre, mask=valid_p)


@triton.jit
def _union_grad_kernel(n_ptr, gu_ptr, gn_ptr, S, BP, BLOCK: tl.constexpr):
    """gn[s] = gu * [n[s] == u] / #{s' : n[s'] == u}, u = max_s n[s]  (n, gn: [S, B*P])."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < BP
    u = tl.full([BLOCK], float("-inf"), tl.float32)
    for s in range(S):
        u = tl.maximum(u, tl.load(n_ptr + s * BP + offs, mask=valid, other=0.0))
    ties = tl.zeros([BLOCK], dtype=tl.float32)
    for s in range(S):
        n = tl.load(n_ptr + s * BP + offs, mask=valid, other=0.0)
        ties += tl.where(n == u, 1.0, 0.0)
    share = tl.load(gu_ptr + offs, mask=valid, other=0.0).to(tl.float32) / ties
    for s in range(S):
        n = tl.load(n_ptr + s * BP + offs, mask=valid, other=0.0)
        tl.store(gn_ptr + s * BP + offs, tl.where(n == u, share, 0.0), mask=valid)


@triton.jit
def _cam_source_backward_kernel(
    feats_ptr,                   # [B, C, P] of one source (read only when NEED_GRADS)
    pre_ptr, n_ptr, gn_ptr,      # fp32 [B, P]: saved pre-ReLU CAM, normalised CAM, grad of n
    alpha_ptr,                   # fp32 [B, C]: saved channel weights
    dfeats_ptr, dgrads_ptr,      # [B, C, P] outputs, dtype of feats
    C, P, eps,
    MINMAX: tl.constexpr, NEED_FEATS: tl.constexpr, NEED_GRADS: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    offs_p = tl.arange(0, BLOCK_P)
    valid_p = offs_p < P
    pre = tl.load(pre_ptr + b * P + offs_p, mask=valid_p, other=0.0)
    n = tl.load(n_ptr + b * P + offs_p, mask=valid_p, other=0.0)
    gn = tl.load(gn_ptr + b * P + offs_p, mask=valid_p, other=0.0).to(tl.float32)

    # Normalisation backward. The min/max gradient goes to the arg-min/arg-max, split
    # evenly between ties, as torch.amin/amax do (the reference's convention).
    cam, mn, mx, r = _normalizer(pre, valid_p, eps, MINMAX)
    at_mx = tl.where(valid_p & (cam == mx), 1.0, 0.0)
    gmx = -tl.sum(gn * n, axis=0) / r
    gcam = gn / r + gmx * at_mx / tl.sum(at_mx, axis=0)
    if MINMAX:
        at_mn = tl.where(valid_p & (cam == mn), 1.0, 0.0)
        gmn = tl.sum(gn * (n - 1.0), axis=0) / r
        gcam += gmn * at_mn / tl.sum(at_mn, axis=0)
    # ReLU backward: torch passes the gradient where the output is > 0, i.e. pre > 0.
    gpre = tl.where(valid_p & (pre > 0.0), gcam, 0.0)

    # The one pass over the channels: dfeats needs only alpha; dgrads needs feats.
    base = b * C * P
    for c0 in range(0, C, BLOCK_C):
        offs_c = c0 + tl.arange(0, BLOCK_C)
        valid_c = offs_c < C
        idx = base + offs_c[:, None] * P + offs_p[None, :]
        m2 = valid_c[:, None] & valid_p[None, :]
        if NEED_FEATS:
            alpha = tl.load(alpha_ptr + b * C + offs_c, mask=valid_c, other=0.0)
            df = alpha[:, None] * gpre[None, :]
            tl.store(dfeats_ptr + idx, df.to(dfeats_ptr.dtype.element_ty), mask=m2)
        if NEED_GRADS:
            f = tl.load(feats_ptr + idx, mask=m2, other=0.0).to(tl.float32)
            galpha = tl.sum(gpre[None, :] * f, axis=1) / P     # d alpha / d grads = 1/P
            dg = tl.zeros([BLOCK_C, BLOCK_P], dtype=tl.float32) + galpha[:, None]
            tl.store(dgrads_ptr + idx, dg.to(dgrads_ptr.dtype.element_ty), mask=m2)


# ------------------------------------------------------------------------------ launchers

def _minmax(normalize: str) -> bool:
    if normalize == "minmax":
        return True
    if normalize == "max":
        return False
    raise ValueError(f"normalize must be 'minmax' or 'max', got {normalize!r}")


def _blocks(C: int, P: int):
    block_p = next_pow2(P)
    block_c = max(1, min(next_pow2(C), TILE_ELEMS // block_p))
    return block_c, block_p


def _sources(feats, grads):
    if len(feats) == 0 or len(feats) != len(grads):
        raise ValueError(f"need one or more (feats, grads) pairs, got {len(feats)} feats and {len(grads)} grads")
    out = []
    for s, (f, g) in enumerate(zip(feats, grads)):
        check_tensor(f"feats[{s}]", f)
        check_tensor(f"grads[{s}]", g)
        out.append((f.contiguous(), g.contiguous()))
    return out


def _launch_sources(pairs, out, minmax, eps, pre=None, alphas=None):
    """Run the forward kernel for every source. With ``pre``/``alphas`` (backward), each
    source writes its own n into out[s] and saves pre/alpha; otherwise they union into out."""
    B, _, h, w = pairs[0][0].shape
    P = h * w
    save = pre is not None
    for s, (f, g) in enumerate(pairs):
        C = f.shape[1]
        block_c, block_p = _blocks(C, P)
        _cam_source_kernel[(B,)](
            f, g,
            out[s] if save else out,
            pre[s] if save else out, alphas[s] if save else out,
            C, P, float(eps),
            MINMAX=minmax, FIRST=save or s == 0, SAVE=save,
            BLOCK_C=block_c, BLOCK_P=block_p,
        )


def cam_mask(feats, grads, normalize: str = "minmax", eps: float = 1e-6) -> torch.Tensor:
    """u = max_s normalise(relu(sum_c mean_p(grads_s) * feats_s)): fp32 [B, h, w]."""
    minmax = _minmax(normalize)
    pairs = _sources(feats, grads)
    B, _, h, w = pairs[0][0].shape
    u = new_output((B, h, w), torch.float32, pairs[0][0].device)
    if u.numel() > 0:
        _launch_sources(pairs, u, minmax, eps)
    return u


def cam_mask_backward(grad_mask, feats, grads, normalize: str = "minmax", eps: float = 1e-6,
                      need_feats: bool = True, need_grads: bool = True):
    """(dfeats, dgrads): lists with the shapes/dtypes of feats/grads, [] when not needed."""
    minmax = _minmax(normalize)
    pairs = _sources(feats, grads)
    dfeats = [new_output(f.shape, f.dtype, f.device) for f, _ in pairs] if need_feats else []
    dgrads = [new_output(g.shape, g.dtype, g.device) for _, g in pairs] if need_grads else []
    if not (need_feats or need_grads):
        return dfeats, dgrads
    f0 = pairs[0][0]
    B, _, h, w = f0.shape
    P, S, dev = h * w, len(pairs), f0.device
    if B * P == 0:
        return dfeats, dgrads
    gu = grad_mask.contiguous()

    # 1. recompute n_s, saving pre and alpha (all fp32, [S, B, P] and [B, C_s]: tiny).
    n = new_output((S, B, P), torch.float32, dev)
    pre = new_output((S, B, P), torch.float32, dev)
    alphas = [new_output((B, f.shape[1]), torch.float32, dev) for f, _ in pairs]
    _launch_sources(pairs, n, minmax, eps, pre=pre, alphas=alphas)

    # 2. split gu between the sources that attain the union (S = 1: gn = gu).
    if S == 1:
        gn = gu.reshape(1, B, P)
    else:
        gn = new_output((S, B, P), torch.float32, dev)
        block = min(1024, next_pow2(B * P))
        _union_grad_kernel[(triton.cdiv(B * P, block),)](n, gu, gn, S, B * P, BLOCK=block)

    # 3. per source: normalisation/ReLU backward, then one pass over the channels.
    for s, (f, g) in enumerate(pairs):
        C = f.shape[1]
        block_c, block_p = _blocks(C, P)
        _cam_source_backward_kernel[(B,)](
            f, pre[s], n[s], gn[s], alphas[s],
            dfeats[s] if need_feats else f, dgrads[s] if need_grads else f,
            C, P, float(eps),
            MINMAX=minmax, NEED_FEATS=bool(need_feats), NEED_GRADS=bool(need_grads),
            BLOCK_C=block_c, BLOCK_P=block_p,
        )
    return dfeats, dgrads
