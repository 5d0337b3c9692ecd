"""LesionSegLib.process with real subprocesses: progress parsing, errors, and Cancel killing the whole tree."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from LesionSegLib import process


def test_parse_progress_and_error_lines():
    assert process.parse_progress("PROGRESS 0.5000 segmenting") == (0.5, "segmenting")
    assert process.parse_progress("PROGRESS 1.7 done") == (1.0, "done")
    assert process.parse_progress("PROGRESS -0.2") == (0.0, "")
    assert process.parse_progress("PROGRESS nan x") is None
    assert process.parse_progress("PROGRESS abc x") is None
    assert process.parse_progress("progress 0.5 x") is None
    assert process.parse_error("error: the box lies outside") == "the box lies outside"
    assert process.parse_error("warning: clipped") is None


def test_backend_command_shape():
    cmd = process.backend_command(["predict", "classical-box", Path("ct.nii.gz")], python="/x/PythonSlicer")
    assert cmd == ["/x/PythonSlicer", "-m", "lesionseg.cli", "--progress", "lines", "predict", "classical-box",
                   "ct.nii.gz"]
    assert process.backend_command([])[0] in (process.python_executable(),)


SCRIPT_OK = r"""
import sys
for i, msg in enumerate(["loading", "segmenting", "done"]):
    sys.stderr.write(f"PROGRESS {i / 2:.4f} {msg}\n"); sys.stderr.flush()
print("result.nii.gz: 10 lesion voxels", flush=True)
sys.stderr.write("warning: box clipped\n")
"""


def test_progress_and_output_reach_callbacks():
    progress, log = [], []
    runner = process.BackgroundProcess([sys.executable, "-c", SCRIPT_OK],
                                       lambda fraction, message: progress.append((fraction, message)),
                                       log.append).start()
    result = runner.wait(timeout=30)
    assert result.ok and result.returncode == 0 and result.error is None
    assert progress == [(0.0, "loading"), (0.5, "segmenting"), (1.0, "done")]
    assert "result.nii.gz: 10 lesion voxels" in result.output and "warning: box clipped" in result.output
    assert log == result.output
    assert result.message() == "finished"
    assert runner.poll() is result


def test_error_line_and_exit_status():
    script = "import sys; sys.stderr.write('error: the box lies entirely outside the image\\n'); sys.exit(2)"
    result = process.BackgroundProcess([sys.executable, "-c", script]).start().wait(timeout=30)
    assert not result.ok and result.returncode == 2
    assert result.error == "the box lies entirely outside the image" == result.message()


def test_real_backend_cli_error_is_parsed():
    cmd = process.backend_command(["no-such-command"], python=sys.executable)
    result = process.BackgroundProcess(cmd).start().wait(timeout=60)
    assert result.returncode == 2
    assert result.error.startswith("argument COMMAND: invalid choice: 'no-such-command'")


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():  # a zombie (state Z) waiting for its reaper is dead
        return stat.read_text().split(")")[-1].split()[0] != "Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


SCRIPT_TREE = r"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(f"CHILD {child.pid}", flush=True)
sys.stderr.write("PROGRESS 0.1 working\n"); sys.stderr.flush()
time.sleep(120)
"""


@pytest.mark.skipif(os.name == "nt", reason="POSIX process-group test")
def test_cancel_kills_the_whole_process_tree():
    runner = process.BackgroundProcess([sys.executable, "-c", SCRIPT_TREE]).start()
    child = None
    deadline = time.monotonic() + 30
    while child is None and time.monotonic() < deadline:
        runner.poll()
        lines = [line for line in runner.output if line.startswith("CHILD ")]
        child = int(lines[0].split()[1]) if lines else None
        time.sleep(0.02)
    assert child is not None and _alive(child) and _alive(runner.pid)
    runner.cancel(grace=2.0)
    result = runner.wait(timeout=10)
    assert result.cancelled and not result.ok and result.message() == "cancelled"
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child) and not _alive(runner.pid)
    runner.cancel()  # already ended: no-op


SCRIPT_IGNORES_TERM = r"""
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("READY", flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(os.name == "nt", reason="POSIX signal test")
def test_cancel_returns_at_once_and_poll_finishes_the_kill():
    """Cancel runs on the GUI thread: it must not wait for the grace period (it used to block up to 2 s). A child
    that ignores SIGTERM is still alive right after cancel(); polling SIGKILLs it once the grace period is over."""
    runner = process.BackgroundProcess([sys.executable, "-c", SCRIPT_IGNORES_TERM]).start()
    deadline = time.monotonic() + 30
    while "READY" not in runner.output and time.monotonic() < deadline:
        runner.poll()
        time.sleep(0.02)
    assert "READY" in runner.output
    runner.cancel(grace=5.0)
    assert _alive(runner.pid) and runner.poll() is None  # cancel did not wait for the child to end
    runner.cancel(grace=5.0)  # a second click changes nothing
    result = runner.wait(timeout=30)
    assert result.cancelled and not _alive(runner.pid)


def test_wait_timeout_kills_and_raises():
    runner = process.BackgroundProcess([sys.executable, "-c", "import time; time.sleep(60)"]).start()
    idle_calls = []
    with pytest.raises(TimeoutError):
        runner.wait(timeout=0.3, idle=lambda: idle_calls.append(1))
    assert idle_calls and runner.poll() is not None and runner.poll().cancelled


def test_misuse_raises():
    with pytest.raises(ValueError):
        process.BackgroundProcess([])
    runner = process.BackgroundProcess([sys.executable, "-c", "pass"])
    with pytest.raises(RuntimeError):
        runner.poll()
    runner.start().wait(timeout=30)
    with pytest.raises(RuntimeError):
        runner.start()


SCRIPT_ESCAPES = r"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
print(f"CHILD {child.pid}", flush=True)
"""


@pytest.mark.skipif(os.name == "nt", reason="POSIX sessions")
def test_descendant_holding_the_pipe_does_not_block_the_result():
    runner = process.BackgroundProcess([sys.executable, "-c", SCRIPT_ESCAPES]).start()
    runner.PIPE_GRACE = 0.2
    try:
        result = runner.wait(timeout=20)
        assert result.ok and result.output[0].startswith("CHILD ")
    finally:
        for line in runner.output:
            if line.startswith("CHILD "):
                os.kill(int(line.split()[1]), 9)
