"""Kill your sync with ``kill -9`` again and again, resume it each time, and see that it still ends right.

A resumable sync is only as good as its worst moment to die: between the destination's commit and the
checkpoint's, in the middle of a page, during a retry wait. ``crash_loop`` runs your program as you would
(a command line), sends it SIGKILL at random moments, resumes it with the flag you name, and repeats until
it has been killed ``kills`` times; then it lets it run to the end and hands back what it saw::

    from syncpoint.testing.crashloop import crash_loop

    report = crash_loop([sys.executable, "my_sync.py", "--db", db], resume=["--resume"], kills=5)
    assert report.completed and report.kills == 5
    assert rows(db) == expected            # nothing lost, nothing twice: your assertion about your data

Random moments find the common windows; the rare ones need aiming. Mark them in your program with
``crash_point("after-write")``: it does nothing, unless ``crash_loop`` (given ``points=["after-write"]``)
chose that point for this attempt, in which case the process kills itself with SIGKILL the n-th time it
gets there (n from 1 to 3). The choice travels in the ``SYNCPOINT_CRASH_POINT`` environment variable, so a
``crash_point`` left in production code costs one dictionary lookup.

A kill can land after your run's last commit: ``--resume`` then finds the run completed and starts a new
one, which does the work again. Give the run a key (``dataclasses.replace(options, key=...)`` or
``job.run(key=...)``): a completed keyed run is reopened and finds nothing left to do.

POSIX only (SIGKILL). Each attempt runs in its own session, and the kill takes the whole process group, as
a power cut or a killed container takes your program's children along with it.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["ENV", "KILLED", "Attempt", "CrashLoopReport", "crash_loop", "crash_point"]

ENV = "SYNCPOINT_CRASH_POINT"
"""``NAME:N``: the attempt's ``crash_point(NAME)`` kills the process the N-th time it is reached."""

KILLED = -signal.SIGKILL
"""A ``subprocess`` return code: ended by SIGKILL."""

_reached: dict[str, int] = {}


def crash_point(name: str) -> None:
    """A moment worth dying at: SIGKILL this process here if ``crash_loop`` chose this point for this attempt
    (``SYNCPOINT_CRASH_POINT=NAME:N``, the N-th time it is reached); otherwise nothing."""
    chosen = os.environ.get(ENV)
    if not chosen:
        return
    point, _, nth = chosen.rpartition(":")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if str(_reached[name]) == nth:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Attempt:
    """One start of the program: its command line, how it ended, and what it printed (stdout and stderr)."""

    number: int
    args: tuple[str, ...]
    exit_code: int
    """The return code; ``KILLED`` (-9) when SIGKILL ended it."""
    aimed_at: str
    """``"random"`` (killed after ``delay`` seconds, unless it ended first), ``"point NAME#N"`` (told to kill
    itself at that ``crash_point``), or ``"none"`` (left to run to the end)."""
    seconds: float
    output: str

    @property
    def killed(self) -> bool:
        return self.exit_code == KILLED


@dataclass(frozen=True)
class CrashLoopReport:
    """What ``crash_loop`` saw, attempt by attempt."""

    attempts: tuple[Attempt, ...]
    seconds: float

    @property
    def kills(self) -> int:
        return sum(attempt.killed for attempt in self.attempts)

    @property
    def exit_codes(self) -> list[int]:
        return [attempt.exit_code for attempt in self.attempts]

    @property
    def completed(self) -> bool:
        """The last attempt exited 0."""
        return bool(self.attempts) and self.attempts[-1].exit_code == 0

    def summary(self) -> str:
        """One line per attempt, and the last attempt's output when it did not complete: for a failed assert."""
        lines = [f"attempt {a.number}: exit {a.exit_code} after {a.seconds:.2f} s (kill aimed: {a.aimed_at})"
                 for a in self.attempts]
        if self.attempts and not self.completed:
            lines.append("its output:\n" + self.attempts[-1].output[-4000:])
        return "\n".join(lines)


def crash_loop(
    command: Sequence[str],
    *,
    resume: Sequence[str] = ("--resume",),
    kills: int = 5,
    points: Collection[str] = (),
    delay: tuple[float, float] = (0.2, 2.0),
    seed: int | str = 0,
    timeout: float = 300.0,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> CrashLoopReport:
    """Run ``command``, SIGKILL it ``kills`` times, resume it (``command + resume``) until an attempt exits
    without being killed; what it saw.

    Each attempt that is to be killed is aimed either at a random moment, ``uniform(*delay)`` seconds after
    it started, or (half of them, when ``points`` are given) at one of ``points``, the ``crash_point`` your
    program reaches, on its 1st to 3rd passage. An attempt that ends before its kill simply ends; after
    ``kills`` kills the program runs to its end. The loop stops at the first attempt that exits 0 or with
    any code other than a SIGKILL's (``report.completed`` tells which). ``seed`` makes the choice of moments
    and points repeatable; ``env`` is the environment (default: this process's); an attempt that runs longer
    than ``timeout`` seconds is killed and raises ``TimeoutError``.
    """
    if kills < 0 or not 0 <= delay[0] <= delay[1]:
        raise ValueError(f"kills must be >= 0 and delay a (low, high) pair of seconds, got {kills}, {delay}")
    rng = random.Random(seed)
    started = time.monotonic()
    attempts: list[Attempt] = []
    base_env = {k: v for k, v in (os.environ if env is None else env).items() if k != ENV}
    while True:
        args = tuple(command) if not attempts else (*command, *resume)
        aim = "none"
        extra: dict[str, str] = {}
        wait: float | None = None
        if sum(a.killed for a in attempts) < kills:
            if points and rng.random() < 0.5:
                point, nth = rng.choice(sorted(points)), rng.randint(1, 3)
                aim, extra = f"point {point}#{nth}", {ENV: f"{point}:{nth}"}
            else:
                aim, wait = "random", rng.uniform(*delay)
        attempt = _attempt(len(attempts) + 1, args, aim, wait, {**base_env, **extra}, cwd, timeout)
        attempts.append(attempt)
        if not attempt.killed:
            return CrashLoopReport(tuple(attempts), time.monotonic() - started)


def _attempt(number: int, args: tuple[str, ...], aim: str, wait: float | None, env: dict[str, str],
             cwd: str | os.PathLike[str] | None, timeout: float) -> Attempt:
    """One start; its output goes to a file, so a chatty program can never block on a full pipe."""
    with tempfile.TemporaryFile() as out:
        began = time.monotonic()
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=cwd, start_new_session=True)
        try:
            if wait is not None:
                try:
                    proc.wait(wait)
                except subprocess.TimeoutExpired:
                    _kill(proc)
            try:
                code = proc.wait(max(0.0, timeout - (time.monotonic() - began)))
            except subprocess.TimeoutExpired:
                _kill(proc)
                proc.wait()
                raise TimeoutError(f"attempt {number} ran longer than {timeout:g} s: {' '.join(args)}") from None
        except BaseException:
            if proc.poll() is None:
                _kill(proc)
                proc.wait()
            raise
        seconds = time.monotonic() - began
        out.seek(0)
        output = out.read().decode(errors="replace")
    return Attempt(number, args, code, aim, seconds, output)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the attempt's whole process group (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError):  # it ended on its own a moment ago
        os.killpg(proc.pid, signal.SIGKILL)
