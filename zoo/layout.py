"""The release layout: every path inside a release folder (and a build folder), defined once.

A release (docs/format.md) is a folder, or a Hub dataset repository holding the same files::

    manifest.sha256                         sha256 of every data file (not of the card)
    explorer/index.html, ...                (optional, pushed beside the release) the browser explorer
    README.md                               the dataset card (free to edit: never checked)
    zoo.json                                release info and build provenance
    LICENSE, images/phase_diagram.png       the card's license and picture
    metadata/networks.parquet               one row per network
    diagnostics/networks.parquet            (optional) dynamics diagnostics
    weights/<family>/<shard>.safetensors    weights of up to 512 networks
    curves/<family>/<shard>.parquet         their per-epoch curves
    snapshots/<family>/<shard>.safetensors  (optional) weights at log-spaced epochs, and <shard>.parquet, their table

A build folder also holds ``.build/`` (its state: ``plan.json``, ``claims/<shard>``, ``work/<shard>/`` chunks in
progress, ``done/<shard>.json`` markers, ``parts/<shard>.parquet`` metadata rows); hidden paths (``.build/``, ``.tmp-*``, ``.cache/``) and
``__pycache__`` are never part of a release.
"""

from __future__ import annotations

from pathlib import PurePosixPath

MANIFEST_PATH = "manifest.sha256"
CARD_PATH = "README.md"
INFO_PATH = "zoo.json"
LICENSE_PATH = "LICENSE"
PICTURE_PATH = "images/phase_diagram.png"
METADATA_PATH = "metadata/networks.parquet"
DIAGNOSTICS_PATH = "diagnostics/networks.parquet"
WEIGHTS_DIR, CURVES_DIR, SNAPSHOTS_DIR = "weights/", "curves/", "snapshots/"
SHARD_DIRS = (WEIGHTS_DIR, CURVES_DIR, SNAPSHOTS_DIR)
#: the browser explorer (``zoo explore``) that ``zoo push`` may add beside a release (not in its manifest)
EXPLORER_DIR = "explorer/"
STATE_DIR = ".build"  # a build's state: claims, done markers, metadata parts, work in progress
PUBLISH_JOURNAL = ".zoo-publish.json"  # the staged files of a rewrite being switched in (zoo.publish)


# a build's state (under STATE_DIR): its plan, the shard claims, chunks in progress, done markers, metadata parts
PLAN_PATH = f"{STATE_DIR}/plan.json"
CLAIMS_DIR = f"{STATE_DIR}/claims"


def claim_path(shard_id: str) -> str:
    """The claim file of a shard being built (:mod:`zoo.claims`)."""
    return f"{CLAIMS_DIR}/{shard_id}"


def work_dir(shard_id: str) -> str:
    """The finished chunks of a shard being trained."""
    return f"{STATE_DIR}/work/{shard_id}"


def done_path(shard_id: str) -> str:
    """The done marker of a finished shard."""
    return f"{STATE_DIR}/done/{shard_id}.json"


def part_path(shard_id: str) -> str:
    """The metadata rows of a finished shard."""
    return f"{STATE_DIR}/parts/{shard_id}.parquet"


def weights_path(family: str, shard_id: str) -> str:
    return f"{WEIGHTS_DIR}{family}/{shard_id}.safetensors"


def curves_path(family: str, shard_id: str) -> str:
    return f"{CURVES_DIR}{family}/{shard_id}.parquet"


def snapshots_path(family: str, shard_id: str) -> str:
    """The snapshot shard of a build shard (written only by ``zoo build --snapshots``)."""
    return f"{SNAPSHOTS_DIR}{family}/{shard_id}.safetensors"


def snapshots_table_path(snapshots_file: str) -> str:
    """The table (net_id, epoch, index) that sits next to a snapshot shard."""
    return str(PurePosixPath(snapshots_file).with_suffix(".parquet"))


def is_shard(rel: str) -> bool:
    """A weight, curve or snapshot file (fetched per selected network), not one of the release's core files."""
    return rel.startswith(SHARD_DIRS)


def is_private_part(part: str) -> bool:
    """A path component that is never part of a release: hidden (``.build``, ``.tmp-*``, ``.cache``) or
    ``__pycache__``."""
    return part.startswith(".") or part == "__pycache__"


def is_private(rel) -> bool:
    """A relative path (str or Path) that is never part of a release (:func:`is_private_part` of any part)."""
    return any(is_private_part(p) for p in PurePosixPath(rel).parts)
