"""camfast's command lines, one module each, apart from the library they call:
``train`` (camfast-train), ``eval`` (camfast-eval), ``train_classifier``
(camfast-train-classifier); each also runs as ``python -m camfast.cli.<name>``.

This module holds what they share: exit codes and one-line usage errors.
"""
import argparse
import sys

EXIT_USAGE, EXIT_ERROR = 2, 1


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument prints one line (not usage + message) and exits 2."""

    def error(self, message):
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)
