"""A real Hugging Face Hub-compatible server for tests: olah serving local git repos, fully offline.

olah (https://github.com/vtuber-plan/olah) is a Hub mirror. With ``[accessibility] offline = true`` and a
``mirrors-path`` it serves git repositories found at ``<mirrors-path>/datasets/ORG/NAME`` through the Hub
HTTP API that ``huggingface_hub`` speaks, and contacts nothing else:

* ``GET /api/datasets/ORG/NAME/revision/REV`` -> repo info (``sha`` = the commit REV resolves to; REV may be a
  branch, a tag or a commit sha, resolved by git), ``siblings`` = the files of that commit;
* ``GET /api/datasets/ORG/NAME`` (no revision) -> needs ``<repos-path>/api/datasets/ORG/NAME/revision/main/
  meta_head.json`` naming the newest revision (``{"sha": "main", "lastModified": ...}``);
* ``GET /api/datasets/ORG/NAME/refs`` -> branches and tags;
* ``HEAD|GET /datasets/ORG/NAME/resolve/REV/PATH`` -> the file, with ``x-repo-commit`` and ``etag`` headers.
  A committed git-lfs pointer (121-149 bytes) is served from ``.git/lfs/objects/`` with etag = sha256,
  exactly like the real Hub; git-lfs itself is not needed (we write pointers and objects directly).

olah has no upload endpoints: tests commit into the served git repo with :meth:`HubServer.add_dataset`.
Quirks: a missing repo, revision or file answers 401 ``RepoNotFound`` (GET of a missing file: 500), so
clients see ``RepositoryNotFoundError`` / ``EntryNotFoundError`` rather than ``RevisionNotFoundError``; and a
*plain* (non-lfs) binary file of 121-149 bytes makes olah fail (it tries to decode it as an lfs pointer), so
:meth:`add_dataset` stores such files as lfs objects.
"""

from __future__ import annotations

import atexit
import contextlib
import fnmatch
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

OLAH_CLI_ENV = "ZOO_OLAH_CLI"
DEFAULT_LFS_PATTERNS = ("*.safetensors", "*.parquet", "*.bin", "*.npz")
_PROBE_REPO = "zoo-probe/ready"
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "zoo-tests", "GIT_AUTHOR_EMAIL": "zoo-tests@localhost",
    "GIT_COMMITTER_NAME": "zoo-tests", "GIT_COMMITTER_EMAIL": "zoo-tests@localhost",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000", "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
}
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def find_olah_cli(repo_root: str | os.PathLike | None = None) -> tuple[str | None, str]:
    """``(path, how it was looked for)``: $ZOO_OLAH_CLI, else ``<repo>/.venv-olah/bin/olah-cli``, else PATH."""
    repo_root = Path(repo_root) if repo_root else Path(__file__).resolve().parents[1]
    tried = []
    env = os.environ.get(OLAH_CLI_ENV)
    if env:
        if Path(env).is_file() and os.access(env, os.X_OK):
            return env, f"${OLAH_CLI_ENV}"
        tried.append(f"${OLAH_CLI_ENV}={env} (not an executable file)")
    venv = repo_root / ".venv-olah" / "bin" / "olah-cli"
    if venv.is_file() and os.access(venv, os.X_OK):
        return str(venv), str(venv)
    tried.append(str(venv))
    which = shutil.which("olah-cli")
    if which:
        return which, "PATH"
    tried.append("olah-cli on PATH")
    how = ("olah-cli not found (tried " + ", ".join(tried) + "); install it with "
           "`python -m venv .venv-olah && .venv-olah/bin/pip install olah==0.5.4` or set "
           f"${OLAH_CLI_ENV}")
    return None, how


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, **_GIT_ENV}
    out = subprocess.run(["git", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args],
                         cwd=repo, env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def _needs_lfs(rel: str, data: bytes, patterns: Iterable[str]) -> bool:
    if any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(Path(rel).name, p) for p in patterns):
        return True
    if 120 < len(data) < 150:  # olah decodes files of this size as candidate lfs pointers
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return True
    return False


