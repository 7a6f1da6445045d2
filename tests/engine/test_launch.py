"""How an array task ends at the scheduler's signals (ntksim.engine.launch), with real signals
sent to this process: the first signal decides, a second one cannot interrupt the cleanup, and
an ending that was swallowed does not make the task deaf to SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator

import pytest
from submitit.core.utils import UncompletedJobError

from ntksim.engine import launch
from ntksim.engine.launch import Terminated, _terminate_on_sigterm


def send(signum: int) -> None:
    """Deliver a signal to this process; its Python handler runs before the next line."""
    os.kill(os.getpid(), signum)


@pytest.fixture
def usr2_handler() -> Iterator[Callable[[Callable[[], None]], list[str]]]:
    """Install a SIGUSR2 handler like submitit's, doing `body` (requeue and exit, give up, fail)."""
    previous = signal.getsignal(signal.SIGUSR2)
    events: list[str] = []

    def install(body: Callable[[], None]) -> list[str]:
        def handler(signum: int, frame: object) -> None:
            events.append("usr2")
            body()

        signal.signal(signal.SIGUSR2, handler)
        return events

    yield install
    signal.signal(signal.SIGUSR2, previous)


def test_sigterm_raises_terminated_once_and_restores_the_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGUSR2)
    cleaned = False
    with pytest.raises(Terminated, match="SIGTERM from the scheduler"), _terminate_on_sigterm():
        try:
            send(signal.SIGTERM)
            pytest.fail("SIGTERM did not interrupt the task")
        finally:
            send(signal.SIGTERM)  # a second SIGTERM during the cleanup: ignored
            cleaned = True
    assert cleaned
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGUSR2)) == before


def test_the_requeues_sigterm_does_not_replace_submitits_exit(usr2_handler) -> None:
    """`scontrol requeue` sends SIGTERM while submitit's handler runs; submitit then exits."""

    def requeue_and_exit() -> None:
        send(signal.SIGTERM)
        raise SystemExit(-1)

    events = usr2_handler(requeue_and_exit)
    with pytest.raises(SystemExit), _terminate_on_sigterm():
        try:
            send(signal.SIGUSR2)
            pytest.fail("SIGUSR2 did not interrupt the task")
        finally:
            send(signal.SIGTERM)  # the requeue's SIGTERM, late: during the cleanup
    assert events == ["usr2"]


def test_a_time_limit_right_behind_the_warning_does_not_replace_submitits_ending(usr2_handler) -> None:
    def give_up() -> None:
        raise UncompletedJobError("Job not requeued because: timed-out too many times.")

    usr2_handler(give_up)
    with pytest.raises(UncompletedJobError), _terminate_on_sigterm():
        try:
            send(signal.SIGUSR2)
        finally:
            send(signal.SIGTERM)


def test_a_swallowed_ending_leaves_the_task_stoppable(usr2_handler, monkeypatch) -> None:
    """An UncompletedJobError lost in code that catches every Exception: the task computes on,
    and the time limit's SIGTERM (after the grace period) still stops it."""

    def give_up() -> None:
        raise UncompletedJobError("Job not requeued because: timed-out too many times.")

    usr2_handler(give_up)
    monkeypatch.setattr(launch, "ENDING_GRACE_S", 0.0)
    with pytest.raises(Terminated), _terminate_on_sigterm():
        try:
            send(signal.SIGUSR2)
        except Exception:  # a library swallowing it
            pass
        send(signal.SIGTERM)
        pytest.fail("SIGTERM did not stop the task")


def test_a_failed_requeue_is_no_ending(usr2_handler) -> None:
    """submitit's handler failing (scontrol unreachable) ends nothing: SIGTERM still stops the task."""

    def failed_requeue() -> None:
        raise subprocess.CalledProcessError(1, ["scontrol", "requeue"])

    usr2_handler(failed_requeue)
    with pytest.raises(Terminated), _terminate_on_sigterm():
        with pytest.raises(subprocess.CalledProcessError):
            send(signal.SIGUSR2)
        send(signal.SIGTERM)
        pytest.fail("SIGTERM did not stop the task")


def test_a_warning_after_terminated_does_not_run_submitits_handler(usr2_handler) -> None:
    events = usr2_handler(lambda: None)
    with pytest.raises(Terminated), _terminate_on_sigterm():
        try:
            send(signal.SIGTERM)
        finally:
            send(signal.SIGUSR2)  # during the cleanup: submitit must not requeue or raise now
    assert events == []


def test_without_a_usr2_handler_its_default_is_left_alone() -> None:
    previous = signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    try:
        with _terminate_on_sigterm():
            assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGUSR2, previous)
