"""Entry-point wrapper shared by the three user scripts: one-line errors, stable exit codes.

An unexpected exception (a bug, or a case nobody foresaw) is one `error:` line too, exit 2:
its traceback goes to a log file in the directory the script writes to, named in the line."""
import argparse
import os
import signal
import sys
import tempfile
import time
import traceback

from host.errors import Interrupted, UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the scripts' error convention: a bad option is one `error: ...` line
    naming it (exit 2), not a usage block."""

    def error(self, message):
        raise UserError("%s (see %s --help)" % (message, self.prog))


def _terminated(signum, frame):
    raise KeyboardInterrupt      # SIGTERM stops as cleanly as Ctrl-C


def _write_crash_log(directory, name, argv):
    """The traceback of the exception being handled -> DIRECTORY/NAME (or the temp
    directory when that cannot be written); returns the path."""
    text = "%s\nargv: %r\n\n%s" % (time.strftime("%Y-%m-%d %H:%M:%S"), argv,
                                   traceback.format_exc())
    for base in (directory, tempfile.gettempdir()):
        try:
            os.makedirs(base, exist_ok=True)
            path = os.path.join(base, name)
            with open(path, "w") as f:
                f.write(text)
            return path
        except OSError:
            continue
    return None


def run(main, argv=None, crash_dir=None, crash_log="error.log"):
    """Call main(argv); turn UserError into `error: ...` on stderr and its exit code, and any
    other exception into one `error:` line (exit 2) with its traceback in
    crash_dir(argv)/crash_log. SIGTERM is handled as Ctrl-C (exit 130 after what was done
    is saved)."""
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGTERM, _terminated)
    try:
        code = main(argv)
    except Interrupted as exc:
        sys.stderr.write("interrupted: %s\n" % exc)
        sys.exit(exc.exit_code)
    except UserError as exc:
        sys.stderr.write("error: %s\n" % exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except Exception as exc:
        directory = _crash_directory(crash_dir, argv)
        path = _write_crash_log(directory, crash_log, argv)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        sys.stderr.write("error: unexpected %s: %s (a case this tool does not recognise; "
                         "the traceback is in %s: please report it with that file)\n"
                         % (exc.__class__.__name__, first,
                            path or "no file: none could be written"))
        sys.exit(2)
    sys.exit(code or 0)


def _crash_directory(crash_dir, argv):
    """Where the script writes its results, else the current directory."""
    try:
        return crash_dir(argv) if crash_dir else os.getcwd()
    except Exception:
        return os.getcwd()


def option_value(argv, option, default):
    """The value of `--option VALUE` / `--option=VALUE` in argv (last wins), else default;
    for crash directories, read without the full parser."""
    value = default
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(option + "="):
            value = arg[len(option) + 1:]
    return value
