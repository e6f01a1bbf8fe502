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
from .train import CURVES


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
