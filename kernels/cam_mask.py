"""Stage 1: Grad-CAM of each source, normalised, unioned -> low-resolution mask [B, h, w].

Forward (docs/kernels.md, "Stage 1"), per source, like the CUDA kernels:

1. ``_cam_partial_kernel``, one program per (sample, block of BLOCK_C channels): the channel
   weights ``alpha[c] = mean_p grads[c, p]`` (a pass over grads in [BLOCK_C, BLOCK_P] tiles),
   then the block's partial CAM ``partial[b, k, p] = sum_{c in block} alpha[c] * feats[c, p]``
   (a pass over feats). B * ceil(C / BLOCK_C) programs: at B=16, C=256 that is 256 programs,
   where one program per sample would leave most of a GPU idle.
2. ``_cam_finish_kernel``, one program per sample: ``pre[p] = sum_k partial[b, k, p]`` in
   ascending block order (deterministic; no float atomics), ReLU, min/max, normalisation and
   the union ``u = max_s n_s`` (a read-modify-write of ``u`` by the launches of sources 1..S-1,
   in order on one stream). It walks the pixels in tiles of FINISH_BLOCK, so any h*w works
   with bounded registers.

Backward, all from recomputed values (the forward saves nothing):
1. the two kernels above again, saving ``alpha`` [B, C_s], ``pre`` and ``n`` [S, B, P] (fp32);
2. S > 1 only: ``_union_grad_kernel``, ``gn_s = gu * [n_s == u] / #ties``;
3. ``_cam_norm_backward_kernel``, one program per sample and source: the normalisation and
   ReLU backward to ``gpre`` [S, B, P];
4. ``_cam_input_grad_kernel``, one program per (sample, channel block): ``dfeats = alpha *
   gpre`` and ``dgrads = (sum_p gpre * feats) / P``, one pass over feats.
The tie tests (``n_s == u``, ``cam == mn``, ``cam == mx``) compare values computed by the same
code (min/max are exact), so they are exact. Divisions are round-to-nearest (``div_rn``).
"""
import torch
import triton
import triton.language as tl

from . import check_cam_args, check_grad_mask, device_guard, is_minmax, new_output, next_pow2

# Channels per program of the channel kernels (as the CUDA kernel's chunks) and the pixel tile
# they stream with: a [BLOCK_C, BLOCK_P] fp32 tile is 32 registers per thread at 4 warps.
BLOCK_C = 16
BLOCK_P = 256
# Pixel tile of the per-sample kernels, and their warps: there are only B of these programs, so
# each gets 8 warps (also keeps a 1024-pixel tile at 8 elements per thread).
FINISH_BLOCK = 1024
FINISH_WARPS = 8


