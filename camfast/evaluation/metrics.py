"""Pure metric functions (torch in, floats or tensors out; no models, no files).

Conventions, shared by every function here:

- Images are float tensors ``[B, C, H, W]`` (or ``[C, H, W]``) on the scale given by
  ``data_range`` (the evaluation maps G's [-1, 1] to [0, 1] and uses ``data_range=1``).
- Masks are bool (or {0, 1}) tensors ``[B, H, W]`` or ``[B, 1, H, W]``; ``True`` = inside the
  region. "Outside" metrics use the pixels where the mask is ``False``, every channel.
- Per-image values are returned as a ``[B]`` tensor so the caller chooses how to aggregate.

PSNR of identical images is ``inf``; pass ``max_db`` to cap it (the evaluation caps at
``PSNR_CAP`` = 100 dB so that a mean over images stays finite; 100 dB is an MSE of 1e-10 on
[0, 1], far below 8-bit quantisation, so the cap never touches a real difference).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

PSNR_CAP = 100.0


def _batched(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(0) if x.dim() == 3 else x


def _mask4(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A bool mask ``[B, 1, H, W]`` that broadcasts against images ``like``."""
    m = mask.bool()
    if m.dim() == 2:
        m = m.unsqueeze(0)
    if m.dim() == 3:
        m = m.unsqueeze(1)
    if m.shape[0] != like.shape[0] or m.shape[-2:] != like.shape[-2:]:
        raise ValueError(f"mask: shape {tuple(mask.shape)} does not match images {tuple(like.shape)}")
    return m


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _batched(a).double(), _batched(b).double()
    if a.shape != b.shape:
        raise ValueError(f"images: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    return a, b


def psnr_from_mse(mse: torch.Tensor, data_range: float = 1.0, max_db: Optional[float] = None) -> torch.Tensor:
    """``10 log10(range^2 / mse)``; ``inf`` where mse is 0 (or ``max_db`` if given)."""
    mse = torch.as_tensor(mse, dtype=torch.float64)
    out = 10.0 * torch.log10(data_range ** 2 / mse)  # mse 0 -> inf, as intended
    if max_db is not None:
        out = out.clamp(max=max_db)
    return out


def masked_mse(a: torch.Tensor, b: torch.Tensor, keep: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-image mean squared error over the pixels where ``keep`` is True (all if None).

    An image with no kept pixel gets NaN (there is nothing to measure), never 0.
    """
    a, b = _check_pair(a, b)
    sq = (a - b) ** 2
    if keep is None:
        return sq.flatten(1).mean(1)
    k = _mask4(keep, a).expand_as(sq).double()
    n = k.flatten(1).sum(1)
    return (sq * k).flatten(1).sum(1) / n  # 0/0 -> NaN on purpose


def masked_l1(a: torch.Tensor, b: torch.Tensor, keep: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-image mean absolute difference over the pixels where ``keep`` is True."""
    a, b = _check_pair(a, b)
    d = (a - b).abs()
    if keep is None:
        return d.flatten(1).mean(1)
    k = _mask4(keep, a).expand_as(d).double()
    return (d * k).flatten(1).sum(1) / k.flatten(1).sum(1)


def outside_l1(real: torch.Tensor, edited: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Mean L1 between ``real`` and ``edited`` outside ``region`` (the edit's allowed area)."""
    return masked_l1(real, edited, ~_mask4(region, _batched(real)))


def outside_psnr(real: torch.Tensor, edited: torch.Tensor, region: torch.Tensor, data_range: float = 1.0,
                 max_db: Optional[float] = None) -> torch.Tensor:
    """PSNR between ``real`` and ``edited`` over the pixels outside ``region``."""
    mse = masked_mse(real, edited, ~_mask4(region, _batched(real)))
    return psnr_from_mse(mse, data_range, max_db)


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, max_db: Optional[float] = None) -> torch.Tensor:
    """Per-image PSNR over the whole image."""
    return psnr_from_mse(masked_mse(a, b), data_range, max_db)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    g = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(g ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004): 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03,
    computed per channel on the "valid" region (no padding) and averaged over channels and
    positions, as ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    use_sample_covariance=False)``. The window shrinks to the image if the image is smaller.
    """
    a, b = _check_pair(a, b)
    win_size = min(win_size, a.shape[-1], a.shape[-2])
    g = _gaussian_window(win_size, sigma)
    c = a.shape[1]
    # The Gaussian window is separable: two 1-D passes give the same sums as the 2-D window.
    wv = g.view(1, 1, -1, 1).expand(c, 1, win_size, 1).contiguous()
    wh = g.view(1, 1, 1, -1).expand(c, 1, 1, win_size).contiguous()

    def blur(t):
        return F.conv2d(F.conv2d(t, wv, groups=c), wh, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


def iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image intersection over union of two bool masks ``[B, H, W]`` (or ``[B, 1, H, W]``).

    Both empty -> NaN (undefined; excluded from means by the caller).
    """
    p, t = pred.bool().flatten(1), target.bool().flatten(1)
    if p.shape != t.shape:
        raise ValueError(f"iou: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    inter = (p & t).sum(1).double()
    union = (p | t).sum(1).double()
    return inter / union


def cam_iou(cam: torch.Tensor, region: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """IoU of ``cam >= threshold`` (a mask in [0, 1], ``[B, 1, H, W]``) with the region."""
    return iou(cam.reshape(region.shape) >= threshold, region)


def pointing_game(cam: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Per-image hit (1.0) if the CAM's maximum lies inside the region, else miss (0.0).

    A CAM with no positive value points nowhere and counts as a miss (otherwise argmax of
    a flat map would pick pixel 0 and score by chance). Ties: the first maximum (row-major).
    """
    c = cam.reshape(region.shape[0], -1)
    r = region.bool().reshape(region.shape[0], -1)
    idx = c.argmax(1)
    hit = r.gather(1, idx[:, None]).squeeze(1)
    return (hit & (c.max(1).values > 0)).double()


def edit_accuracy(logits: torch.Tensor, target: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
    """Per-image success of an edit: does the classifier's decision on the edited attribute
    (``logits[i, attr[i]] > 0``) equal the target value ``target[i, attr[i]]``?

    ``logits``, ``target``: ``[B, K]``; ``attr``: ``[B]`` long (or an int: the same for all).
    """
    if isinstance(attr, int):
        attr = torch.full((logits.shape[0],), attr, dtype=torch.long)
    idx = attr.long().view(-1, 1).to(logits.device)
    pred = logits.gather(1, idx).squeeze(1) > 0
    want = target.gather(1, idx.to(target.device)).squeeze(1) > 0.5
    return (pred == want.to(pred.device)).double()


# ---------------------------------------------------------------- Frechet distance

def feature_stats(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``[D]`` and covariance ``[D, D]`` (unbiased, as numpy.cov) in float64."""
    f = feats.double().reshape(feats.shape[0], -1)
    if f.shape[0] < 2:
        raise ValueError(f"feature_stats: need at least 2 samples, got {f.shape[0]}")
    mu = f.mean(0)
    d = f - mu
    return mu, d.T @ d / (f.shape[0] - 1)


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix (eigendecomposition, float64;
    tiny negative eigenvalues from rounding are clipped to 0)."""
    m = (m + m.T) / 2
    w, v = torch.linalg.eigh(m)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """``|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2))`` between two Gaussians.

    ``tr((C1 C2)^(1/2))`` is computed as ``tr((S C2 S)^(1/2))`` with ``S = C1^(1/2)``: the two
    matrices are similar, and the second is symmetric PSD, so a symmetric eigendecomposition
    suffices (no scipy.linalg.sqrtm, no complex parts to discard).
    """
    mu1, mu2, cov1, cov2 = (t.double() for t in (mu1, mu2, cov1, cov2))
    s1 = _sqrtm_psd(cov1)
    covmean_tr = torch.linalg.eigvalsh((s1 @ cov2 @ s1 + (s1 @ cov2 @ s1).T) / 2).clamp(min=0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff @ diff + torch.trace(cov1) + torch.trace(cov2) - 2 * covmean_tr)


def fid_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets ``[N, D]``."""
    return frechet_distance(*feature_stats(real), *feature_stats(fake))


def nanmean(values) -> Optional[float]:
    """Mean ignoring NaN; None if nothing is left (JSON null). inf stays inf."""
    t = torch.as_tensor(values, dtype=torch.float64).flatten()
    t = t[~torch.isnan(t)]
    if t.numel() == 0:
        return None
    v = float(t.mean())
    return v if not math.isnan(v) else None
