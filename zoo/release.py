"""Packaging a release: the metadata table, ``zoo.json``, the LICENSE, the card and its phase-diagram picture, then
the manifest over every data file. Used by ``zoo build`` / ``zoo package``, relabelling and the import of the
authors' files; the file formats themselves are :mod:`zoo.store`'s, the paths :mod:`zoo.layout`'s.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from . import labels, publish
from .card import license_text, render_card
from .devices import resolve_device
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
    from . import store
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
