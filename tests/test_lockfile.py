"""facedeg.build.lockfile: one process per folder; the lock dies with its process; its file is removed on release."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from facedeg.build.lockfile import FolderLock, LockBusy

HOLD = """
import sys, time
from facedeg.build.lockfile import FolderLock
lock = FolderLock(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


def test_busy_names_the_holder_and_release_removes_the_file(tmp_path):
    path = tmp_path / ".lock"
    with FolderLock(path):
        with pytest.raises(LockBusy) as busy:
            FolderLock(path)
        assert busy.value.holder == f"pid {os.getpid()} on {os.uname().nodename}"
        assert path.is_file()
    assert not path.exists()
    FolderLock(path).release()  # free again


def test_a_killed_holder_leaves_the_lock_free(tmp_path):
    path = tmp_path / ".lock"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy, match=f"pid {proc.pid} on "):
            FolderLock(path)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert path.exists(), "a killed holder leaves its file behind..."
    with FolderLock(path) as lock:  # ...but not its lock: taken at once
        assert lock.path == path
    assert not path.exists()
