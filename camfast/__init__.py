"""camfast: a fast, fused CAM-consistency loss for local image-to-image GANs.

    import camfast
    cam = camfast.CAMConsistency(D, "main.5")          # D returns (adv, attribute logits)
    loss = cam.g_loss(x_real, x_fake, c_src, c_trg)    # or camfast.cam_consistency_loss(...)

See README.md and docs/ (docs/api.md: every public name) for the method, the backends and
the trainer.
"""
from ._version import __version__
from ._extension import build_info
from .api import backends, cam_consistency_loss, grad_cam_mask
from .consistency import CAMConsistency, score_weights
from .gradcam import GradCAM, GradCAMError, attribute_score, grad_cam

__all__ = [
    "__version__",
    "build_info",
    "backends",
    "cam_consistency_loss",
    "grad_cam_mask",
    "CAMConsistency",
    "score_weights",
    "GradCAM",
    "GradCAMError",
    "attribute_score",
    "grad_cam",
]
