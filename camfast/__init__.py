"""camfast: a fast, fused CAM-consistency loss for local image-to-image GANs.

    import camfast
    cam = camfast.CAMConsistency(D, "main.5")          # D returns (adv, attribute logits)
    loss = cam.g_loss(x_real, x_fake, c_src, c_trg)    # or camfast.cam_consistency_loss(...)

See README.md and docs/ (docs/api.md: every public name) for the method, the backends and
the trainer.
"""
import os as _os
import sys as _sys


def _checkout_kernels() -> None:
    """Make the top-level ``kernels/`` of a source checkout importable as ``camfast.kernels``.

    An install maps ``kernels/`` to ``camfast/kernels`` (setup.py's package_dir). Running from
    a checkout (``python setup.py build_ext --inplace`` and PYTHONPATH=checkout) has no such
    mapping, so a finder for that one name points it at the checkout's ``kernels/`` — the one
    next to this package, also when an editable install of another checkout is present.
    """
    root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    kdir = _os.path.join(root, "kernels")
    if _os.path.isdir(_os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "kernels")):
        return  # installed layout: camfast/kernels exists
    if not (_os.path.isfile(_os.path.join(kdir, "__init__.py")) and _os.path.isfile(_os.path.join(root, "setup.py"))):
        return
    if not any(isinstance(f, _KernelsFinder) and f.kdir == kdir for f in _sys.meta_path):
        _sys.meta_path.insert(0, _KernelsFinder(kdir))


class _KernelsFinder:
    """Finds ``camfast.kernels`` (only that name) in a checkout's top-level ``kernels/``."""

    def __init__(self, kdir: str):
        self.kdir = kdir

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "camfast.kernels":
            return None
        import importlib.util

        return importlib.util.spec_from_file_location(
            fullname, _os.path.join(self.kdir, "__init__.py"), submodule_search_locations=[self.kdir])


_checkout_kernels()

from ._version import __version__  # noqa: E402
from ._extension import build_info  # noqa: E402
from .api import backends, cam_consistency_loss, grad_cam_mask  # noqa: E402
from .consistency import CAMConsistency, score_weights  # noqa: E402
from .gradcam import GradCAM, GradCAMError, attribute_score, grad_cam  # noqa: E402

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
