"""The Hub connection: repo ids, the settings read at call time, and huggingface_hub errors as zoo errors.

The Hub settings (``HF_ENDPOINT``, ``HF_HOME`` / ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``) are worked
out by huggingface_hub's own code against the environment at call time (:func:`hub_settings`), not when
huggingface_hub was imported, and passed to it explicitly. The Hub's files live in huggingface_hub's cache
(:func:`hub_cache_dir`); the package's own reader cache is :mod:`zoo.cache`. Shared by the Hub source
(:mod:`zoo.hub_source`) and push/pull (:mod:`zoo.hub`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
from huggingface_hub import constants
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .errors import InvalidChoiceError, NotCachedError, SourceNotFoundError, TokenMissingError, ZooError
from .layout import MANIFEST_PATH

REPO_TYPE = "dataset"
LIBRARY_NAME = "rnn-stm-zoo"  # library_name of every huggingface_hub request

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_RE = re.compile(rf"^(?P<repo>{_NAME}/{_NAME})(?:@(?P<rev>[^\s@]+))?$")
_HF_PREFIXES = ("hf://datasets/", "datasets/")


# -- repo ids ----------------------------------------------------------------------------------------------
def parse_repo_id(text: str) -> tuple[str, str | None]:
    """``"ORG/NAME"`` -> ``("ORG/NAME", None)``; ``"ORG/NAME@REV"`` -> ``("ORG/NAME", "REV")``.

    REV is a tag, a branch or a commit sha. An ``hf://datasets/`` prefix is accepted.
    """
    raw = str(text).strip()
    for prefix in _HF_PREFIXES:
        if raw.startswith(prefix):
            raw = raw[len(prefix):]
            break
    m = _REPO_RE.match(raw)
    if not m or "--" in m["repo"] or ".." in m["repo"]:
        raise InvalidChoiceError(
            "Hub repo id", text,
            hint="expected ORG/NAME or ORG/NAME@REVISION (REVISION: a tag such as v1.0, a branch or a commit sha)")
    return m["repo"], m["rev"]


def looks_like_repo_id(text: str) -> bool:
    """True if ``text`` reads as a Hub repo id (``ORG/NAME[@REV]``) rather than a local path.

    An existing local path wins, and so does anything that starts like a path (``/``, ``.``, ``~``).
    """
    text = str(text).strip()
    if not text or text.startswith(("/", ".", "~", "\\")) or os.path.exists(text):
        return False
    try:
        parse_repo_id(text)
    except InvalidChoiceError:
        return False
    return True


def repo_label(repo_id: str, revision: str | None) -> str:
    """``ORG/NAME@REV`` (or ``ORG/NAME`` without a revision), as messages name a release."""
    return f"{repo_id}@{revision}" if revision else repo_id


# -- settings read at call time ----------------------------------------------------------------------------
@dataclass(frozen=True)
class HubSettings:
    """huggingface_hub's settings for the environment of now (its own rules: ``HF_ENDPOINT``, ``HF_HOME``,
    ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_TOKEN_PATH`` and their legacy names and defaults)."""

    endpoint: str
    cache_dir: Path
    offline: bool
    token_path: Path


def hub_settings() -> HubSettings:
    """The Hub settings as huggingface_hub would read them if it were imported now.

    huggingface_hub reads its environment variables once, when it is imported (a documented choice), while
    users and tests set them later: a fresh copy of ``huggingface_hub.constants`` is evaluated against the
    current environment, so the library's own rules decide, never a copy of them here.
    """
    return _settings_for(tuple(sorted(os.environ.items())))


@functools.lru_cache(maxsize=8)
def _settings_for(environment: tuple) -> HubSettings:  # one evaluation per distinct environment
    spec = importlib.util.find_spec(constants.__name__)
    fresh = importlib.util.module_from_spec(spec)  # not put in sys.modules: the library keeps its own
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its notices about deprecated variables were shown at its import
        spec.loader.exec_module(fresh)
    return HubSettings(endpoint=fresh.ENDPOINT.rstrip("/"), cache_dir=Path(fresh.HF_HUB_CACHE),
                       offline=bool(fresh.HF_HUB_OFFLINE), token_path=Path(fresh.HF_TOKEN_PATH))


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) as set now, or as huggingface_hub saw it at import (it
    then refuses every request)."""
    return hub_settings().offline or bool(constants.HF_HUB_OFFLINE)


