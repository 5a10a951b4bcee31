"""Stage 2: masked L1 between real and fake, with the mask sampled bilinearly on the fly.

Every program owns a ``TILE_H x TILE_W`` tile of one sample's image plane and loops over the
image channels, so real/fake are read exactly once; the mask value of each pixel is sampled
from the low-resolution ``u`` [B, h, w] (4 gathers, L1/L2-resident) with exactly the
coordinates of ``F.interpolate(mode="bilinear", align_corners=False)``.

Reductions are deterministic and atomic-free: each program writes one fp32 partial, and a
second kernel sums the partials of a row (a sample for ``none``, everything for ``mean``/``sum``)
in a fixed order.

Backward: one pass over the images writes ``dfake``/``dreal`` (only those requested) and, when
the mask gradient is requested, reduces ``dM = -ge * sum_k |real - fake|`` of its tile into
the low-resolution cells the tile touches (the adjoint of bilinear sampling), as a small dense
fp32 window ``[WIN_H, WIN_W]`` of per-tile partials. A tile of ``TILE_H`` output rows touches
at most ``ceil((TILE_H - 1) * h / H) + 2`` low-resolution rows, so the windows are small
(in total 2048 floats per sample at 128x128 px with a 16x16 mask, 1/8 of one image plane;
1/16 at 256x256 px); they replace float atomics. A gather kernel then sums, for every
low-resolution cell, the windows that cover it, in tile order.
"""
import math

import torch
import triton
import triton.language as tl

from . import check_grad_out, check_l1_args, check_reduction, device_guard, new_output, next_pow2

# Image tile of one program (rows x columns). Tests shrink it to cover many tiles at small sizes.
TILE_H = 16
TILE_W = 32
# Upper bound on the elements of the [rows, cols, window] products of the backward's adjoint.
MAX_PRODUCT = 8192


@triton.jit
def _src_index(o, scale, size):
    """Source index pair and weights of output positions ``o`` (int vector), exactly as
    PyTorch's upsample_bilinear2d (align_corners=False) computes them, in fp32."""
    src = tl.maximum(scale * (o.to(tl.float32) + 0.5) - 0.5, 0.0)
    i0 = tl.minimum(src.to(tl.int32), size - 1)   # src >= 0, so truncation is floor
    i1 = i0 + tl.where(i0 < size - 1, 1, 0)
    l1 = src - i0.to(tl.float32)
    l0 = 1.0 - l1
    return i0, i1, l0, l1


@triton.jit
def _sample_mask(ub_ptr, y0, y1, ly0, ly1, x0, x1, lx0, lx1, w, valid):
    """M over a tile: bilinear combination of 4 gathers from the low-res mask of one sample."""
    r0 = y0[:, None] * w
    r1 = y1[:, None] * w
    u00 = tl.load(ub_ptr + r0 + x0[None, :], mask=valid, other=0.0)
    u01 = tl.load(ub_ptr + r0 + x1[None, :], mask=valid, other=0.0)
    u10 = tl.load(ub_ptr + r1 + x0[None, :], mask=valid, other=0.0)
    u11 = tl.load(ub_ptr + r1 + x1[None, :], mask=valid, other=0.0)
    top = lx0[None, :] * u00 + lx1[None, :] * u01
    bot = lx0[None, :] * u10 + lx1[None, :] * u11
    return ly0[:, None] * top + ly1[:, None] * bot


@triton.jit
def _masked_l1_fwd_kernel(
    real_ptr, fake_ptr,          # [B, K, H, W], same dtype
    u_ptr,                       # fp32 [B, h, w]
    part_ptr,                    # fp32 [B, n_ty, n_tx]: one partial sum per program
    K, H, W, h, w, scale_h, scale_w,
    BH: tl.constexpr, BW: tl.constexpr,
):
    tx = tl.program_id(0)
    ty = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    ys = ty * BH + tl.arange(0, BH)
    xs = tx * BW + tl.arange(0, BW)
    valid = (ys < H)[:, None] & (xs < W)[None, :]

    y0, y1, ly0, ly1 = _src_index(ys, scale_h, h)
    x0, x1, lx0, lx1 = _src_index(xs, scale_w, w)
    m = _sample_mask(u_ptr + b * h * w, y0, y1, ly0, ly1, x0, x1, lx0, lx1, w, valid)

    # sum_k |real - fake| first, times (1 - M) once: M does not depend on k.
    plane = H * W
    offs = b * K * plane + ys[:, None] * W + xs[None, :]
    l1 = tl.zeros([BH, BW], dtype=tl.float32)
    for k in range(K):
        r = tl.load(real_ptr + offs + k * plane, mask=valid, other=0.0).to(tl.float32)
        f = tl.load(fake_ptr + offs + k * plane, mask=valid, other=0.0).to(tl.float32)
        l1 += tl.abs(r - f)
    e = tl.where(valid, l1 * (1.0 - m), 0.0)
    tile = (b * tl.num_programs(1) + ty) * tl.num_programs(0) + tx
    tl.store(part_ptr + tile, tl.sum(tl.sum(e, axis=1), axis=0))


