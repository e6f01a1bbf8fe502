"""The per-user cache of readers: never inside a release folder (reading leaves the data byte-for-byte unchanged).

``cache_root()`` is ``$ZOO_CACHE_DIR``, else the platform's cache directory plus ``rnn-stm-zoo`` (Linux:
``$XDG_CACHE_HOME`` or ``~/.cache``; macOS: ``~/Library/Caches``; Windows: ``%LOCALAPPDATA%``), the same root
as the compiled C kernels. A release's entries live in ``<root>/releases/<sha256 of its manifest>[:16]/``:
the verified-file stamps (:class:`zoo.manifest.VerifiedStamps`, one file per release folder) and the
uncompressed copy of its metadata table. Everything there is safe to delete; when the folder is unwritable
the readers simply work without it. Files fetched from the Hub are not here: they stay in huggingface_hub's
own cache (:func:`zoo.hub_env.hub_cache_dir`).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from .settings import Settings
from .settings import current as current_settings

APP_NAME = "rnn-stm-zoo"


def platform_cache_dir() -> Path:
    """The platform's per-user cache directory (not created)."""
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def cache_root(settings: Settings | None = None) -> Path:
    """``$ZOO_CACHE_DIR`` (:mod:`zoo.settings`), else ``<platform cache dir>/rnn-stm-zoo``."""
    configured = (settings or current_settings()).cache_dir
    return configured if configured is not None else platform_cache_dir() / APP_NAME


def release_key(manifest_text: str | bytes) -> str:
    """The cache key of a release: sha256 of its manifest (first 16 hex digits)."""
    data = manifest_text.encode() if isinstance(manifest_text, str) else manifest_text
    return hashlib.sha256(data).hexdigest()[:16]


def release_cache_dir(key: str) -> Path:
    """Folder of a release's cache entries (not created)."""
    return cache_root() / "releases" / key


def folder_key(folder: str | os.PathLike) -> str:
    """A short key of a folder's absolute path (two copies of one release keep separate stamps)."""
    return hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:12]
