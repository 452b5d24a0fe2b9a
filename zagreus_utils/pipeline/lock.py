"""One writer per run folder: ``runs/<profile>/.zagreus.lock``.

``zagreus run`` holds the lock of ``runs/<profile>/`` from its first stage to the end of the report:
the per-profile stages (the plots) read every language's folders, and the environment caches
(``runs/<profile>/.cache``) are shared by the languages, so one lock per profile is the unit that
keeps two runs from writing the same files (per language would still let two runs race on the
plots stage and the caches).

The lock is a small JSON file (host, PID, start time, command line, a random token) that appears
at once, complete: it is written to a private file first and then hard-linked to the lock's name.
``link`` is atomic and fails when the name exists, also on NFS, where ``O_EXCL`` was not always
honoured (exclusive create is the fallback on file systems without hard links). A lock whose
holder is on this host and no longer alive (or whose PID now belongs to a process started later)
is stale and is taken over with a note; a lock held from another host cannot be checked from here,
so the run is refused and the message says how to remove the lock if that run is gone. The lock is
released when the ``with`` block ends, also on an exception or Ctrl-C (the CLI turns SIGTERM, e.g.
scancel, into one); a killed process leaves a stale lock that the next run on its host takes over.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import socket
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from .errors import ZagreusError

LOCK = ".zagreus.lock"
_BREAK_STALE_S = 60  # a takeover marker older than this was left by a killed process

# Locks this process holds (path -> count), so that `zagreus run` can hold the lock across the
# stages and the report while the runner, called inside, takes the same lock again.
_HELD: dict[Path, int] = {}


def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join(sys.argv), "token": secrets.token_hex(8),
            "pid_started": _process_start(os.getpid())}


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch, Linux ``/proc``), to tell a live holder
    from a new process that got its PID; None where it cannot be known."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return round(boot + ticks / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def read(path: Path) -> dict | None:
    """The holder recorded in a lock file; ``{}`` when it is unreadable; None when there is none."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _alive(holder: dict) -> bool:
    """Whether the holder (on this host) still runs: its PID exists and, where known, started when
    the holder's did (a reused PID is another process)."""
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return True  # cannot tell: keep it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        pass
    recorded, now = holder.get("pid_started"), _process_start(pid)
    if isinstance(recorded, (int, float)) and now is not None and abs(now - recorded) > 1:
        return False
    return True


def describe(holder: dict) -> str:
    return (f"host {holder.get('host', '?')}, PID {holder.get('pid', '?')}, since {holder.get('started', '?')}"
            + (f": {holder['command']}" if holder.get("command") else ""))


def _try_link(private: Path, path: Path) -> bool:
    try:
        os.link(private, path)
        return True
    except FileExistsError:
        return False
    except OSError:
        # NFS may report an error for a link that was made (the reply got lost): the link count says.
        try:
            if private.stat().st_nlink == 2:
                return True
        except OSError:
            pass
        # a file system without hard links: exclusive create (atomic on local and NFSv3+ file systems)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(private.read_bytes())
        return True


def _remove_stale(path: Path, stale: dict) -> bool:
    """Remove the lock if it still records ``stale``; one process at a time (mkdir is atomic)."""
    marker = path.with_name(path.name + ".takeover")
    try:
        marker.mkdir()
    except FileExistsError:
        try:
            if time.time() - marker.stat().st_mtime > _BREAK_STALE_S:
                marker.rmdir()
        except OSError:
            pass
        return False
    try:
        if read(path) == stale:
            path.unlink()
            return True
        return False
    finally:
        marker.rmdir()


def acquire(folder: Path, log: Callable[[str], None] = print) -> dict:
    """Take the lock of ``folder`` or raise a :class:`ZagreusError` naming its holder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    me = _owner()
    private = folder / f"{LOCK}.{me['host']}.{me['pid']}.{me['token']}"
    private.write_text(json.dumps(me, indent=2), encoding="utf-8")
    try:
        for _ in range(20):
            if _try_link(private, path):
                return me
            holder = read(path)
            if holder is None:  # released meanwhile
                continue
            if holder == {}:
                raise ZagreusError(f"{folder} is locked by {path}, which cannot be read; if no `zagreus run` "
                                   f"is using {folder}, remove it (rm {path}) and try again")
            same_host = holder.get("host") == me["host"]
            if same_host and not _alive(holder):
                if _remove_stale(path, holder):
                    log(f"note: took over the stale lock of {folder} ({describe(holder)}; "
                        "that process is no longer running)")
                continue
            if same_host:
                raise ZagreusError(f"{folder} is in use by another `zagreus run` ({describe(holder)}); "
                                   "one run per run folder: wait for it to finish or stop it")
            raise ZagreusError(f"{folder} is in use by another `zagreus run` ({describe(holder)}); "
                               f"that host cannot be checked from {me['host']}: wait for it to finish, or, "
                               f"if that run is no longer alive, remove the lock (rm {path}) and try again")
        raise ZagreusError(f"could not take the lock {path}: it keeps changing hands; try again")
    finally:
        private.unlink(missing_ok=True)


def release(folder: Path, owner: dict) -> None:
    """Remove the lock if it is still ``owner``'s (a lock taken over meanwhile is left alone)."""
    path = Path(folder) / LOCK
    if read(path) == owner:
        path.unlink(missing_ok=True)


@contextmanager
def hold(folder: Path, log: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the lock of ``folder`` for the ``with`` block (re-entrant within this process)."""
    key = Path(os.path.abspath(folder))
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    owner = acquire(key, log)
    _HELD[key] = 1
    try:
        yield
    finally:
        _HELD.pop(key, None)
        release(key, owner)
