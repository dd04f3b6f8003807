"""Entry-point wrapper shared by the three user scripts: one-line errors, stable exit codes."""
import os
import sys

from host.errors import UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