class HubServer:
    """olah serving git repos from ``root/mirrors`` at ``http://127.0.0.1:PORT``; use as a context manager."""

    def __init__(self, root: str | os.PathLike, olah_cli: str, *, startup_timeout: float = 60.0):
        self.root = Path(root)
        self.olah_cli = olah_cli
        self.startup_timeout = startup_timeout
        self.mirrors = self.root / "mirrors"
        self.repos = self.root / "repos"
        self.logs = self.root / "logs"
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> HubServer:
        for d in (self.mirrors, self.repos, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        probe = self.root / "probe.txt"
        probe.write_text("ready\n")
        self.add_dataset(_PROBE_REPO, self.root, ["probe.txt"])
        last_error = ""
        for _attempt in range(3):  # the free port can be taken between picking and binding it
            self.port = _free_port()
            cfg = self.root / "olah.toml"
            cfg.write_text(
                "[basic]\n"
                'host = "127.0.0.1"\n'
                f"port = {self.port}\n"
                f'repos-path = "{self.repos}"\n'
                f'mirror-netloc = "127.0.0.1:{self.port}"\n'
                f'mirror-lfs-netloc = "127.0.0.1:{self.port}"\n'
                f'mirrors-path = ["{self.mirrors}"]\n'
                "[accessibility]\n"
                "offline = true\n")
            self._log_file = open(self.logs / "olah.out", "ab")
            self.proc = subprocess.Popen(
                [self.olah_cli, "-c", str(cfg), "--log-path", str(self.logs)],
                stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.root, start_new_session=True)
            atexit.register(self.stop)
            ok, last_error = self._wait_ready()
            if ok:
                return self
            self.stop()
        raise RuntimeError(f"olah did not start: {last_error}\n--- log tail ---\n{self.log_tail()}")

    def _wait_ready(self) -> tuple[bool, str]:
        url = f"{self.endpoint}/api/datasets/{_PROBE_REPO}/revision/main"
        deadline = time.monotonic() + self.startup_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False, f"olah-cli exited with status {self.proc.returncode}"
            try:
                with _NO_PROXY.open(url, timeout=2) as r:
                    if r.status == 200:
                        return True, ""
                    last = f"HTTP {r.status}"
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
            except OSError as e:
                last = str(e)
            time.sleep(0.1)
        return False, f"not ready after {self.startup_timeout:.0f} s ({last})"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, n: int = 40) -> str:
        p = self.logs / "olah.out"
        return "\n".join(p.read_text(errors="replace").splitlines()[-n:]) if p.exists() else ""

    # -- content -------------------------------------------------------------------------------------
    def add_dataset(self, repo_id: str, folder: str | os.PathLike, files: Iterable[str], tag: str | None = None,
                    *, lfs_patterns: Iterable[str] = DEFAULT_LFS_PATTERNS, message: str = "release") -> str:
        """Commit exactly ``files`` (paths relative to ``folder``) as the new head of ``main`` of dataset
        ``repo_id`` (files of the previous commit not listed are removed); tag it if ``tag``; return the sha.

        Files matching ``lfs_patterns`` are committed as git-lfs pointers, as the real Hub stores binaries.
        """
        org, name = repo_id.split("/")
        repo = self.mirrors / "datasets" / org / name
        folder = Path(folder)
        if not (repo / ".git").exists():
            repo.mkdir(parents=True, exist_ok=True)
            _git(repo, "init", "-q", "-b", "main")
        for entry in repo.iterdir():
            if entry.name != ".git":
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        lfs_patterns = tuple(lfs_patterns)
        for rel in files:
            data = (folder / rel).read_bytes()
            dest = repo / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if _needs_lfs(rel, data, lfs_patterns):
                oid = hashlib.sha256(data).hexdigest()
                obj = repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
                obj.parent.mkdir(parents=True, exist_ok=True)
                obj.write_bytes(data)
                dest.write_text(f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n")
            else:
                dest.write_bytes(data)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "--allow-empty", "-m", message)
        if tag:
            _git(repo, "tag", "-f", tag)
        meta = self.repos / "api" / "datasets" / org / name / "revision" / "main" / "meta_head.json"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"sha": "main", "lastModified": "2000-01-01T00:00:00"}))
        return _git(repo, "rev-parse", "HEAD")


class RequestRecorder:
    """A dead-end HTTP endpoint that records every request (503 to all): proves that code made no request."""

    def __init__(self):
        self.requests: list[str] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                recorder.requests.append(f"{self.command} {self.path}")
                self.send_response(503)
                self.send_header("content-length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_POST = do_PUT = _any

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> RequestRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
