"""How the CLI stops on Ctrl-C and SIGTERM: remember the signal, interrupt, exit 128 + its number.

Raising KeyboardInterrupt from a handler is not enough on its own: code that happens to run
when the signal lands (a callback from C, a `finally`, a `__del__`) can swallow it, and a
process started in the background by a non-interactive shell inherits SIGINT *ignored*, which
Python keeps. So the handler is installed for both signals whatever was inherited, it also
sets an Event that long-running work polls (the render pipeline treats it as a cancel), and
the exit status comes from the remembered signal, not from how far the interrupt travelled.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
INTERRUPTED_EXIT_CODE = 130  # a KeyboardInterrupt with no signal behind it (a test runner)


class SignalLatch:
    """The first SIGINT/SIGTERM this process received, and an Event set when one arrives."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None

    def install(self) -> None:
        """Handle SIGINT and SIGTERM from now on (main thread only), even if they were ignored."""
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        self.event.set()
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    @property
    def received(self) -> bool:
        return self.event.is_set()

    @property
    def exit_code(self) -> int:
        """128 + the signal's number (130 SIGINT, 143 SIGTERM), as shells report it."""
        return INTERRUPTED_EXIT_CODE if self.signum is None else 128 + self.signum

    def describe(self) -> str:
        if self.signum is None:
            return "interrupted"
        return f"interrupted ({signal.Signals(self.signum).name})"


interrupts = SignalLatch()  # per process, like the signal handlers themselves
