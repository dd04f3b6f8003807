"""Entry-point wrapper shared by the three user scripts: one-line errors, stable exit codes."""
import argparse
import os
import signal
import sys

from host.errors import Interrupted, UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the scripts' error convention: a bad option is one `error: ...` line
    naming it (exit 2), not a usage block."""

    def error(self, message):
        raise UserError("%s (see %s --help)" % (message, self.prog))


def _terminated(signum, frame):
    raise KeyboardInterrupt      # SIGTERM stops as cleanly as Ctrl-C


def run(main, argv=None):
    """Call main(argv); turn UserError into `error: ...` on stderr and its exit code; SIGTERM
    is handled as Ctrl-C (exit 130 after what was done is saved)."""
    signal.signal(signal.SIGTERM, _terminated)
    try:
        code = main(sys.argv[1:] if argv is None else argv)
    except Interrupted as exc:
        sys.stderr.write("interrupted: %s\n" % exc)
        sys.exit(exc.exit_code)
    except UserError as exc:
        sys.stderr.write("error: %s\n" % exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    sys.exit(code or 0)