def hub_endpoint() -> str:
    """The Hub's address (``HF_ENDPOINT`` as set now)."""
    return hub_settings().endpoint


def hub_cache_dir() -> Path:
    """The huggingface_hub cache folder (``HF_HUB_CACHE``, else ``$HF_HOME/hub``, as set now)."""
    return hub_settings().cache_dir


def find_token(token: str | None = None) -> str | None:
    """``token``, else huggingface_hub's usual places: ``HF_TOKEN``, then the token file of ``hf auth login``."""
    if token:
        return token
    token_path = hub_settings().token_path
    if os.path.abspath(token_path) == os.path.abspath(constants.HF_TOKEN_PATH):
        return huggingface_hub.get_token()  # same places it knows, plus OIDC, refreshed logins, Colab secrets
    # HF_TOKEN_PATH or HF_HOME changed since the import: get_token would read the file of then
    env = (os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or "").strip()
    if env:
        return env
    with contextlib.suppress(OSError):
        return token_path.read_text().strip() or None
    return None


# -- errors ------------------------------------------------------------------------------------------------
_NET_MODULES = {"httpx", "httpx2", "httpcore", "requests", "urllib3"}


@contextlib.contextmanager
def hub_errors(repo_id: str, revision: str | None, endpoint: str, filename: str | None = None,
                pushing: bool = False) -> Iterator[None]:
    """Turn huggingface_hub and network exceptions into short :class:`ZooError` subclasses."""
    label = repo_label(repo_id, revision)
    what = f"{filename} of {label}" if filename else label
    try:
        yield
    except GatedRepoError as e:
        raise SourceNotFoundError(f"Hub dataset {repo_id} is gated: accept its terms on the Hub, then log in "
                                  "(`hf auth login` or HF_TOKEN)") from e
    except RepositoryNotFoundError as e:
        if pushing:
            raise TokenMissingError(f"the Hub at {endpoint} refused access to {repo_id}: the token needs write "
                                    "access to it (`hf auth login` or HF_TOKEN)") from e
        raise SourceNotFoundError(
            f"Hub dataset {label} not found at {endpoint}: check the name and the revision (a private dataset "
            "also needs a token: `hf auth login` or HF_TOKEN)") from e
    except RevisionNotFoundError as e:
        raise SourceNotFoundError(f"revision {revision!r} not found in Hub dataset {repo_id}") from e
    except OfflineModeIsEnabled as e:
        raise NotCachedError(f"cannot fetch {what}: HF_HUB_OFFLINE was set when huggingface_hub was imported. "
                             f"Run `zoo pull {label}` in an online session first") from e
    except LocalEntryNotFoundError as e:  # online, but no answer from the Hub and nothing cached
        raise NotCachedError(f"could not download {what} from {endpoint} and it is not in the local cache: "
                             "check the connection (and HF_ENDPOINT), then retry") from e
    except EntryNotFoundError as e:
        raise SourceNotFoundError(f"{filename or 'a file'} not found in Hub dataset {label}"
                                  + (": not a zoo release?" if filename == MANIFEST_PATH else "")) from e
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            raise TokenMissingError(f"the Hub at {endpoint} refused the request for {label} (HTTP {status}): "
                                    "log in with `hf auth login` or set HF_TOKEN (write access to push)") from e
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ZooError(f"Hub request for {what} failed: {first}") from e
    except Exception as e:
        if type(e).__module__.split(".")[0] in _NET_MODULES or isinstance(e, (ConnectionError, TimeoutError)):
            raise ZooError(f"could not reach the Hub at {endpoint} for {what}: {e}") from e
        raise
