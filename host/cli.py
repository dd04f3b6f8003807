"""Entry-point wrapper shared by the three user scripts: one-line errors, stable exit codes."""
import argparse
import os
import sys

from host.errors import UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the scripts' error convention: a bad option is one `error: ...` line
    naming it (exit 2), not a usage block."""

    def error(self, message):
        raise UserError("%s (see %s --help)" % (message, self.prog))


def run(main, argv=None):
    """Call main(argv); turn UserError into `error: ...` on stderr and its exit code."""
    try:
        code = main(sys.argv[1:] if argv is None else argv)
    except UserError as exc:
        sys.stderr.write("error: %s\n" % exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    sys.exit(code or 0)
