"""camfast: a fast, fused CAM-consistency loss for local image-to-image GANs.

    import camfast
    loss = camfast.cam_consistency_loss(real, fake, feats, grads)

See README.md and docs/ for the method, the backends and the trainer.
"""
from ._version import __version__
from ._extension import build_info
from .api import backends, cam_consistency_loss, grad_cam_mask
from .gradcam import GradCAM, attribute_score, grad_cam

__all__ = [
    "__version__",
    "build_info",
    "backends",
    "cam_consistency_loss",
    "grad_cam_mask",
    "GradCAM",
    "attribute_score",
    "grad_cam",
]
