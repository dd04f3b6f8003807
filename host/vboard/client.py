"""The raw-REPL client the tests use against the virtual board: the host's own
(host/rawrepl.py, also used by host/flash.py), re-exported under its old name."""
from host.rawrepl import ExecError, RawRepl, ReplError  # noqa: F401
