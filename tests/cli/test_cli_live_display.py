"""The live progress display in a real pseudo-terminal 80 columns wide, read back as a screen.

The job (``apps/slow_job.py``) runs in a child process on a pty; what it writes is replayed through a
small terminal emulator (``Screen``: text, CR/LF, auto-wrap at the width, cursor up/down, erase line), so
the assertions are about what a person would see: no line wider than 80 columns, the signal handler's
message on a line of its own, and one final frame that says how the run ended, with nothing "running".
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from cli_helpers import ROOT, app, clean_env

from syncpoint.model import TaskRecord, TaskStatus
from syncpoint.progress_numbers import Totals, describe
from syncpoint.progress_view import Frame, FrameData

WIDTH = 80
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")
CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
OSC = re.compile(r"\x1b\][^\x07]*\x07")


class Screen:
    """Enough of a VT100 for what rich writes: printable text with auto-wrap, CR, LF, cursor up/down,
    erase in line / below; colours and cursor visibility are ignored."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.lines: list[list[str]] = [[]]
        self.row = self.col = 0
        self.wrapped: set[int] = set()  # rows whose text went on, by auto-wrap, on the next row

    def feed(self, text: str) -> None:
        text = OSC.sub("", text)
        i = 0
        while i < len(text):
            match = CSI.match(text, i)
            if match:
                self._csi(match.group(1), match.group(2))
                i = match.end()
                continue
            char = text[i]
            i += 1
            if char == "\r":
                self.col = 0
            elif char == "\n":
                self._down(1)
            elif char == "\x1b":
                continue
            elif char >= " ":
                if self.col >= self.width:  # auto-wrap, as a terminal does on the next character
                    self.wrapped.add(self.row)
                    self._down(1)
                    self.col = 0
                line = self._line()
                line.extend(" " * (self.col - len(line)))
                if self.col < len(line):
                    line[self.col] = char
                else:
                    line.append(char)
                self.col += 1

    def _line(self) -> list[str]:
        while len(self.lines) <= self.row:
            self.lines.append([])
        return self.lines[self.row]

    def _down(self, n: int) -> None:
        self.row += n
        self._line()

    def _csi(self, params: str, command: str) -> None:
        if params.startswith("?"):
            return
        n = int(params.split(";")[0]) if params.split(";")[0] else None
        if command == "A":
            self.row = max(0, self.row - (n or 1))
        elif command == "B":
            self._down(n or 1)
        elif command == "G":
            self.col = (n or 1) - 1
        elif command == "K":
            line = self._line()
            if n == 2:
                line.clear()
                self.wrapped.discard(self.row)
            elif not n:
                del line[self.col:]
        elif command == "J" and not n:
            del self._line()[self.col:]
            del self.lines[self.row + 1:]

    def text(self) -> list[str]:
        return ["".join(line).rstrip() for line in self.lines]


