"""What every camfast command line shares: exit codes and one-line usage errors."""
import argparse
import sys

EXIT_USAGE, EXIT_ERROR = 2, 1


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument prints one line (not usage + message) and exits 2."""

    def error(self, message):
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)
