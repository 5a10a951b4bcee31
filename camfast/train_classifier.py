"""``python -m camfast.train_classifier`` and ``camfast.train_classifier:main``, kept for what calls them by that name outside the
repository (scripts, console scripts of earlier installs); the command is camfast/cli/train_classifier.py."""
import sys

from .cli.train_classifier import main

if __name__ == "__main__":
    sys.exit(main())
