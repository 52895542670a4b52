"""``syncpoint.testing.crashloop``: what a user relies on when they crash-loop their own program — it is killed
as often as asked, resumed with their flag, run to its end, and the report says what happened."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from syncpoint.testing.crashloop import ENV, KILLED, crash_loop

COUNTER = textwrap.dedent("""
    import os, pathlib, sys, time
    state, log = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    with log.open("a") as out:
        out.write(" ".join(sys.argv[3:]) + "\\n")
    n = int(state.read_text()) if state.exists() else 0
    while n < 40:  # a resumable job: its progress survives a kill (written aside, then renamed)
        time.sleep(0.05)
        n += 1
        state.with_suffix(".tmp").write_text(str(n))
        os.replace(state.with_suffix(".tmp"), state)
    print("done at", n)
""")


def program(tmp_path: Path, source: str) -> list[str]:
    path = tmp_path / "program.py"
    path.write_text(source)
    return [sys.executable, str(path)]


def test_it_kills_as_often_as_asked_then_resumes_to_the_end(tmp_path: Path) -> None:
    command = [*program(tmp_path, COUNTER), str(tmp_path / "state"), str(tmp_path / "log")]
    report = crash_loop(command, resume=["--resume", "--fast"], kills=3, delay=(0.15, 0.3), seed=2)
    assert report.exit_codes == [KILLED, KILLED, KILLED, 0], report.summary()
    assert report.completed and report.kills == 3
    assert [a.aimed_at for a in report.attempts] == ["random", "random", "random", "none"]
    assert (tmp_path / "state").read_text() == "40" and "done at 40" in report.attempts[-1].output
    assert (tmp_path / "log").read_text().splitlines() == ["", "--resume --fast", "--resume --fast",
                                                           "--resume --fast"]
    assert report.seconds >= sum(a.seconds for a in report.attempts) > 0


def test_a_crash_point_kills_the_program_there_on_the_chosen_passage(tmp_path: Path) -> None:
    marked = program(tmp_path, textwrap.dedent("""
        from syncpoint.testing.crashloop import crash_point
        for n in range(1, 4):
            print("before", n, flush=True)
            crash_point("other")
            crash_point("here")
        print("end")
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    plain = subprocess.run(marked, capture_output=True, text=True, env=env, timeout=60)
    assert plain.returncode == 0 and "end" in plain.stdout  # without the variable, the points do nothing
    aimed = subprocess.run(marked, capture_output=True, text=True, env={**env, ENV: "here:2"}, timeout=60)
    assert aimed.returncode == KILLED and aimed.stdout.split() == ["before", "1", "before", "2"]


def test_the_loop_aims_at_the_points_it_is_given(tmp_path: Path) -> None:
    """Half the kills, by the seed's draw, go to a point; an attempt aimed there dies there (it passes the
    point more than three times per run), and one aimed at a random moment longer than the run is not killed."""
    marked = program(tmp_path, textwrap.dedent("""
        import sys
        from syncpoint.testing.crashloop import crash_point
        for n in range(5):
            crash_point("page-written")
        print("attempt ran with", sys.argv[1:])
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    report = crash_loop(marked, kills=2, points=["page-written"], delay=(30, 30), seed=1, env=env)
    aims = [a.aimed_at for a in report.attempts]
    assert aims == ["point page-written#2", "point page-written#2", "none"], report.summary()
    assert report.exit_codes == [KILLED, KILLED, 0] and "['--resume']" in report.attempts[-1].output
    random_first = crash_loop(marked, kills=2, points=["page-written"], delay=(30, 30), seed=0, env=env)
    assert random_first.attempts[0].aimed_at == "random" and random_first.exit_codes == [0]  # ended first


def test_a_failure_ends_the_loop_and_the_report_shows_its_output(tmp_path: Path) -> None:
    failing = program(tmp_path, "import sys\nprint('the store is gone')\nsys.exit(1)\n")
    report = crash_loop(failing, kills=3, delay=(5, 5))
    assert report.exit_codes == [1] and not report.completed and report.kills == 0
    assert "exit 1" in report.summary() and "the store is gone" in report.summary()


def test_an_attempt_that_hangs_is_killed_and_raises(tmp_path: Path) -> None:
    hanging = program(tmp_path, "import time\ntime.sleep(60)\n")
    with pytest.raises(TimeoutError, match="attempt 1 ran longer than 1 s"):
        crash_loop(hanging, kills=0, timeout=1)


def test_the_kill_takes_the_programs_children_too(tmp_path: Path) -> None:
    """kill -9 as a crash does it: the program's whole process group, not only its first process."""
    pid_file = tmp_path / "child.pid"
    parent = program(tmp_path, textwrap.dedent(f"""
        import subprocess, sys, time
        if "--resume" not in sys.argv:
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            open({str(pid_file)!r}, "w").write(str(child.pid))
            time.sleep(60)
    """))
    report = crash_loop(parent, kills=1, delay=(2.0, 2.0))
    assert report.exit_codes == [KILLED, 0], report.summary()
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while alive(child):
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the program's child outlived the kill")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Running, or stopped: not gone and not a zombie waiting for a parent that does not reap it."""
    if not Path("/proc/self/stat").exists():  # no /proc: ask the kernel (a zombie counts as alive here)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
