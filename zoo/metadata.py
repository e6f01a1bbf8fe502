"""The rows of the metadata table (``metadata/networks.parquet``): a network's configuration and training
columns (:func:`metadata_rows`) and its label columns (:func:`label_frame`, from :mod:`zoo.labels`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from . import labels
from .config import NetConfig
from .model import PARAM_NAMES
from .task import CURVES


def metadata_rows(configs: Sequence[NetConfig], epochs_run, diverged, curves: dict[str, Sequence[np.ndarray]],
                  weights_file: str, curves_file: str) -> pd.DataFrame:
    """The configuration and training columns of the metadata table (labels are added by :func:`label_frame`)."""
    rows = []
    for i, c in enumerate(configs):
        last = {k: (float(curves[k][i][-1]) if len(curves[k][i]) else float("nan")) for k in CURVES}
        rows.append({
            "net_id": c.net_id, "family": c.family, "seed": c.seed, "lr": c.lr, "delay_ms": c.delay_ms,
            "post_ms": c.post_ms, "response_ms": c.response_ms, "tau_ms": float(c.tau_ms),
            "nomemory": c.nomemory, "epochs": c.epochs, "epochs_run": int(epochs_run[i]),
            "diverged": bool(diverged[i]), "final_loss": last["loss"], "final_accuracy": last["accuracy"],
            "final_reliability": last["reliability"], "config": json.dumps(c.to_dict(), sort_keys=True),
            "weights_file": weights_file, "weights_index": i, "curves_file": curves_file,
        })
    return pd.DataFrame(rows)


def label_frame(df: pd.DataFrame, weights: dict[str, torch.Tensor], acc: Sequence[np.ndarray],
                rel: Sequence[np.ndarray], device: str | torch.device = "cpu") -> pd.DataFrame:
    """Add the label columns to rows ``df`` whose stacked weights and curves are given (same order)."""
    df = df.copy()
    cols: dict[str, list] = {}
    configs = [NetConfig.from_dict(json.loads(s)) for s in df["config"]]
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(c.batch_key(), []).append(i)
    results: list = [None] * len(df)
    for (task, mc), idx in groups.items():
        w = {n: weights[n][idx].to(device) for n in PARAM_NAMES}
        labs = labels.label_networks(w, mc, task, [configs[i].seed for i in idx],
                                     [acc[i] for i in idx], [rel[i] for i in idx])
        for i, lab in zip(idx, labs, strict=True):
            results[i] = lab.to_dict()
    for i in range(len(df)):
        for k, v in results[i].items():
            cols.setdefault(k, []).append(v)
    for k, v in cols.items():
        df[k] = v
    df["first_learned_epoch"] = df["first_learned_epoch"].astype("int64")
    df["psd_ratio"] = df["psd_ratio"].astype("float64")
    return df


#: columns every release's metadata table has, and what their values must be
REQUIRED_COLUMNS = {"net_id": "text", "family": "text", "seed": "integer", "lr": "number", "delay_ms": "integer",
                    "weights_file": "text", "weights_index": "integer", "curves_file": "text", "config": "text"}
_KIND_CHECKS = {"text": lambda s: pd.api.types.is_string_dtype(s) or pd.api.types.is_object_dtype(s),
                "integer": lambda s: pd.api.types.is_integer_dtype(s) and not pd.api.types.is_bool_dtype(s),
                "number": lambda s: pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)}


def check_metadata(df: pd.DataFrame, where) -> pd.DataFrame:
    """``df`` if it has the release's required columns with the right kinds of values and unique net ids;
    otherwise :class:`zoo.errors.CorruptFileError` naming ``where`` (the file) and the column."""
    from .errors import CorruptFileError

    for col, kind in REQUIRED_COLUMNS.items():
        if col not in df.columns:
            raise CorruptFileError(where, f"column {col!r}", "missing (every release's metadata table has it)")
        if len(df) and not _KIND_CHECKS[kind](df[col]):
            raise CorruptFileError(where, f"column {col!r}", f"holds {df[col].dtype} values, expected {kind}")
        if kind == "text" and len(df) and (df[col].isna().any() or (pd.api.types.is_object_dtype(df[col])
                                                                    and not df[col].map(type).eq(str).all())):
            raise CorruptFileError(where, f"column {col!r}", "holds values that are not text")
    if not df["net_id"].is_unique:
        dup = df["net_id"].duplicated()
        raise CorruptFileError(where, "column 'net_id'", f"{int(dup.sum())} duplicated ids, e.g. "
                               f"{df.loc[dup, 'net_id'].iloc[0]!r}")
    return df