@triton.jit
def _cam_partial_kernel(
    feats_ptr, grads_ptr,        # [B, C, P] of one source, contiguous, any supported dtype
    partial_ptr,                 # fp32 [B, total_chunks, P]
    alpha_ptr,                   # fp32 [B, C], written only when SAVE_ALPHA
    C, P, n_chunks, chunk_offset, total_chunks,
    SAVE_ALPHA: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):
    pid = tl.program_id(0)
    b = (pid // n_chunks).to(tl.int64)
    chunk = pid % n_chunks
    offs_c = chunk * BLOCK_C + tl.arange(0, BLOCK_C)
    valid_c = offs_c < C
    rows = (b * C + offs_c) * P                          # int64: feats can exceed 2**31 elements

    acc = tl.zeros([BLOCK_C, BLOCK_P], dtype=tl.float32)
    for p0 in range(0, P, BLOCK_P):
        offs_p = p0 + tl.arange(0, BLOCK_P)
        m2 = valid_c[:, None] & (offs_p < P)[None, :]
        acc += tl.load(grads_ptr + rows[:, None] + offs_p[None, :], mask=m2, other=0.0).to(tl.float32)
    total = tl.sum(acc, axis=1)
    alpha = tl.math.div_rn(total, tl.zeros_like(total) + P)   # [BLOCK_C]; 0 for padded channels
    if SAVE_ALPHA:
        tl.store(alpha_ptr + b * C + offs_c, alpha, mask=valid_c)

    out = partial_ptr + (b * total_chunks + chunk_offset + chunk) * P
    for p0 in range(0, P, BLOCK_P):
        offs_p = p0 + tl.arange(0, BLOCK_P)
        valid_p = offs_p < P
        m2 = valid_c[:, None] & valid_p[None, :]
        f = tl.load(feats_ptr + rows[:, None] + offs_p[None, :], mask=m2, other=0.0).to(tl.float32)
        tl.store(out + offs_p, tl.sum(alpha[:, None] * f, axis=0), mask=valid_p)


@triton.jit
def _max_nan(a, b):
    """Maximum that is NaN where either input is, as torch.maximum, amax and relu are (tl.maximum
    and tl.max drop a NaN, and a NaN activation would leave a finite mask and loss)."""
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _min_nan(a, b):
    """Minimum that is NaN where either input is, as torch.amin."""
    return tl.minimum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _min_max(pre_ptr, P, MINMAX: tl.constexpr, BLOCK: tl.constexpr):
    """min and max of relu(pre[:P]) (mn = 0 for ``max`` normalisation: then (cam - 0) / (mx -
    0 + eps) is bit-identical to cam / (mx + eps) and both modes share the code)."""
    mx_acc = tl.full([BLOCK], float("-inf"), tl.float32)
    mn_acc = tl.full([BLOCK], float("inf"), tl.float32)
    for p0 in range(0, P, BLOCK):
        offs = p0 + tl.arange(0, BLOCK)
        valid = offs < P
        cam = _max_nan(tl.load(pre_ptr + offs, mask=valid, other=0.0), 0.0)
        mx_acc = _max_nan(mx_acc, tl.where(valid, cam, float("-inf")))
        mn_acc = _min_nan(mn_acc, tl.where(valid, cam, float("inf")))
    mx = tl.reduce(mx_acc, 0, _max_nan)
    if MINMAX:
        mn = tl.reduce(mn_acc, 0, _min_nan)
    else:
        mn = 0.0
    return mn, mx


@triton.jit
def _cam_finish_kernel(
    partial_ptr,                 # fp32 [B, total_chunks, P]
    pre_ptr,                     # fp32 [B, P]: pre-ReLU CAM of this source (written)
    out_ptr,                     # fp32 [B, P]: n itself (FIRST) or the union so far
    k0, k1, total_chunks, P, eps,
    MINMAX: tl.constexpr, FIRST: tl.constexpr, BLOCK: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    base = partial_ptr + b * total_chunks * P
    pre_b = pre_ptr + b * P
    mx_acc = tl.full([BLOCK], float("-inf"), tl.float32)
    mn_acc = tl.full([BLOCK], float("inf"), tl.float32)
    for p0 in range(0, P, BLOCK):
        offs = p0 + tl.arange(0, BLOCK)
        valid = offs < P
        pre = tl.zeros([BLOCK], dtype=tl.float32)
        for k in range(k0, k1):                          # ascending: deterministic
            pre += tl.load(base + k * P + offs, mask=valid, other=0.0)
        tl.store(pre_b + offs, pre, mask=valid)
        cam = _max_nan(pre, 0.0)
        mx_acc = _max_nan(mx_acc, tl.where(valid, cam, float("-inf")))
        mn_acc = _min_nan(mn_acc, tl.where(valid, cam, float("inf")))
    mx = tl.reduce(mx_acc, 0, _max_nan)
    if MINMAX:
        mn = tl.reduce(mn_acc, 0, _min_nan)
    else:
        mn = 0.0                                         # as _min_max: the backward's mn, mx
    tl.debug_barrier()                                   # pre_b is read back by other threads
    r = mx - mn + eps
    for p0 in range(0, P, BLOCK):
        offs = p0 + tl.arange(0, BLOCK)
        valid = offs < P
        cam = _max_nan(tl.load(pre_b + offs, mask=valid, other=0.0), 0.0)
        n = tl.math.div_rn(cam - mn, tl.zeros_like(cam) + r)
        dst = out_ptr + b * P + offs
        if FIRST:
            tl.store(dst, n, mask=valid)
        else:
            tl.store(dst, _max_nan(tl.load(dst, mask=valid, other=0.0), n), mask=valid)


@triton.jit
def _union_grad_kernel(n_ptr, gu_ptr, gn_ptr, S, BP, BLOCK: tl.constexpr):
    """gn[s] = gu * [n[s] == u] / #{s' : n[s'] == u}, u = max_s n[s]  (n, gn: [S, B*P])."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < BP
    u = tl.full([BLOCK], float("-inf"), tl.float32)
    for s in range(S):
        u = _max_nan(u, tl.load(n_ptr + s * BP + offs, mask=valid, other=0.0))
    ties = tl.zeros([BLOCK], dtype=tl.float32)
    for s in range(S):
        n = tl.load(n_ptr + s * BP + offs, mask=valid, other=0.0)
        ties += tl.where(n == u, 1.0, 0.0)
    share = tl.math.div_rn(tl.load(gu_ptr + offs, mask=valid, other=0.0).to(tl.float32), ties)
    for s in range(S):
        n = tl.load(n_ptr + s * BP + offs, mask=valid, other=0.0)
        # A NaN union is attained by no source; as amax's gradient, every source's is then NaN.
        tl.store(gn_ptr + s * BP + offs, tl.where(u != u, u, tl.where(n == u, share, 0.0)), mask=valid)


@triton.jit
def _cam_norm_backward_kernel(
    pre_ptr, n_ptr, gn_ptr,      # fp32 [B, P] of one source: saved pre, n and the grad of n
    gpre_ptr,                    # fp32 [B, P] output: the grad of pre
    P, eps,
    MINMAX: tl.constexpr, BLOCK: tl.constexpr,
):
    """The min/max gradient goes to the arg-min/arg-max, split evenly between ties, as
    torch.amin/amax do (the reference's convention); ReLU passes it where pre > 0."""
    b = tl.program_id(0).to(tl.int64)
    pre_b, n_b, gn_b = pre_ptr + b * P, n_ptr + b * P, gn_ptr + b * P
    mn, mx = _min_max(pre_b, P, MINMAX, BLOCK)
    r = mx - mn + eps
    s_gn_n = tl.zeros([BLOCK], dtype=tl.float32)
    s_gn = tl.zeros([BLOCK], dtype=tl.float32)
    c_mx = tl.zeros([BLOCK], dtype=tl.float32)
    c_mn = tl.zeros([BLOCK], dtype=tl.float32)
    for p0 in range(0, P, BLOCK):
        offs = p0 + tl.arange(0, BLOCK)
        valid = offs < P
        cam = _max_nan(tl.load(pre_b + offs, mask=valid, other=0.0), 0.0)
        n = tl.load(n_b + offs, mask=valid, other=0.0)
        gn = tl.load(gn_b + offs, mask=valid, other=0.0).to(tl.float32)
        s_gn_n += gn * n
        s_gn += gn
        c_mx += tl.where(valid & (cam == mx), 1.0, 0.0)
        c_mn += tl.where(valid & (cam == mn), 1.0, 0.0)
    t_gn_n = tl.sum(s_gn_n, axis=0)
    # The counts are >= 1 where they are used (the extremes are attained); max(., 1) keeps the
    # unused min share of "max" normalisation (no pixel may sit at mn = 0) finite.
    share_mx = tl.math.div_rn(-tl.math.div_rn(t_gn_n, r), tl.maximum(tl.sum(c_mx, axis=0), 1.0))
    share_mn = tl.math.div_rn(tl.math.div_rn(t_gn_n - tl.sum(s_gn, axis=0), r), tl.maximum(tl.sum(c_mn, axis=0), 1.0))
    for p0 in range(0, P, BLOCK):
        offs = p0 + tl.arange(0, BLOCK)
        valid = offs < P
        pre = tl.load(pre_b + offs, mask=valid, other=0.0)
        cam = _max_nan(pre, 0.0)
        gn = tl.load(gn_b + offs, mask=valid, other=0.0).to(tl.float32)
        gcam = tl.math.div_rn(gn, tl.zeros_like(gn) + r) + tl.where(cam == mx, share_mx, 0.0)
        if MINMAX:
            gcam += tl.where(cam == mn, share_mn, 0.0)
        tl.store(gpre_ptr + b * P + offs, tl.where(pre <= 0.0, 0.0, gcam), mask=valid)


@triton.jit
def _cam_input_grad_kernel(
    feats_ptr,                   # [B, C, P] of one source (read only when NEED_GRADS)
    alpha_ptr, gpre_ptr,         # fp32 [B, C] and [B, P]
    dfeats_ptr, dgrads_ptr,      # [B, C, P] outputs, dtype of feats
    C, P, n_chunks,
    NEED_FEATS: tl.constexpr, NEED_GRADS: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):
    pid = tl.program_id(0)
    b = (pid // n_chunks).to(tl.int64)
    chunk = pid % n_chunks
    offs_c = chunk * BLOCK_C + tl.arange(0, BLOCK_C)
    valid_c = offs_c < C
    rows = (b * C + offs_c) * P
    alpha = tl.load(alpha_ptr + b * C + offs_c, mask=valid_c, other=0.0)
    acc = tl.zeros([BLOCK_C, BLOCK_P], dtype=tl.float32)
    for p0 in range(0, P, BLOCK_P):
        offs_p = p0 + tl.arange(0, BLOCK_P)
        valid_p = offs_p < P
        m2 = valid_c[:, None] & valid_p[None, :]
        idx = rows[:, None] + offs_p[None, :]
        g = tl.load(gpre_ptr + b * P + offs_p, mask=valid_p, other=0.0)
        if NEED_FEATS:
            tl.store(dfeats_ptr + idx, (alpha[:, None] * g[None, :]).to(dfeats_ptr.dtype.element_ty), mask=m2)
        if NEED_GRADS:
            acc += g[None, :] * tl.load(feats_ptr + idx, mask=m2, other=0.0).to(tl.float32)
    if NEED_GRADS:
        total = tl.sum(acc, axis=1)
        galpha = tl.math.div_rn(total, tl.zeros_like(total) + P)   # d alpha / d grads = 1/P
        for p0 in range(0, P, BLOCK_P):
            offs_p = p0 + tl.arange(0, BLOCK_P)
            m2 = valid_c[:, None] & (offs_p < P)[None, :]
            dg = tl.zeros([BLOCK_C, BLOCK_P], dtype=tl.float32) + galpha[:, None]
            tl.store(dgrads_ptr + rows[:, None] + offs_p[None, :], dg.to(dgrads_ptr.dtype.element_ty), mask=m2)


# ------------------------------------------------------------------------------ launchers

def channel_blocks(C: int, P: int):
    """(BLOCK_C, BLOCK_P, number of channel blocks) of the channel kernels."""
    block_c = max(1, min(BLOCK_C, next_pow2(C)))
    block_p = max(1, min(BLOCK_P, next_pow2(P)))
    return block_c, block_p, triton.cdiv(C, block_c)


def finish_block(P: int) -> int:
    return max(1, min(FINISH_BLOCK, next_pow2(P)))


def _sources(op, feats, grads):
    check_cam_args(op, feats, grads)
    return [(f.contiguous(), g.contiguous()) for f, g in zip(feats, grads)]


def _partials(pairs, B, P, dev, alphas=None):
    """Launch the channel kernel of every source; returns (partial, chunk table cum)."""
    blocks = [channel_blocks(f.shape[1], P) for f, _ in pairs]
    cum = [0]
    for _, _, nch in blocks:
        cum.append(cum[-1] + nch)
    partial = new_output((B, cum[-1], P), torch.float32, dev)
    for s, ((f, g), (block_c, block_p, nch)) in enumerate(zip(pairs, blocks)):
        if nch == 0:  # C_s = 0: the source's CAM is 0
            continue
        _cam_partial_kernel[(B * nch,)](
            f, g, partial, alphas[s] if alphas is not None else partial,
            f.shape[1], P, nch, cum[s], cum[-1],
            SAVE_ALPHA=alphas is not None, BLOCK_C=block_c, BLOCK_P=block_p,
        )
    return partial, cum


def cam_mask(feats, grads, normalize: str = "minmax", eps: float = 1e-6) -> torch.Tensor:
    """u = max_s normalise(relu(sum_c mean_p(grads_s) * feats_s)): fp32 [B, h, w]."""
    op = "camfast.cam_mask [triton]"
    pairs = _sources(op, feats, grads)
    minmax = is_minmax(op, normalize)
    B, _, h, w = pairs[0][0].shape
    P, dev = h * w, pairs[0][0].device
    u = new_output((B, h, w), torch.float32, dev)
    if u.numel() == 0:  # B, h or w is 0
        return u
    with device_guard(u):
        partial, cum = _partials(pairs, B, P, dev)
        pre = new_output((B, P), torch.float32, dev)
        for s in range(len(pairs)):
            _cam_finish_kernel[(B,)](
                partial, pre, u, cum[s], cum[s + 1], cum[-1], P, float(eps),
                MINMAX=minmax, FIRST=s == 0, BLOCK=finish_block(P), num_warps=FINISH_WARPS,
            )
    return u


def cam_mask_backward(grad_mask, feats, grads, normalize: str = "minmax", eps: float = 1e-6,
                      need_feats: bool = True, need_grads: bool = True):
    """(dfeats, dgrads): lists with the shapes/dtypes of feats/grads, [] when not needed."""
    op = "camfast.cam_mask_backward [triton]"
    pairs = _sources(op, feats, grads)
    f0 = pairs[0][0]
    B, _, h, w = f0.shape
    check_grad_mask(op, grad_mask, B, h, w, f0)
    minmax = is_minmax(op, normalize)
    dfeats = [new_output(f.shape, f.dtype, f.device) for f, _ in pairs] if need_feats else []
    dgrads = [new_output(g.shape, g.dtype, g.device) for _, g in pairs] if need_grads else []
    P, S, dev = h * w, len(pairs), f0.device
    if not (need_feats or need_grads) or B * P == 0:  # every output is empty
        return dfeats, dgrads
    with device_guard(f0):
        gu = grad_mask.to(torch.float32).contiguous()

        # 1. recompute n_s, saving pre and alpha (all fp32, [S, B, P] and [B, C_s]: tiny).
        alphas = [new_output((B, f.shape[1]), torch.float32, dev) for f, _ in pairs]
        partial, cum = _partials(pairs, B, P, dev, alphas)
        n = new_output((S, B, P), torch.float32, dev)
        pre = new_output((S, B, P), torch.float32, dev)
        for s in range(S):
            _cam_finish_kernel[(B,)](
                partial, pre[s], n[s], cum[s], cum[s + 1], cum[-1], P, float(eps),
                MINMAX=minmax, FIRST=True, BLOCK=finish_block(P), num_warps=FINISH_WARPS,
            )

        # 2. split gu between the sources that attain the union (S = 1: gn = gu).
        if S == 1:
            gn = gu.reshape(1, B, P)
        else:
            gn = new_output((S, B, P), torch.float32, dev)
            block = min(1024, next_pow2(B * P))
            _union_grad_kernel[(triton.cdiv(B * P, block),)](n, gu, gn, S, B * P, BLOCK=block)

        # 3. normalisation and ReLU backward, per source.
        gpre = new_output((S, B, P), torch.float32, dev)
        for s in range(S):
            _cam_norm_backward_kernel[(B,)](pre[s], n[s], gn[s], gpre[s], P, float(eps),
                                            MINMAX=minmax, BLOCK=finish_block(P), num_warps=FINISH_WARPS)

        # 4. per source, one pass over the channels.
        for s, (f, g) in enumerate(pairs):
            C = f.shape[1]
            block_c, block_p, nch = channel_blocks(C, P)
            if nch == 0:
                continue
            _cam_input_grad_kernel[(B * nch,)](
                f, alphas[s], gpre[s],
                dfeats[s] if need_feats else f, dgrads[s] if need_grads else f,
                C, P, nch,
                NEED_FEATS=bool(need_feats), NEED_GRADS=bool(need_grads),
                BLOCK_C=block_c, BLOCK_P=block_p,
            )
    return dfeats, dgrads
