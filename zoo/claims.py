"""Shard claims of a build, so that many workers (processes, Ray tasks, SLURM array jobs, on one machine or a
shared filesystem) never train the same shard twice: an atomic claim file per shard (hard link, NFS-safe), a
heartbeat thread refreshing its mtime while the worker runs, and the rule of when a claim is stale (its
process is dead on this host, or its heartbeat is older than ``ZOO_CLAIM_TTL_S`` seconds on any host).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

from .errors import BuildLockedError
from .log import logger
from .manifest import file_mode
from .settings import Settings
from .settings import current as current_settings


def claim_ttl(settings: Settings | None = None) -> float:
    """Seconds after which a claim's heartbeat is stale on any host (``ZOO_CLAIM_TTL_S``, default 600)."""
    return (settings or current_settings()).claim_ttl_s


def create_exclusive(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` atomically, only if it does not exist (hard link: NFS-safe). False if it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphan_temp_files(path.parent)
    # the temp name says who made it, so that one left by a killed process can be told from one in use
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}@{socket.gethostname()}@{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())  # readable by the other workers of a shared build (umask permitting)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: fall back to O_EXCL (content written right after)
            try:
                fd2 = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd2, "w") as f:
                f.write(text)
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def remove_orphan_temp_files(folder: Path, max_age_s: float = 3600.0) -> None:
    """Remove the temp files of :func:`create_exclusive` whose process died before removing them (killed
    between writing and linking): those of dead processes on this host, and any older than ``max_age_s``."""
    here = socket.gethostname()
    for p in folder.glob(".tmp-*@*@*"):
        pid, host, _ = p.name[len(".tmp-"):].split("@", 2)
        try:
            dead = host == here and pid.isdigit() and not pid_alive(int(pid))
            if dead or time.time() - p.stat().st_mtime > max_age_s:
                p.unlink(missing_ok=True)
        except OSError:
            pass


def read_record(path: Path) -> dict:
    """The JSON object of a claim or marker file; {} if it is missing or unreadable."""
    try:
        d = json.loads(path.read_text() or "{}")
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


class Claim:
    """A held claim: a heartbeat thread refreshes its mtime; :meth:`release` removes it if it is still ours."""

    def __init__(self, path: Path, token: str, ttl: float | None = None):
        self.path, self.token = path, token
        self._stop = threading.Event()
        self._interval = max(0.05, min(30.0, (ttl or claim_ttl()) / 4))
        self._thread = threading.Thread(target=self._beat, name=f"zoo-claim-{path.name}", daemon=True)
        self._thread.start()

    def held(self) -> bool:
        return read_record(self.path).get("token") == self.token

    def _beat(self):
        while not self._stop.wait(self._interval):
            if self.held():
                try:
                    os.utime(self.path)
                except OSError:
                    pass

    def release(self):
        self._stop.set()
        self._thread.join(timeout=5)
        if self.held():
            self.path.unlink(missing_ok=True)


def claim(path: Path, shard_id: str, ttl: float) -> Claim:
    """Claim shard ``shard_id`` at ``path`` for this process: a new claim file, or the takeover of a stale one
    (:func:`take_over`). :class:`BuildLockedError` while a live worker holds it."""
    token = uuid.uuid4().hex
    me = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), "token": token})
    for _ in range(3):
        if create_exclusive(path, me):
            return Claim(path, token, ttl=ttl)
        holder = read_record(path)
        if not is_stale(path, holder, ttl=ttl):
            raise BuildLockedError(f"shard {shard_id} is claimed by {holder or 'another worker'} ({path}); "
                                   "it is taken over once that worker is dead or its heartbeat is older than "
                                   f"{ttl:.0f} s")
        take_over(path, holder, me, ttl)
    raise BuildLockedError(f"could not claim shard {shard_id}")


def take_over(path: Path, holder: dict, me: str, ttl: float) -> None:
    """Remove the stale claim ``holder`` at ``path``, under the takeover lock (one taker at a time)."""
    lock = path.with_name(path.name + ".takeover")
    if not create_exclusive(lock, me):
        try:
            if time.time() - lock.stat().st_mtime > 60:  # a taker died within the takeover itself
                lock.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        raise BuildLockedError(f"another worker is taking over the stale claim {path}")
    try:
        if read_record(path) == holder and is_stale(path, holder, ttl=ttl):
            logger().warning(f"warning: removing the stale claim {path} of {holder or 'an unknown worker'}")
            path.unlink(missing_ok=True)
    finally:
        lock.unlink(missing_ok=True)


def clear_stale(path: Path, ttl: float) -> None:
    """Remove a stale claim on a finished shard (its worker died after the done marker was written)."""
    if path.exists():
        holder = read_record(path)
        if is_stale(path, holder, ttl=ttl):
            try:
                take_over(path, holder, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}), ttl)
            except BuildLockedError:
                pass


def is_stale(path: Path, holder: dict, ttl: float | None = None) -> bool:
    """A claim is stale if its heartbeat is older than the TTL (default :func:`claim_ttl`), or its process is
    dead on this host."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True
    if age > (ttl or claim_ttl()):
        return True
    pid = holder.get("pid")
    return holder.get("host") == socket.gethostname() and pid is not None and not pid_alive(pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError, OverflowError):
        return False
    except PermissionError:
        return True
    return True
