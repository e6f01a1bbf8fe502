"""Packaging a release: the metadata table, ``zoo.json``, the LICENSE, the card and its phase-diagram picture, then
the manifest over every data file. Used by ``zoo build`` / ``zoo package`` (:func:`package_shards`: a build
folder's finished shards into a release), relabelling and the import of the authors' files; the file formats
themselves are :mod:`zoo.store`'s, the paths :mod:`zoo.layout`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import labels, layout, provenance, publish, store
from .build_folder import BuildFolder
from .card import license_text, render_card
from .devices import resolve_device
from .errors import MissingShardsError, ZooError
from .faults import fault_point
from .layout import (
    CARD_PATH,
    DIAGNOSTICS_PATH,
    INFO_PATH,
    LICENSE_PATH,
    METADATA_PATH,
    PICTURE_PATH,
    SHARD_DIRS,
    snapshots_table_path,
)
from .metadata import label_frame
from .store import FORMAT_VERSION, write_table
from .version import __version__
from .weightspace import with_split

#: draws the card's picture at a path from the metadata; False (and no file) when there is nothing to draw.
#: Packaging takes one as an argument (``zoo.figures.write_phase_picture``), so it never needs matplotlib.
PictureWriter = Callable[[Path, pd.DataFrame], bool]


def finalize_release(folder: str | os.PathLike, metadata: pd.DataFrame, info: dict,
                     verified: dict[str, str] | None = None, *,
                     picture: PictureWriter | None = None) -> dict[str, str]:
    """Write the metadata table, zoo.json, the LICENSE, the card's picture (drawn by ``picture``; none without
    it) and the dataset card, then
    the manifest of the whole release (the card is not in it: see zoo.manifest), switched in at once for
    readers (:func:`zoo.publish.publish`).

    The release's other files are the shards the table names (and a diagnostics table the old manifest
    lists); each must match ``verified`` (sha256 the caller has just checked) or the old manifest, else the
    rewrite is refused naming it. No other file in the folder is adopted."""
    folder = Path(folder)
    metadata = metadata.sort_values("net_id", kind="stable").reset_index(drop=True)
    metadata = with_split(metadata)  # train/validation/test, by seed
    keep: dict[str, str | None] = dict.fromkeys(shard_files(metadata))
    keep.update({rel: d for rel, d in (verified or {}).items() if rel in keep})
    with publish.Staging(folder) as staged:
        old = publish.old_manifest(folder) or {}
        if DIAGNOSTICS_PATH in old and (folder / DIAGNOSTICS_PATH).exists():
            keep[DIAGNOSTICS_PATH] = None
        write_table(staged.path(METADATA_PATH), metadata)
        info = {"format_version": FORMAT_VERSION, **info, "n_networks": int(len(metadata))}
        staged.write_text(INFO_PATH, json.dumps(info, indent=2, sort_keys=True) + "\n")
        staged.write_text(LICENSE_PATH, license_text())
        drawn = picture is not None and picture(staged.path(PICTURE_PATH), metadata)
        if not drawn:
            staged.remove(PICTURE_PATH)
        staged.write_text(CARD_PATH, render_card(metadata, info, PICTURE_PATH if drawn else None))
        return publish.publish(staged, keep)


def remove_unlisted_shard_files(folder: str | os.PathLike, metadata: pd.DataFrame) -> None:
    """Delete the weight, curve and snapshot files in ``folder`` that ``metadata`` does not name (a partial
    release carries no files of unfinished shards); hidden files (temp files of live writers) are left alone."""
    folder, keep = Path(folder), set(shard_files(metadata))
    for sub in SHARD_DIRS:
        for p in sorted((folder / sub).rglob("*")) if (folder / sub).exists() else []:
            rel = p.relative_to(folder)
            if p.is_file() and not any(x.startswith(".") for x in rel.parts) and rel.as_posix() not in keep:
                p.unlink(missing_ok=True)


def shard_files(metadata: pd.DataFrame) -> list[str]:
    """The weight, curve and snapshot files (and snapshot tables) the metadata table names."""
    files = set()
    for col in ("weights_file", "curves_file", "snapshots_file"):
        if col in metadata:
            files |= set(metadata[col].dropna().unique())
    if "snapshots_file" in metadata:
        files |= {snapshots_table_path(rel) for rel in metadata["snapshots_file"].dropna().unique()}
    return sorted(files)


def relabel_release(folder: str | os.PathLike, device="cpu", *, picture: PictureWriter | None = None) -> pd.DataFrame:
    """Recompute every label of a packaged release from its weights and curves (no retraining). Every file
    read is checked against the manifest first: a damaged release is refused, never relabelled."""
    from .sources import LocalSource

    folder = Path(folder)
    src = LocalSource(folder, verify="full")
    df = src.read_metadata()
    out = []
    for wf, rows in df.groupby("weights_file", sort=True):
        weights = store.read_weights(src.local_path(wf), rows["weights_index"].tolist())
        cv = {}
        for cf in rows["curves_file"].unique():
            cv.update(store.read_curves(src.local_path(cf), rows["net_id"].tolist()))
        out.append(label_frame(rows, weights, [cv[i]["accuracy"] for i in rows["net_id"]],
                               [cv[i]["reliability"] for i in rows["net_id"]], resolve_device(device)))
    new = pd.concat(out, ignore_index=True)
    info = src.read_info()
    info["label_version"] = labels.LABEL_VERSION
    info.pop("n_networks", None)
    info.pop("format_version", None)
    finalize_release(folder, new, info, verified=src.manifest, picture=picture)
    return new


@dataclass(frozen=True)
class Packaged:
    """What packaging a build gave: the release's metadata table, and whether the release was already complete
    and current (then nothing was written)."""

    metadata: pd.DataFrame
    unchanged: bool


def package_shards(folder: BuildFolder, *, partial: bool = False, picture: PictureWriter | None = None) -> Packaged:
    """Merge the finished shards of a build folder into its release: metadata, card (its picture drawn by
    ``picture``, e.g. :func:`zoo.figures.write_phase_picture`), zoo.json and manifest (:func:`finalize_release`).

    Refuses (:class:`MissingShardsError`, listing them) if a shard is not finished or fails verification,
    unless ``partial``: then only the finished shards are released (the files of the others are removed) and
    ``zoo.json`` / the card say so. A release already packaged from exactly these shards is left as it is."""
    folder.remove_orphan_claim_files()  # litter of workers killed while claiming
    publish.recover(folder.out)  # a packaging killed in its switch is finished first
    problems = {s.shard_id: folder.marker_problem(s) for s in folder.plan.shards}
    missing = [sid for sid, p in problems.items() if p is not None]
    if missing and not partial:
        bad = [f"{sid} ({p})" for sid, p in problems.items() if p not in (None, "not finished")]
        hint = ("finish them with `zoo build --out DIR` (it resumes and retrains damaged shards), or package "
                "what exists with `zoo package DIR --partial`")
        raise MissingShardsError(missing, (f"damaged: {'; '.join(bad[:10])}. " if bad else "") + hint)
    finished = [s for s in folder.plan.shards if problems[s.shard_id] is None]
    if not finished:
        raise MissingShardsError(missing, "nothing to package yet")
    verified = {rel: d for s in finished for rel, d in folder.marker(s.shard_id).get("files", {}).items()}
    digest = hashlib.sha256(json.dumps({"files": verified, "missing": missing}, sort_keys=True).encode()).hexdigest()
    if release_is_current(folder.out, digest):  # packaged from these very shards: no part needs reading
        return Packaged(store.read_table(folder.path(METADATA_PATH)), unchanged=True)
    parts = [_finished_part(folder, s) for s in finished]
    fault_point("package")
    df = pd.concat(parts, ignore_index=True)
    if df["net_id"].duplicated().any():  # cannot happen with a valid plan; never release duplicates
        raise ZooError(f"duplicate networks in the build: {df.loc[df['net_id'].duplicated(), 'net_id'].tolist()[:5]}")
    remove_unlisted_shard_files(folder.out, df)  # a partial release: no files of unfinished shards
    plan = folder.plan
    info = {"preset": plan.preset, "overrides": plan.overrides, "built_from": plan.describe(),
            "epoch_rules": plan.epoch_rules(), "code_version": __version__, "label_version": labels.LABEL_VERSION,
            "partial": bool(missing), "missing_shards": missing, "n_shards": len(plan.shards),
            "n_networks_planned": len(plan.configs), **({"snapshots": plan.snapshots} if plan.snapshots else {}),
            "provenance": provenance.summarize(provenance.environment("cpu"),
                                               (folder.marker(s.shard_id).get("provenance") for s in finished), df),
            "parts_sha256": digest}
    finalize_release(folder.out, df, info, verified=verified, picture=picture)
    for s in finished:  # leftovers of workers killed after finishing their shard
        shutil.rmtree(folder.path(layout.work_dir(s.shard_id)), ignore_errors=True)
        folder.clear_stale_claim(s.shard_id)
    return Packaged(df, unchanged=False)


def _finished_part(folder: BuildFolder, shard) -> pd.DataFrame:
    """The metadata rows of a finished shard, which must be labelled and list the shard's networks."""
    if not folder.marker(shard.shard_id).get("labelled"):
        raise ZooError(f"shard {shard.shard_id} is trained but not labelled; run `zoo label {folder.out}`")
    part = store.read_table(folder.path(layout.part_path(shard.shard_id)))
    if part["net_id"].tolist() != shard.net_ids:
        raise ZooError(f"the metadata part of shard {shard.shard_id} does not list its networks; "
                       f"delete {folder.path(layout.done_path(shard.shard_id))} and re-run the build")
    return part


def release_is_current(folder: str | os.PathLike, digest: str) -> bool:
    """True if ``folder`` holds a whole release (every core file matching its manifest) packaged from exactly
    the shards whose done markers hash to ``digest``; re-packaging it would change nothing."""
    from .sources import LocalSource

    try:
        src = LocalSource(folder)
        if src.read_info().get("parts_sha256") != digest:
            return False
        src.local_paths([r for r in src.manifest if not layout.is_shard(r)])
    except (ZooError, OSError, ValueError):
        return False
    return True