class PtyJob:
    """``slow_job.py`` on a pty of ``WIDTH`` columns; waits on what it printed, never on time alone."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, WIDTH, 0, 0))
        env = clean_env(TERM="xterm-256color", COLUMNS=str(WIDTH), LINES="40")
        for name in ("NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR", "CI"):
            env.pop(name, None)
        self.proc = subprocess.Popen(
            [sys.executable, app("slow_job.py"), "--store", f"sqlite:{tmp_path / 'cp.db'}", *args],
            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT, close_fds=True,
        )
        os.close(slave)
        self.raw = ""

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not data:
            return False
        self.raw += data.decode("utf-8", "replace")
        return True

    def wait_for(self, pattern: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.raw):
            if time.monotonic() > deadline or not self._read(min(1.0, max(0.0, deadline - time.monotonic()))):
                self.proc.kill()
                pytest.fail(f"no {pattern!r} on the terminal; it shows: {self.raw[-2000:]!r}")

    def finish(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(1.0):
            pass
        self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        os.close(self.master)
        return self.proc.returncode

    def screen(self) -> list[str]:
        """The lines on the screen at the end; fails if anything but a log line was wider than the screen
        (a log line is a record of its own, wrapped by the terminal; a display line must fit)."""
        screen = Screen(WIDTH)
        screen.feed(self.raw)
        lines = screen.text()
        too_wide = []
        for row in sorted(screen.wrapped):
            start = row
            while start - 1 in screen.wrapped:  # back to the row the wrapped line began on
                start -= 1
            if start < len(lines) and not LOG_LINE.match(lines[start]):
                too_wide.append(lines[start])
        assert not too_wide, too_wide
        return lines


def test_interrupted_display_fits_and_ends_with_one_final_frame(tmp_path: Path) -> None:
    job = PtyJob(tmp_path, "--items", "400", "--delay", "0.02", "--fail-every", "7", "--progress-interval", "0.2")
    job.wait_for(r"records\s+running.*rec/s")  # a task row: the run is under way
    job.proc.send_signal(signal.SIGINT)
    assert job.finish() == 130
    lines = job.screen()  # fails if a display line was wider than the terminal
    shown = "\n".join(lines)
    # the handler's message is a line of its own, not glued to a bar
    [message] = [line for line in lines if "SIGINT received" in line]
    assert message.startswith("syncpoint: SIGINT received"), shown
    # one final frame, saying how the run ended; nothing left "running" or with an ETA
    finals = [i for i, line in enumerate(lines) if line.startswith("slow interrupted (stopped by SIGINT): ")]
    assert len(finals) == 1, shown
    assert re.match(r"records\s+stopped\s", lines[finals[0] + 1]), shown
    assert not [line for line in lines if "running" in line or "ETA" in line], shown
    assert plain(job.raw).count("slow interrupted") == 1  # drawn once, not twice
    assert "checkpoint committed" in " ".join(lines[finals[0] + 2:])  # the run's own line, after the display


def plain(text: str) -> str:
    return OSC.sub("", CSI.sub("", text))


def test_header_and_task_rates_agree_in_every_frame(tmp_path: Path) -> None:
    job = PtyJob(tmp_path, "--items", "60", "--delay", "0.03", "--progress-interval", "0.2")
    assert job.finish() == 0
    text = plain(job.raw)
    frame = r"slow: \d+/60 \([\d.]+%\) · ([\d.]+) rec/s[^\n]*\r?\n\s*records\s+running[^\n]*?([\d.]+) rec/s"
    frames = re.findall(frame, text)
    assert len(frames) >= 2, text[-2000:]
    for head, row in frames:  # one task: the run's rate is the task's rate
        assert abs(float(head) - float(row)) <= 0.2 + 0.05 * float(head), frames
    lines = job.screen()  # fails if a display line was wider than the terminal
    [final] = [line for line in lines if line.startswith("slow finished: 60/60 (100.0%)")]
    assert "elapsed" in final or "rec/s" in final


def test_a_second_signal_exits_at_once_with_its_line_on_the_terminal(tmp_path: Path) -> None:
    """The run's handler ends the process at once on the second signal: its line must not stay in the
    display's pipe, and the cursor must be visible again."""
    job = PtyJob(tmp_path, "--items", "50", "--delay", "3", "--progress-interval", "0.2")
    job.wait_for(r"records\s+running")
    job.proc.send_signal(signal.SIGINT)
    job.wait_for("SIGINT received")  # printed above the display by the capture thread
    job.proc.send_signal(signal.SIGINT)
    assert job.finish() == 130
    lines = job.screen()
    assert any(line.startswith("syncpoint: second signal, exiting now") for line in lines), lines
    assert job.raw.rfind("\x1b[?25h") > job.raw.rfind("\x1b[?25l")  # the cursor is visible again


# -- frames and lines, at widths, without a terminal ----------------------------------------------------------
def rec(name: str, status: TaskStatus, *, records: int = 0, ok: int = 0, failed: int = 0,
        total: int | None = None) -> TaskRecord:
    return TaskRecord("20240101-000000-aaaaaa", name, 0, status, records=records, ok=ok, failed=failed, total=total)


def test_eta_from_the_tasks_whose_totals_are_known() -> None:
    records = [rec("known", TaskStatus.IN_PROGRESS, records=400, total=1000),
               rec("unknown", TaskStatus.IN_PROGRESS, records=50)]
    totals = Totals.of(records)
    assert totals.total is None and (totals.known_done, totals.known_total) == (400, 1000)
    line = describe("x", totals, 150.0, known_rate=100.0)
    assert line == "x: 450 done (400/1000 of known totals) · 150.0 rec/s · ETA ≥0:00:06 · tasks 0/2"


@pytest.mark.parametrize("width", [80, 100, 140])
def test_frames_never_exceed_the_width(width: int) -> None:
    from rich.console import Console

    records = [rec("a-rather-long-task-name:org/repository-with-a-long-name", TaskStatus.IN_PROGRESS, ok=123456,
                   failed=789, total=10_000_000),
               rec("short", TaskStatus.COMPLETED, records=5, total=5),
               rec("unknown", TaskStatus.IN_PROGRESS, records=999_999)]
    for outcome in (None, "interrupted (stopped by SIGTERM)"):
        console = Console(width=width, record=True, file=open(os.devnull, "w"), color_system=None)  # noqa: SIM115
        console.print(Frame(FrameData("20240101-000000-aaaaaa", "drucksachen-vorgaenge", records, 1234.5,
                                      {"unknown": 1000.0, records[0].name: 234.5}, 12.0, outcome)))
        text = console.export_text()
        lines = text.splitlines()
        assert len(lines) == 4, text
        assert all(len(line) <= width for line in lines), text
        assert "123456+789" not in text and ("789 failed" in text or width < 100)