@triton.jit
def _sum_rows_kernel(part_ptr, out_ptr, T, denom, BLOCK: tl.constexpr):
    """out[row] = sum(part[row, :T]) / denom, summed in a fixed order (deterministic)."""
    row = tl.program_id(0).to(tl.int64)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for t0 in range(0, T, BLOCK):
        offs = t0 + tl.arange(0, BLOCK)
        acc += tl.load(part_ptr + row * T + offs, mask=offs < T, other=0.0)
    total = tl.math.div_rn(tl.sum(acc, axis=0), denom)
    tl.store(out_ptr + row, total.to(out_ptr.dtype.element_ty))


@triton.jit
def _masked_l1_bwd_kernel(
    real_ptr, fake_ptr, u_ptr, g_ptr,
    dreal_ptr, dfake_ptr,        # [B, K, H, W] outputs (written only when requested)
    part_ptr,                    # fp32 [B, n_ty, n_tx, WIN_H, WIN_W]: adjoint windows
    row0_ptr, col0_ptr,          # int32 [n_ty], [n_tx]: low-res origin of each window
    K, H, W, h, w, scale_h, scale_w, denom,
    G_PER_SAMPLE: tl.constexpr,
    NEED_REAL: tl.constexpr, NEED_FAKE: tl.constexpr, NEED_MASK: tl.constexpr,
    BH: tl.constexpr, BW: tl.constexpr, WIN_H: tl.constexpr, WIN_W: tl.constexpr,
):
    tx = tl.program_id(0)
    ty = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    ys = ty * BH + tl.arange(0, BH)
    xs = tx * BW + tl.arange(0, BW)
    vy = ys < H
    vx = xs < W
    valid = vy[:, None] & vx[None, :]

    # ge: the gradient of every element e[b, k, y, x] (mean/none fold their 1/N in here).
    if G_PER_SAMPLE:
        ge = tl.math.div_rn(tl.load(g_ptr + b).to(tl.float32), denom)
    else:
        ge = tl.math.div_rn(tl.load(g_ptr).to(tl.float32), denom)

    y0, y1, ly0, ly1 = _src_index(ys, scale_h, h)
    x0, x1, lx0, lx1 = _src_index(xs, scale_w, w)
    NEED_IMG: tl.constexpr = NEED_REAL or NEED_FAKE
    if NEED_IMG:
        m = _sample_mask(u_ptr + b * h * w, y0, y1, ly0, ly1, x0, x1, lx0, lx1, w, valid)
        keep = (1.0 - m) * ge

    plane = H * W
    offs = b * K * plane + ys[:, None] * W + xs[None, :]
    l1 = tl.zeros([BH, BW], dtype=tl.float32)
    for k in range(K):
        r = tl.load(real_ptr + offs + k * plane, mask=valid, other=0.0).to(tl.float32)
        f = tl.load(fake_ptr + offs + k * plane, mask=valid, other=0.0).to(tl.float32)
        d = f - r
        if NEED_IMG:
            # d|real - fake| / d fake = sign(fake - real), with sign(0) = 0 as in torch.
            sgn = tl.where(d > 0.0, 1.0, 0.0) - tl.where(d < 0.0, 1.0, 0.0)
            gf = sgn * keep
            if NEED_FAKE:
                tl.store(dfake_ptr + offs + k * plane, gf.to(dfake_ptr.dtype.element_ty), mask=valid)
            if NEED_REAL:
                tl.store(dreal_ptr + offs + k * plane, (-gf).to(dreal_ptr.dtype.element_ty), mask=valid)
        if NEED_MASK:
            l1 += tl.abs(d)

    if NEED_MASK:
        dm = tl.where(valid, -ge * l1, 0.0)                     # dL/dM of this tile
        # Window origin: the low-res row/col of the tile's first output row/col (the source
        # index is non-decreasing in the output index).
        i0 = tl.min(tl.where(vy, y0, h), axis=0)
        j0 = tl.min(tl.where(vx, x0, w), axis=0)
        wi = tl.arange(0, WIN_H)
        wj = tl.arange(0, WIN_W)
        # Dense local interpolation weights: ay[y, i] = weight of low-res row i0+i in output
        # row y (both taps land on the same row at the border: the weights add, as in torch).
        ay = (tl.where((y0 - i0)[:, None] == wi[None, :], ly0[:, None], 0.0)
              + tl.where((y1 - i0)[:, None] == wi[None, :], ly1[:, None], 0.0))   # [BH, WIN_H]
        ax = (tl.where((x0 - j0)[:, None] == wj[None, :], lx0[:, None], 0.0)
              + tl.where((x1 - j0)[:, None] == wj[None, :], lx1[:, None], 0.0))   # [BW, WIN_W]
        # window = ay^T @ dm @ ax, as broadcast-and-sum (exact fp32; tl.dot needs >= 16 and
        # would use TF32 on GPUs).
        t = tl.sum(dm[:, :, None] * ax[None, :, :], axis=1)                     # [BH, WIN_W]
        win = tl.sum(ay[:, :, None] * t[:, None, :], axis=0)                    # [WIN_H, WIN_W]
        tile = (b * tl.num_programs(1) + ty) * tl.num_programs(0) + tx
        tl.store(part_ptr + tile * (WIN_H * WIN_W) + wi[:, None] * WIN_W + wj[None, :], win)
        # Every sample's tile (ty, tx) has the same origin; sample 0 publishes it.
        if (b == 0) & (tx == 0):
            tl.store(row0_ptr + ty, i0)
        if (b == 0) & (ty == 0):
            tl.store(col0_ptr + tx, j0)


