"""Training StarGAN / AttGAN / STGAN with the CAM-consistency loss (``camfast-train``).

    from camfast.training import config, Trainer
    cfg = config.resolve(files=[("--preset", config.preset_path("quick"))], sets=["steps=10"])

One job per module: config (options), conditions (what G is conditioned on), losses
(WGAN-GP, classification), cam (CAM consistency), schedule (learning rates), checkpoint,
logging, samples, distributed, trainer (the loop).
"""
from .config import ConfigError

__all__ = ["ConfigError", "Trainer"]


def __getattr__(name):  # keep `import camfast.training` light: the trainer pulls in the models
    if name == "Trainer":
        from .trainer import Trainer
        return Trainer
    raise AttributeError(name)
