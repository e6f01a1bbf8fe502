"""The release format on disk: weight shards, curve files, the metadata table, release info and manifest.

See docs/format.md for the layout. Every file is written atomically (temp name, then rename); readers
memory-map the safetensors shards and read only the rows they need.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .manifest import atomic_path, atomic_write_text, write_manifest
from .model import PARAM_NAMES

FORMAT_VERSION = "rnn-stm-zoo/1"
METADATA_PATH = "metadata/networks.parquet"
DIAGNOSTICS_PATH = "diagnostics/networks.parquet"
INFO_PATH = "zoo.json"
CARD_PATH = "README.md"
CURVE_NAMES = ("loss", "accuracy", "reliability", "grad_norm")


def weights_path(family: str, shard_id: str) -> str:
    return f"weights/{family}/{shard_id}.safetensors"


def curves_path(family: str, shard_id: str) -> str:
    return f"curves/{family}/{shard_id}.parquet"


# ---------------------------------------------------------------- weights
def write_weights(path: str | os.PathLike, weights: dict[str, torch.Tensor], net_ids: Sequence[str]) -> None:
    """Write stacked weights (name -> (K, ...)) of ``net_ids`` as one float32 safetensors file."""
    tensors = {n: weights[n].detach().to(torch.float32).contiguous().cpu() for n in PARAM_NAMES}
    meta = {"format": FORMAT_VERSION, "net_ids": json.dumps(list(net_ids))}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def read_weights(path: str | os.PathLike, indices: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """Stacked weights of the rows ``indices`` (all if None) of a shard; memory-mapped, reads only those rows."""
    out = {}
    with safe_open(str(path), framework="pt") as f:
        for n in PARAM_NAMES:
            if indices is None:
                out[n] = f.get_tensor(n)
                continue
            sl = f.get_slice(n)
            idx = np.asarray(indices, dtype=np.int64)
            if len(idx) and np.all(np.diff(idx) == 1):  # contiguous run: one slice
                out[n] = sl[int(idx[0]):int(idx[-1]) + 1]
            else:
                out[n] = torch.stack([sl[int(i):int(i) + 1][0] for i in idx]) if len(idx) else \
                    torch.empty((0, *sl.get_shape()[1:]))
    return out


def read_weight_ids(path: str | os.PathLike) -> list[str]:
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["net_ids"])


# ---------------------------------------------------------------- curves
def write_curves(path: str | os.PathLike, net_ids: Sequence[str], curves: dict[str, Sequence[np.ndarray]]) -> None:
    cols = {"net_id": pa.array(list(net_ids), pa.string())}
    for c in CURVE_NAMES:
        cols[c] = pa.array([np.asarray(v, dtype=np.float32) for v in curves[c]], pa.list_(pa.float32()))
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(cols), tmp, compression="zstd")


def read_curves(path: str | os.PathLike, net_ids: Sequence[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """``{net_id: {curve name: (epochs_run,) float32}}`` for the given networks (all if None)."""
    table = pq.read_table(path)
    ids = table.column("net_id").to_pylist()
    want = set(ids if net_ids is None else net_ids)
    cols = {c: table.column(c) for c in CURVE_NAMES}
    return {nid: {c: np.asarray(cols[c][i].values.to_numpy(zero_copy_only=False)) for c in CURVE_NAMES}
            for i, nid in enumerate(ids) if nid in want}


# ---------------------------------------------------------------- tables
def write_table(path: str | os.PathLike, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False, compression="zstd")


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    return pd.read_parquet(path)


def read_info(folder: str | os.PathLike) -> dict:
    return json.loads((Path(folder) / INFO_PATH).read_text())


def finalize_release(folder: str | os.PathLike, metadata: pd.DataFrame, info: dict) -> dict[str, str]:
    """Write the metadata table, zoo.json and the dataset card, then the manifest of the whole release."""
    from .card import render_card  # local import: card pulls in the template machinery

    folder = Path(folder)
    metadata = metadata.sort_values("net_id", kind="stable").reset_index(drop=True)
    write_table(folder / METADATA_PATH, metadata)
    info = {"format_version": FORMAT_VERSION, **info, "n_networks": int(len(metadata))}
    atomic_write_text(folder / INFO_PATH, json.dumps(info, indent=2, sort_keys=True) + "\n")
    atomic_write_text(folder / CARD_PATH, render_card(metadata, info))
    return write_manifest(folder)
