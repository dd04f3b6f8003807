"""The one error type users see: a one-line message saying what is wrong and what to do."""


def one_line(exc):
    """An exception's text on one line (its type name when it has none)."""
    return " ".join(str(exc).split()) or exc.__class__.__name__


class UserError(Exception):
    """A problem the user can fix. Printed as one line without traceback; exit code 2."""

    exit_code = 2


class FidelityError(UserError):
    """The board (or the kmodel) does not reproduce TensorFlow closely enough; exit code 1."""

    exit_code = 1


class Interrupted(UserError):
    """Ctrl-C or SIGTERM, after what was done is saved (printed as `interrupted: ...`);
    exit code 130."""

    exit_code = 130
