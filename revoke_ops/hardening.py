"""Keep secrets out of core dumps: the private key, tokens and client assertions live in memory.

At start-up the CLI sets ``RLIMIT_CORE`` to 0 (no core file) and, on Linux, ``PR_SET_DUMPABLE`` to
0 (no core through a piped ``core_pattern`` for this user, and other processes of the same user
cannot ptrace it or read its ``/proc/PID/mem``). ``--allow-core-dumps`` leaves both alone, for
debugging.

Best effort, by design: root can still read the process, a piped ``core_pattern`` with
``fs.suid_dumpable=2`` still hands the dump to root's handler, and Python API callers must call
:func:`harden_process` themselves (a library should not change its host process behind its back).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

__all__ = ["harden_process"]

log = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def harden_process() -> list[str]:
    """Forbid core dumps of this process (and ptrace by the same user, on Linux).

    :returns: what could not be done (empty when everything was applied); never raises.
    """
    failed: list[str] = []
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, OSError, ValueError) as err:
        failed.append(f"RLIMIT_CORE: {err}")
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
                failed.append(f"PR_SET_DUMPABLE: errno {ctypes.get_errno()}")
        except (OSError, AttributeError) as err:
            failed.append(f"PR_SET_DUMPABLE: {err}")
    for problem in failed:
        log.debug("could not harden the process against core dumps: %s", problem)
    return failed
