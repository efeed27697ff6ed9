"""The CLI signal latch: a SIGINT/SIGTERM is remembered even when its KeyboardInterrupt is lost."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import pytest

from talkingface.cli_signals import HANDLED_SIGNALS, SignalLatch


@pytest.fixture
def latch() -> Iterator[SignalLatch]:
    previous = {sig: signal.getsignal(sig) for sig in HANDLED_SIGNALS}
    installed = SignalLatch()
    installed.install()
    yield installed
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def test_a_swallowed_interrupt_still_decides_the_exit_code(latch: SignalLatch) -> None:
    assert not latch.received and latch.exit_code == 130

    with contextlib.suppress(KeyboardInterrupt):  # library code that catches it on the way
        signal.raise_signal(signal.SIGTERM)

    assert latch.received and latch.event.is_set()
    assert latch.exit_code == 143 and latch.describe() == "interrupted (SIGTERM)"


def test_the_first_signal_decides_and_each_one_interrupts(latch: SignalLatch) -> None:
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGTERM)

    assert latch.exit_code == 130


def test_an_inherited_ignored_sigint_is_handled_again() -> None:
    previous = {sig: signal.getsignal(sig) for sig in HANDLED_SIGNALS}
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a script's `cmd &` starts it
    try:
        latch = SignalLatch()
        latch.install()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert latch.exit_code == 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
