"""Lets an unmodified program (e.g. the kflash CLI) reset the virtual K210 through DTR/RTS:
`PYTHONPATH=host/vboard/site kflash -p /dev/pts/N -B dan -b 1500000 file.kfpkg`.

Installs host.vboard.modem's pyserial patch at interpreter start. Virtual board tooling
only: on a real serial port pyserial's own ioctls succeed and the patch never acts.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(_HERE)))
if _REPO not in sys.path:
    sys.path.append(_REPO)
try:
    from host.vboard import modem as _modem
    _modem.install()
except ImportError:     # pyserial missing: nothing to patch
    pass
