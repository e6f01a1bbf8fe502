"""Packaging a release: the metadata table, ``zoo.json``, the LICENSE, the card and its phase-diagram picture, then
the manifest over every data file. Used by ``zoo build`` / ``zoo package``, relabelling and the import of the
authors' files; the file formats themselves are :mod:`zoo.store`'s, the paths :mod:`zoo.layout`'s.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd

from . import labels, store
from .card import license_text, render_card
from .layout import CARD_PATH, INFO_PATH, LICENSE_PATH, METADATA_PATH, PICTURE_PATH
from .manifest import atomic_path, atomic_write_text, write_manifest
from .metadata import label_frame
from .store import FORMAT_VERSION, write_table
from .train import resolve_device


def finalize_release(folder: str | os.PathLike, metadata: pd.DataFrame, info: dict) -> dict[str, str]:
    """Write the metadata table, zoo.json, the LICENSE, the phase diagram picture and the dataset card, then
    the manifest of the whole release (the card is not in it: see zoo.manifest)."""
    folder = Path(folder)
    metadata = metadata.sort_values("net_id", kind="stable").reset_index(drop=True)
    if "split" not in metadata.columns and "seed" in metadata.columns:  # train/validation/test, by seed
        from .weightspace import split_column

        metadata["split"] = split_column(metadata).to_numpy()
    write_table(folder / METADATA_PATH, metadata)
    info = {"format_version": FORMAT_VERSION, **info, "n_networks": int(len(metadata))}
    atomic_write_text(folder / INFO_PATH, json.dumps(info, indent=2, sort_keys=True) + "\n")
    atomic_write_text(folder / LICENSE_PATH, license_text())
    picture = PICTURE_PATH if write_phase_picture(folder / PICTURE_PATH, metadata) else None
    atomic_write_text(folder / CARD_PATH, render_card(metadata, info, picture))
    return write_manifest(folder)


def write_phase_picture(path: str | os.PathLike, metadata: pd.DataFrame) -> bool:
    """Render the zoo's phase diagram (the paper's pooled panel when the zoo fills one, e.g. no-post = nopost +
    nopost-narrow, else its largest family) as a PNG at ``path``; False (and no file) when the zoo has nothing
    to draw (unlabelled)."""
    from .analysis.outcomes import panels_of
    from .figures import FigureSkipped, plot_phase_diagram

    path = Path(path)
    fams = metadata["family"].value_counts() if "family" in metadata and len(metadata) else None
    try:
        if fams is None:
            raise FigureSkipped("empty zoo")
        fig = plot_phase_diagram(metadata, (panels_of(fams.index) or [str(fams.index[0])])[0])
    except (FigureSkipped, ValueError, KeyError) as why:  # the card then has no picture
        print(f"note: no phase diagram picture for the card ({why})", file=sys.stderr)
        path.unlink(missing_ok=True)
        return False
    with atomic_path(path) as tmp:  # a pyplot-free figure (zoo.figures): nothing to close
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    return True


def relabel_release(folder: str | os.PathLike, device="cpu") -> pd.DataFrame:
    """Recompute every label of a packaged release from its weights and curves (no retraining)."""
    folder = Path(folder)
    df = store.read_table(folder / METADATA_PATH)
    out = []
    for wf, rows in df.groupby("weights_file", sort=True):
        weights = store.read_weights(folder / wf, rows["weights_index"].tolist())
        cv = {}
        for cf in rows["curves_file"].unique():
            cv.update(store.read_curves(folder / cf, rows["net_id"].tolist()))
        out.append(label_frame(rows, weights, [cv[i]["accuracy"] for i in rows["net_id"]],
                               [cv[i]["reliability"] for i in rows["net_id"]], resolve_device(device)))
    new = pd.concat(out, ignore_index=True)
    info = store.read_info(folder)
    info["label_version"] = labels.LABEL_VERSION
    info.pop("n_networks", None)
    info.pop("format_version", None)
    finalize_release(folder, new, info)
    return new
