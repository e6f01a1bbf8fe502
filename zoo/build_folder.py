"""A build folder's state, ``<out>/.build/`` (never released; paths from :mod:`zoo.layout`):

- ``plan.json``: the preset, overrides and shard size the build was started with; a re-run must ask for the
  same plan (its fingerprint: the shards and their networks).
- ``claims/<shard>``: the claim of the worker training a shard (the protocol: :mod:`zoo.claims`).
- ``work/<shard>/``: the saved chunks of a shard in progress (:mod:`zoo.chunks`).
- ``parts/<shard>.parquet`` + ``done/<shard>.json``: a finished shard's metadata rows and its done marker (the
  sha256 of its weight, curve, snapshot and part files, written last). A shard is done only if its marker
  verifies.

:class:`BuildFolder` reads and writes these; training a shard is :mod:`zoo.shard_build`'s, packaging the
finished shards :mod:`zoo.release`'s. Several processes may hold one folder at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from . import claims, layout, publish, store
from .errors import ReleaseFolderError, ZooError
from .faults import fault_point
from .manifest import atomic_write_text, file_matches, sha256_file
from .settings import Settings
from .settings import current as current_settings
from .sharding import Shard


class BuildFolder:
    """The state of the build of ``plan`` (a :class:`zoo.plan.BuildPlan`) in the folder ``out``: its shard
    claims and done markers. Open one with :meth:`open` (or :func:`zoo.build.open_build`)."""

    def __init__(self, out: str | os.PathLike, plan, settings: Settings | None = None):
        self.out = Path(out)
        self.plan = plan  # only its attributes are used: this module need not import zoo.plan (it sits below it)
        self.settings = settings or current_settings()  # the claim TTL; the kernels read their own at training
        self.state = self.out / layout.STATE_DIR

    @classmethod
    def open(cls, out: str | os.PathLike, plan, *, settings: Settings | None = None,
             force: bool = False) -> BuildFolder:
        """Start the build of ``plan`` in ``out`` (writing ``.build/plan.json``; ``out`` must be new, empty or a
        build or release of this package unless ``force``), or join the build there, which must be of the
        same plan (:class:`ZooError` naming both otherwise)."""
        out = Path(out)
        if not (out / layout.PLAN_PATH).exists():
            _start(out, plan, force)
        stored = read_plan_record(out)
        if not same_plan(stored, plan):
            raise ZooError(
                f"{out} holds a different build: it was started with preset {stored.get('preset')!r}, "
                f"overrides {stored.get('overrides')}, shard size {stored.get('shard_size')}; this command asks "
                f"for preset {plan.preset!r}, overrides {plan.overrides}, shard size {plan.shard_size}. Repeat "
                f"the original options to resume it, or use another --out (or delete {out / layout.STATE_DIR} "
                "to restart)")
        return cls(out, plan, settings)

    def path(self, rel: str) -> Path:
        """The file or folder ``rel`` (a :mod:`zoo.layout` path) of this folder."""
        return self.out / rel

    # -- claims (the protocol: zoo.claims)
    def claim(self, shard_id: str) -> claims.Claim:
        """Claim a shard for this process (:class:`zoo.errors.BuildLockedError` while a live worker holds it)."""
        return claims.claim(self.path(layout.claim_path(shard_id)), shard_id, ttl=self.settings.claim_ttl_s)

    def clear_stale_claim(self, shard_id: str) -> None:
        """Remove the claim on a finished shard if its worker is gone."""
        claims.clear_stale(self.path(layout.claim_path(shard_id)), ttl=self.settings.claim_ttl_s)

    def remove_orphan_claim_files(self) -> None:
        """Remove the temp files of workers killed while claiming."""
        if self.path(layout.CLAIMS_DIR).is_dir():
            claims.remove_orphan_temp_files(self.path(layout.CLAIMS_DIR))

    # -- done markers
    def shard_files(self, shard: Shard) -> list[str]:
        """The release files a finished shard writes: weights, curves and (if the plan stores snapshots) the
        snapshot shard and its table."""
        files = [layout.weights_path(shard.family, shard.shard_id), layout.curves_path(shard.family, shard.shard_id)]
        if self.plan.snapshots:
            rel = layout.snapshots_path(shard.family, shard.shard_id)
            files += [rel, layout.snapshots_table_path(rel)]
        return files

    def marker(self, shard_id: str) -> dict:
        """The done marker of a shard ({} if there is none or it is unreadable)."""
        return claims.read_record(self.path(layout.done_path(shard_id)))

    def has_marker(self, shard_id: str) -> bool:
        return self.path(layout.done_path(shard_id)).exists()

    def marker_problem(self, shard: Shard) -> str | None:
        """None if the shard is done: its marker exists, is readable and every file it lists matches its
        sha256; otherwise why not ('not finished', or what is wrong)."""
        f = self.path(layout.done_path(shard.shard_id))
        if not f.exists():
            return "not finished"
        try:
            marker = json.loads(f.read_text())
            files = dict(marker["files"])
        except (OSError, ValueError, KeyError, TypeError):
            return f"its done marker {f.relative_to(self.out)} is unreadable"
        if set(files) != {*self.shard_files(shard), layout.part_path(shard.shard_id)} or marker.get("n") != len(shard):
            return f"its done marker {f.relative_to(self.out)} does not describe this shard"
        for rel, digest in sorted(files.items()):
            p = self.path(rel)
            if not p.exists():
                return f"{rel} is missing"
            if not file_matches(p, digest):
                return f"{rel} does not match its checksum (corrupt or truncated)"
        return None

    def is_done(self, shard: Shard, verify: bool = True) -> bool:
        """True if the shard's done marker exists and (``verify``) every file it lists matches its sha256."""
        if not verify:
            return self.has_marker(shard.shard_id)
        return self.marker_problem(shard) is None

    def status(self, verify: bool = True) -> dict[str, str]:
        """``{shard_id: 'done' | 'partial' | 'todo' | 'corrupt'}``."""
        out = {}
        for s in self.plan.shards:
            if self.has_marker(s.shard_id):
                out[s.shard_id] = "done" if self.is_done(s, verify) else "corrupt"
            elif self.path(layout.work_dir(s.shard_id)).exists():
                out[s.shard_id] = "partial"
            else:
                out[s.shard_id] = "todo"
        return out

    def mark_done(self, shard: Shard, part: pd.DataFrame, provenance: dict | None) -> None:
        """Write a finished shard's metadata rows (``part``), then its done marker: the sha256 of its files,
        whether the rows are labelled, and where it was trained (``provenance``)."""
        rel = layout.part_path(shard.shard_id)
        store.write_table(self.path(rel), part)
        fault_point("shard-part")
        weights, curves, *snapshots = self.shard_files(shard)
        files = {f: sha256_file(self.path(f)) for f in (weights, curves, rel, *snapshots)}
        atomic_write_text(self.path(layout.done_path(shard.shard_id)),
                          json.dumps({"files": files, "labelled": "outcome" in part, "n": len(part),
                                      "provenance": provenance}, indent=1))

    def unmark(self, shard_id: str) -> None:
        """Remove a shard's done marker (its files failed verification: it is trained again)."""
        self.path(layout.done_path(shard_id)).unlink(missing_ok=True)