@triton.jit
def _gather_windows_kernel(
    part_ptr, row0_ptr, col0_ptr,
    dmask_ptr,                   # fp32 [B, h, w]
    n_ty, n_tx, h, w,
    WIN_H: tl.constexpr, WIN_W: tl.constexpr, BLOCK_W: tl.constexpr,
):
    """dmask[b, i, :] = sum over tiles (in tile order) of their windows' entries at row i."""
    i = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    js = tl.arange(0, BLOCK_W)
    vj = js < w
    acc = tl.zeros([BLOCK_W], dtype=tl.float32)
    for ty in range(n_ty):
        wi = i - tl.load(row0_ptr + ty)
        if (wi >= 0) & (wi < WIN_H):       # this row band of tiles touches low-res row i
            for tx in range(n_tx):
                wj = js - tl.load(col0_ptr + tx)
                ok = vj & (wj >= 0) & (wj < WIN_W)
                tile = (b * n_ty + ty) * n_tx + tx
                acc += tl.load(part_ptr + (tile * WIN_H + wi) * WIN_W + wj, mask=ok, other=0.0)
    tl.store(dmask_ptr + (b * h + i) * w + js, acc, mask=vj)


# ------------------------------------------------------------------------------ launchers

def _denominator(op: str, reduction: str, shape) -> float:
    check_reduction(op, reduction)
    B, K, H, W = shape
    return {"mean": float(B * K * H * W), "none": float(K * H * W), "sum": 1.0}[reduction]


def _check(op, real, fake, mask):
    check_l1_args(op, real, fake, mask)
    return real.contiguous(), fake.contiguous(), mask.contiguous()


def _window(block: int, size: int, out_size: int) -> int:
    """Low-res rows (or cols) touched by ``block`` consecutive output rows, padded to 2^k.

    The first row's source index is floor(s), the last one's second tap at most
    floor(s + (block-1)*scale) + 1; +1 more for fp32 rounding; never more than ``size``.
    """
    return next_pow2(min(size, math.ceil((block - 1) * size / out_size) + 3))


def _backward_tiles(H: int, W: int, h: int, w: int):
    """Tile and window sizes for the backward, shrinking the tile while the adjoint's
    broadcast products ([BH, BW, WIN_W] and [BH, WIN_H, WIN_W]) would be too large."""
    bh, bw = min(TILE_H, next_pow2(H)), min(TILE_W, next_pow2(W))
    while True:
        wh, ww = _window(bh, h, H), _window(bw, w, W)
        if max(bh * bw * ww, bh * wh * ww) <= MAX_PRODUCT or (bh == 1 and bw == 1):
            return bh, bw, wh, ww
        if bw >= bh:
            bw //= 2
        else:
            bh //= 2


