"""Child processes that cannot outlive their parent (Linux ``PR_SET_PDEATHSIG``).

``autodl serve`` starts an embedded Redis and a worker; a worker starts pool processes. If
the parent is killed (``kill -9``, the OOM killer), the kernel signals each child, so no
orphan keeps a socket, a database or a GPU. On other systems this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM, expected_parent: int | None = None) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent exits.

    ``expected_parent``: if the parent already exited before the request took effect (the
    race the prctl man page describes), exit now instead of living on as an orphan.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if expected_parent is not None and os.getppid() != expected_parent:
        os.kill(os.getpid(), sig)


def child_of_this_process(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` for subprocess.Popen: the child gets ``sig`` when we die."""
    parent = os.getpid()
    return lambda: die_with_parent(sig, expected_parent=parent)
