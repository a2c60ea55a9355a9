"""Giving up privileges once the interface is open, as ``tcpdump -Z`` does.

Owns: `plan` (decided before the interface is opened) and `drop_privileges` (carried out
once it is). Live capture needs root or CAP_NET_RAW only to open the
interface; everything after (parsing hostile packets, in Python or in the compiled engine)
runs better without. As root, the process becomes ``user`` (its primary group, no
supplementary groups); setuid clears every capability. Without root but with capabilities
(``setcap cap_net_raw,cap_net_admin=eip`` on the interpreter), it clears them all
(capset). Either way ``no_new_privs`` is set, so nothing run later regains them. The open
interface and files keep working: the kernel checked the privileges when they were opened.

Knows nothing of packets; Linux only (elsewhere it does nothing and says so).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

#: the user a root live capture becomes by default (``--user``); "root" keeps root
DEFAULT_USER = "nobody"

_PR_SET_NO_NEW_PRIVS = 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91, "i686": 185, "armv7l": 185}


class PrivilegeError(RuntimeError):
    """The privileges could not be given up (the capture must not go on)."""


@dataclass(frozen=True)
class Dropped:
    """What `drop_privileges` did, for a line on stderr."""

    user: str | None  #: the user the process became (None: it stayed who it was)
    uid: int
    gid: int
    capabilities_cleared: bool
    #: why it stayed root (the default user could not read Python's installation)
    blocked: str | None = None

    def sentence(self) -> str:
        if self.blocked is not None:
            what = "gave up every capability" if self.capabilities_cleared else \
                "kept its capabilities"
            return (f"still running as root ({self.blocked}: pass --user NAME of a user "
                    f"who can); {what} now that the interface is open")
        if self.user is not None:
            return (f"running as {self.user} (uid {self.uid}, gid {self.gid}) now that the "
                    "interface is open")
        if self.capabilities_cleared:
            return "capabilities given up now that the interface is open"
        return "kept the privileges it was started with (--user root)"


def _libc() -> Any:
    import ctypes.util  # (only when a capture starts: not with the command line)

    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _no_new_privs(libc: Any) -> None:
    import ctypes

    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(err)}")


def _clear_capabilities(libc: Any) -> bool:
    """Clear the effective, permitted and inheritable capability sets; False where the
    system call is not known for this machine."""
    import ctypes

    number = _SYS_CAPSET.get(os.uname().machine)
    if number is None:
        return False

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    header = Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (Data * 2)()  # all zero: no capability left
    if libc.syscall(number, ctypes.byref(header), ctypes.byref(data)) != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(f"capset failed: {os.strerror(err)}")
    return True


def _may_read(path: str, uid: int, gids: set[int]) -> bool:
    """Could ``uid`` (in ``gids``) list and enter ``path`` and every folder above it?"""
    parts = os.path.abspath(path).split(os.sep)
    for i in range(1, len(parts) + 1):
        here = os.sep + os.path.join(*parts[1:i]) if i > 1 else os.sep
        try:
            st = os.stat(here)
        except OSError:
            return False
        need = 0o5 if i == len(parts) else 0o1  # r-x for the folder itself, x above it
        if st.st_uid == uid:
            bits = st.st_mode >> 6
        elif st.st_gid in gids:
            bits = st.st_mode >> 3
        else:
            bits = st.st_mode
        if bits & need != need:
            return False
    return True


def unreadable_for(uid: int, gids: set[int]) -> str | None:
    """The first folder of Python's installation (the import path, tcplife's own) that
    ``uid`` could not read, or None: a process that became ``uid`` could no longer import
    what it imports lazily (a pyenv under /root, mode 700)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tcplife/
    folders = [package,
               *(p for p in sys.path if p and os.path.isdir(p))]
    for folder in folders:
        if not _may_read(folder, uid, gids):
            return folder
    return None


@dataclass(frozen=True)
class Plan:
    """What `drop_privileges` will do, decided before the interface is opened (so that a
    user who cannot be used is an error before anything is opened or written)."""

    become: str | None  #: the user to become (None: stay who it is)
    uid: int
    gid: int
    #: why it stays root (the default user could not read Python's installation)
    blocked: str | None = None
    keep: bool = False  #: change nothing (--user root, or not Linux)


def plan(user: str | None = DEFAULT_USER, *, chosen: bool = True) -> Plan:
    """Decide how to give up privileges as ``user``. Where ``user`` could not read
    Python's installation (`unreadable_for`), becoming it would break the run's later
    imports: with ``chosen`` (the user named it) that is a `PrivilegeError`; else (the
    default user) the process will stay root but give up every capability, and say so."""
    uid, gid = os.getuid(), os.getgid()
    if not sys.platform.startswith("linux") or (user in (None, "root")
                                                and os.geteuid() == 0):
        return Plan(None, uid, gid, keep=True)
    if os.geteuid() != 0:
        return Plan(None, uid, gid)  # capabilities only
    import pwd

    try:
        entry = pwd.getpwnam(user)  # type: ignore[arg-type]
    except KeyError:
        raise PrivilegeError(f"no such user {user!r} to run as (--user)") from None
    blocked = unreadable_for(entry.pw_uid, {entry.pw_gid, *os.getgrouplist(
        entry.pw_name, entry.pw_gid)})
    if blocked is None:
        return Plan(user, entry.pw_uid, entry.pw_gid)
    if chosen:
        raise PrivilegeError(
            f"{user} cannot read {blocked} (Python's installation), so tcplife could not "
            f"go on as {user}: choose a user who can (--user), or --user root to keep root")
    return Plan(None, uid, gid, blocked=f"{user} cannot read {blocked}")


def drop_privileges(how: Plan, files: tuple[str, ...] = ()) -> Dropped:
    """Carry out `plan`'s decision: become its user (``files``, written by the capture
    and opened already, are handed to that user), or give up every capability."""
    if how.keep:
        return Dropped(None, how.uid, how.gid, False)
    libc = _libc()
    if how.become is None:
        cleared = _clear_capabilities(libc)
        _no_new_privs(libc)
        return Dropped(None, how.uid, how.gid, cleared, blocked=how.blocked)
    for path in files:
        os.chown(path, how.uid, how.gid)
    try:
        os.setgroups([])
        os.setgid(how.gid)
        os.setuid(how.uid)
    except OSError as exc:
        raise PrivilegeError(f"cannot become {how.become}: {exc.strerror}") from None
    if os.getuid() != how.uid or os.geteuid() != how.uid:
        raise PrivilegeError(f"still uid {os.geteuid()} after becoming {how.become}")
    _no_new_privs(libc)
    return Dropped(how.become, how.uid, how.gid, True)