def masked_l1(real, fake, mask, reduction: str = "mean") -> torch.Tensor:
    """sum |real - fake| * (1 - upsample(mask)), reduced; dtype of real, [B] for 'none'."""
    op = "camfast.masked_l1 [triton]"
    real, fake, mask = _check(op, real, fake, mask)
    denom = _denominator(op, reduction, real.shape)
    B, K, H, W = real.shape
    h, w = mask.shape[1:]
    per_sample = reduction == "none"
    out = new_output((B,) if per_sample else (), real.dtype, real.device)
    if B * K * H * W == 0:  # empty images or batch: the loss is 0 (docs/kernels.md)
        return out.zero_()
    with device_guard(real):
        bh, bw = min(TILE_H, next_pow2(H)), min(TILE_W, next_pow2(W))
        n_ty, n_tx = triton.cdiv(H, bh), triton.cdiv(W, bw)
        part = new_output((B, n_ty, n_tx), torch.float32, real.device)
        # Python floats are passed as fp32: h / H rounded once, as torch computes the scale.
        _masked_l1_fwd_kernel[(n_tx, n_ty, B)](
            real, fake, mask, part, K, H, W, h, w, h / H, w / W, BH=bh, BW=bw,
        )
        rows, T = (B, n_ty * n_tx) if per_sample else (1, B * n_ty * n_tx)
        _sum_rows_kernel[(rows,)](part, out, T, denom, BLOCK=min(1024, next_pow2(T)))
    return out


def masked_l1_backward(grad_out, real, fake, mask, reduction: str = "mean",
                       need_real: bool = True, need_fake: bool = True, need_mask: bool = True):
    """(dreal, dfake, dmask); each unrequested one is an empty [0] tensor of its dtype."""
    op = "camfast.masked_l1_backward [triton]"
    real, fake, mask = _check(op, real, fake, mask)
    denom = _denominator(op, reduction, real.shape)
    B, K, H, W = real.shape
    check_grad_out(op, grad_out, B if reduction == "none" else 1, real)
    h, w = mask.shape[1:]
    dev = real.device
    dreal = new_output(real.shape if need_real else (0,), real.dtype, dev)
    dfake = new_output(real.shape if need_fake else (0,), real.dtype, dev)
    dmask = new_output(mask.shape if need_mask else (0,), mask.dtype, dev)
    if not (need_real or need_fake or need_mask) or B == 0:
        return dreal, dfake, dmask
    if K * H * W == 0:  # empty images: no image gradient elements, nothing reaches the mask
        if need_mask:
            dmask.zero_()
        return dreal, dfake, dmask

    with device_guard(real):
        if need_mask:
            bh, bw, win_h, win_w = _backward_tiles(H, W, h, w)
        else:
            bh, bw, win_h, win_w = min(TILE_H, next_pow2(H)), min(TILE_W, next_pow2(W)), 1, 1
        n_ty, n_tx = triton.cdiv(H, bh), triton.cdiv(W, bw)
        if need_mask:
            part = new_output((B, n_ty, n_tx, win_h, win_w), torch.float32, dev)
            row0 = new_output((n_ty,), torch.int32, dev)
            col0 = new_output((n_tx,), torch.int32, dev)
        else:
            part = row0 = col0 = mask  # unused
        g = grad_out.to(torch.float32).contiguous()
        _masked_l1_bwd_kernel[(n_tx, n_ty, B)](
            real, fake, mask, g,
            dreal if need_real else real, dfake if need_fake else real,
            part, row0, col0,
            K, H, W, h, w, h / H, w / W, denom,
            G_PER_SAMPLE=reduction == "none",
            NEED_REAL=bool(need_real), NEED_FAKE=bool(need_fake), NEED_MASK=bool(need_mask),
            BH=bh, BW=bw, WIN_H=win_h, WIN_W=win_w,
        )
        if need_mask:
            _gather_windows_kernel[(h, B)](
                part, row0, col0, dmask, n_ty, n_tx, h, w,
                WIN_H=win_h, WIN_W=win_w, BLOCK_W=next_pow2(w),
            )
    return dreal, dfake, dmask
