"""Child processes never outlive the process that started them, however it ends (SIGKILL
included): no orphaned virtual boards, KPU workers or nncase stages.

Two mechanisms, each where the other fails:
- a **lifeline pipe** for long-lived Python children (the virtual board): the parent keeps the
  write end open and never writes; the child watches the read end in a thread and cleans up
  when it reads end-of-file, which the kernel delivers when every copy of the write end is
  closed, i.e. when the parent has gone, whichever thread started the child. The board's
  own KPU worker exits when its request pipe closes (host/vboard/kpu_worker.py).
- **PR_SET_PDEATHSIG** for compute children that sit in one long C call holding the GIL (the
  nncase stage: a watcher thread would not run until the compile returns). The kernel
  kills them when the *thread* that spawned them ends, so use it only from a thread that
  lives as long as the child (the stage is run from the caller's thread and waited for).
Neither exists in the standard library or a maintained package for Python 3.7 on Linux.
"""
import ctypes
import os
import signal
import threading

ENV = "K210_LIFELINE_FD"
_PR_SET_PDEATHSIG = 1


class Lifeline(object):
    """Parent side: `Popen(..., pass_fds=line.pass_fds, env=line.env(env))`, then
    `line.started()`; `line.cut()` lets the child go (it exits as if its parent died)."""

    def __init__(self):
        self._read, self._write = os.pipe()      # both non-inheritable (PEP 446)

    @property
    def pass_fds(self):
        return (self._read,)

    def env(self, env):
        env = dict(env)
        env[ENV] = str(self._read)
        return env

    def started(self):
        """The child holds its copy of the read end: close the parent's."""
        if self._read is not None:
            os.close(self._read)
            self._read = None

    def cut(self):
        self.started()
        if self._write is not None:
            os.close(self._write)
            self._write = None


def watch_parent(on_parent_gone):
    """Child side: call on_parent_gone() from a daemon thread when the parent's end of the
    lifeline closes. No-op when this process was started without one."""
    fd = os.environ.pop(ENV, None)
    if fd is None:
        return
    fd = int(fd)

    def wait():
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        on_parent_gone()

    threading.Thread(target=wait, name="lifeline", daemon=True).start()


def die_with_parent():
    """preexec_fn for subprocess: the child is killed when the spawning thread ends."""
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