def _start(out: Path, plan, force: bool) -> None:
    """Write the plan of a new build (once: two workers starting it together write one)."""
    publish.check_output_folder(out, force)
    plan_file = out / layout.PLAN_PATH
    try:
        claims.create_exclusive(plan_file, json.dumps(_jsonable(plan.record()), indent=1, sort_keys=True))
    except OSError as err:
        raise ReleaseFolderError(f"cannot start a build in {out}: {err.strerror or err} "
                                 f"({err.filename or plan_file}); choose a writable --out") from None


def read_plan_record(out: str | os.PathLike) -> dict:
    """The ``plan.json`` of the build in ``out``; :class:`ZooError` if there is none or it is unreadable."""
    plan_file = Path(out) / layout.PLAN_PATH
    if not plan_file.exists():
        raise ZooError(f"{out} has no build plan ({plan_file} missing); start it with `zoo build`")
    try:
        return json.loads(plan_file.read_text())
    except (OSError, ValueError) as err:
        raise ZooError(f"cannot read the build plan {plan_file}: {err}") from None


def same_plan(record: dict, plan) -> bool:
    """Whether the stored ``plan.json`` ``record`` describes ``plan`` (the same shards and networks)."""
    return record.get("fingerprint") == _jsonable(plan.fingerprint())


def _jsonable(x):
    """``x`` as it reads back from JSON (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(x))
