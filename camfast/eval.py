"""``python -m camfast.eval`` and ``camfast.eval:main``, kept for what calls them by that name outside the
repository (scripts, console scripts of earlier installs); the command is camfast/cli/eval.py."""
import sys

from .cli.eval import main

if __name__ == "__main__":
    sys.exit(main())
