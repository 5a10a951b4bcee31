"""``python -m camfast.train`` and ``camfast.train:main``, kept for what calls them by that name outside the
repository (scripts, console scripts of earlier installs); the command is camfast/cli/train.py."""
import sys

from .cli.train import main

if __name__ == "__main__":
    sys.exit(main())
