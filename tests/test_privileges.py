"""Live capture gives up root once the interface is open (`tcplife.capture.privileges`),
as ``tcpdump -Z`` does: it becomes ``--user`` (default nobody), or, where that user could
not read Python's installation (so the run's later imports would fail), stays root
without a single capability; in both cases nothing can regain privileges
(``no_new_privs``). Checked in the kernel's own words: /proc/PID/status."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tcplife.capture import privileges
from tcplife.capture.privileges import PrivilegeError, plan, unreadable_for

from needs import require_root

REPO = Path(__file__).resolve().parents[1]
NOBODY = pwd.getpwnam("nobody")


def _status(pid: int | str = "self") -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_may_read_follows_the_mode_bits() -> None:
    require_root()
    base = Path(tempfile.mkdtemp(prefix="tcplife-privileges-", dir="/tmp"))
    try:
        _check_modes(base)
    finally:
        shutil.rmtree(base)


def _check_modes(base: Path) -> None:
    top = base / "top"
    inner = top / "inner"
    inner.mkdir(parents=True)
    for folder in (base, top, inner):
        os.chmod(folder, 0o755)
    uid, gids = NOBODY.pw_uid, {NOBODY.pw_gid}
    assert privileges._may_read(str(inner), uid, gids)
    os.chmod(top, 0o700)  # owned by root: nobody may not enter it, nor what is below
    assert not privileges._may_read(str(inner), uid, gids)
    os.chmod(top, 0o711)  # may enter, not list: enough to reach inner
    assert privileges._may_read(str(inner), uid, gids)
    assert not privileges._may_read(str(top), uid, gids)
    os.chown(top, -1, NOBODY.pw_gid)
    os.chmod(top, 0o750)  # the group's bits apply to a member of the group
    assert privileges._may_read(str(inner), uid, gids)


def test_the_plan_is_settled_before_anything_is_opened() -> None:
    require_root()
    assert plan("root").keep and plan(None).keep
    with pytest.raises(PrivilegeError, match="no such user"):
        plan("no-such-user-here")
    blocked = unreadable_for(NOBODY.pw_uid, {NOBODY.pw_gid, *os.getgrouplist(
        "nobody", NOBODY.pw_gid)})
    default = plan("nobody", chosen=False)
    if blocked is None:  # Python's installation is readable: become nobody either way
        assert plan("nobody").become == default.become == "nobody"
    else:  # e.g. a pyenv under /root: named, an error; by default, stay root
        with pytest.raises(PrivilegeError, match="cannot read"):
            plan("nobody")
        assert default.become is None and blocked in (default.blocked or "")


def _run(code: str) -> dict[str, str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


def test_becoming_nobody_clears_every_capability(tmp_path: Path) -> None:
    require_root()
    written = tmp_path / "capture.pcap"
    written.write_bytes(b"")
    got = _run(f"""
import os
from tcplife.capture.privileges import Plan, drop_privileges
d = drop_privileges(Plan("nobody", {NOBODY.pw_uid}, {NOBODY.pw_gid}), files=({str(written)!r},))
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
print("uid=" + status["Uid"].split()[1])
print("caps=" + status["CapEff"].strip() + "/" + status["CapPrm"].strip())
print("nnp=" + status["NoNewPrivs"].strip())
print("groups=" + status["Groups"].strip())
try:
    os.setuid(0)
    print("back=yes")
except PermissionError:
    print("back=no")
print("said=" + d.sentence())
""")
    assert got["uid"] == str(NOBODY.pw_uid)
    assert got["caps"] == "0000000000000000/0000000000000000"
    assert got["nnp"] == "1" and got["groups"] == "" and got["back"] == "no"
    assert got["said"].startswith("running as nobody")
    assert written.stat().st_uid == NOBODY.pw_uid  # the capture file is the user's


def test_staying_root_gives_up_every_capability() -> None:
    require_root()
    got = _run("""
from tcplife.capture.privileges import Plan, drop_privileges
d = drop_privileges(Plan(None, 0, 0, blocked="nobody cannot read /x"))
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
print("uid=" + status["Uid"].split()[1])
print("caps=" + status["CapEff"].strip())
print("said=" + d.sentence())
try:
    open("/proc/1/environ").read()  # another process's secrets: CAP_SYS_PTRACE gone
    print("peek=yes")
except PermissionError:
    print("peek=no")
""")
    assert got["uid"] == "0" and got["caps"] == "0000000000000000"
    assert got["peek"] == "no"
    assert "still running as root" in got["said"]


def test_a_live_run_gives_up_root_once_the_interface_is_open(tmp_path: Path) -> None:
    require_root()
    out = tmp_path / "out.jsonl"
    with out.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "tcplife", "live", "-i", "lo",
                                 "--duration", "4", "--format", "jsonl"], cwd=tmp_path,
                                stdout=fh, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONPATH=str(REPO)))
        try:
            deadline = time.monotonic() + 30
            status = _status(proc.pid)
            while status["CapEff"] != "0000000000000000" and time.monotonic() < deadline \
                    and proc.poll() is None:
                time.sleep(0.1)
                status = _status(proc.pid)
            assert status["CapEff"] == "0000000000000000", status
            assert status["NoNewPrivs"] == "1"
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    blocked = unreadable_for(NOBODY.pw_uid, {NOBODY.pw_gid})
    if blocked is None:
        assert status["Uid"].split()[1] == str(NOBODY.pw_uid)
        assert "running as nobody" in err
    else:
        assert status["Uid"].split()[1] == "0" and "still running as root" in err
    assert '"type": "stopped"' in out.read_text()  # the run went on to its end
