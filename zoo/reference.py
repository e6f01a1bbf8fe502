"""Import the authors' original release (one folder per network) into the zoo's release format.

The reference scripts wrote, per network (``/work/shared/reference/paper-method.md``, last section)::

    <results>/lr{lr!r}_delay_{D_seconds!r}/process_{seed}/
        model_final.pt           torch state_dict: W_in.weight, W_in.bias, W_rec.weight, W_rec.bias,
                                 W_out.weight, W_out.bias
        training_details.npz     loss_list, reaction_accuracy_list, reaction_reliability_list,
                                 W_rec_grad_list (one value per epoch)
        class.txt                0 no learning, 1 limit cycle, 2 slow point, 3 unstable (after labelling);
                                 nomemory (its own sort script): 0 not learned, 1 learned
        psd_ratio.txt            learned networks only

:func:`import_reference` turns such a tree (one family's results folder) into a release folder with the same
files as a build (docs/format.md): weight shards of up to 512 networks per (family, delay) group cut like
:func:`zoo.grids.shards`, curve files, the metadata table, card, ``zoo.json`` and manifest. The authors' label
is kept as ``reference_outcome`` (no_learning / limit_cycle / slow_point / unstable; nomemory: no_learning /
learned) and ``reference_psd_ratio``;
our own labels are recomputed from the imported weights and curves (``label=True``), or from the curves only
(``label=False``: learned networks then have outcome/mechanism null and psd_ratio NaN).

How each network's :class:`~zoo.config.NetConfig` is made:

- the family's fixed fields (post, tau, response length, nomemory, diverge_loss) from
  :func:`zoo.grids.family_grid`;
- ``lr`` parsed from the folder name and replaced by the family's grid value when they agree to a relative
  tolerance of 1e-9 (so the net_id is the one a rebuild would give); otherwise the parsed value is kept;
  ``results_finetune`` (nopost-narrow) also holds nopost's rates, and those networks are imported as nopost
  (``ALSO_HOLDS``; ``zoo.json`` counts ``networks_per_family``);
- ``delay_ms = round(D_seconds * 1000)``; for the nomemory family (no delay) the folder's value is taken as the
  response length (``response_ms``) and ``delay_ms = 0``;
- ``seed`` from ``process_{seed}``;
- ``epochs``: the family's epoch rule for that lr when the curves have exactly that many epochs (or fewer, for a
  family with ``diverge_loss`` whose last loss exceeds it: the run diverged); otherwise the number of epochs in
  the curves (the reference trained another number of epochs than the rule). ``zoo.json`` counts both cases
  (``imported_from.epochs_from``).

Nothing is invented: a folder without readable weights (missing, corrupt, unexpected keys or shapes) or without
readable curves is skipped; a missing or unreadable ``class.txt`` gives ``reference_outcome`` null, a missing
``psd_ratio.txt`` ``reference_psd_ratio`` NaN. Every such case is listed in the returned report and in
``zoo.json`` (``import_problems``). Checkpoints are read with ``torch.load(weights_only=True)`` and curves with
``numpy.load(allow_pickle=False)``: no arbitrary object is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import grids, labels, layout, publish, release, store
from .config import NetConfig
from .errors import ZooError
from .manifest import sha256_file
from .metadata import label_frame, metadata_rows
from .model import PARAM_NAMES, param_shapes
from .version import __version__

#: results folder names of the reference scripts, per family (searched when ``src`` is their parent)
REFERENCE_FOLDERS = {
    "nopost": ("results", "results_nopost"),  # trained into results/, labelled in results_nopost/ (sort script)
    "nopost-narrow": ("results_finetune",),
    "post": ("results_post_longer_epoch", "results_post"),
    "longtau": ("results_longertau",),
    "nomemory": ("results_fixed",),
}
#: families whose results folder also holds other families' networks: the nopost-narrow sort and figure scripts
#: read all 30 pooled no-post rates from results_finetune, so it holds nopost's rates too; those are imported
#: as nopost networks (their own grid, epoch rule and net_id), not as off-grid nopost-narrow ones
ALSO_HOLDS = {"nopost-narrow": ("nopost",)}
#: class.txt code -> outcome
REFERENCE_CLASSES = {0: "no_learning", 1: "limit_cycle", 2: "slow_point", 3: "unstable"}
#: the nomemory family's codes: its sort script writes 1 for every learned network (no mechanism, no psd_ratio)
NOMEMORY_CLASSES = {0: "no_learning", 1: "learned"}
WEIGHTS_NAME = "model_final.pt"
CURVES_NAME = "training_details.npz"
CLASS_NAME = "class.txt"
PSD_NAME = "psd_ratio.txt"
#: npz array -> our curve name
CURVE_ARRAYS = {"loss_list": "loss", "reaction_accuracy_list": "accuracy",
                "reaction_reliability_list": "reliability", "W_rec_grad_list": "grad_norm"}
LR_REL_TOL = 1e-9

_NET_DIR = re.compile(r"^lr(?P<lr>[^_]+)_delay_(?P<delay>[^_]+)$")
_PROC_DIR = re.compile(r"^process_(?P<seed>\d+)$")

SKIPPED = "skipped"
IMPORTED = "imported"


@dataclass
class ImportReport:
    """What :func:`import_reference` did. ``problems``: one dict per issue, ``{"folder", "problem", "action"}``
    (``action`` is ``"skipped"`` for networks left out, ``"imported"`` for networks imported with a gap,
    ``"ignored"`` for entries that are not network folders)."""

    source: str
    out: str
    family: str
    found: int = 0
    imported: int = 0
    problems: list[dict] = field(default_factory=list)
    epochs_from: dict[str, int] = field(default_factory=lambda: {"family_rule": 0, "curves": 0})
    lr_off_grid: list[float] = field(default_factory=list)
    reference_outcomes: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    n_shards: int = 0

    @property
    def skipped(self) -> int:
        return sum(p["action"] == SKIPPED for p in self.problems)

    def problem(self, folder: str, problem: str, action: str) -> None:
        self.problems.append({"folder": folder, "problem": problem, "action": action})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["skipped"] = self.skipped
        return d

    def summary(self) -> str:
        return (f"{self.imported} of {self.found} network folders imported from {self.source} into {self.out} "
                f"({self.n_shards} shards); {self.skipped} skipped, {len(self.problems)} problem(s) reported")


@dataclass
class _Entry:
    rel: str  # folder relative to the results root
    path: Path
    lr: float  # grid value if matched, else parsed
    sweep_ms: int  # delay (or response length for nomemory)
    seed: int
    grid: grids.FamilyGrid  # the family it belongs to (the imported one, or one it also holds: ALSO_HOLDS)


def find_results_folder(src: str | os.PathLike, family: str) -> Path:
    """``src`` itself if it holds ``lr*_delay_*`` folders, else its subfolder named as the reference scripts
    named the family's results folder (``results``, ``results_finetune``, ...); where several exist, the first
    that holds labels (a ``class.txt``), as the sort scripts wrote them into one of them only."""
    src = Path(src).expanduser()
    if not src.is_dir():
        raise ZooError(f"{src} is not a folder")
    if any(_NET_DIR.match(p.name) for p in src.iterdir() if p.is_dir()):
        return src
    found = [src / name for name in REFERENCE_FOLDERS.get(family, ()) if (src / name).is_dir()]
    for folder in found:
        if next(folder.glob(f"lr*_delay_*/process_*/{CLASS_NAME}"), None) is not None:
            return folder
    if found:
        return found[0]
    raise ZooError(f"{src} holds no network folders (lr<LR>_delay_<D>/process_<SEED>/) and no results folder of "
                   f"family {family!r} ({', '.join(REFERENCE_FOLDERS.get(family, ()))})")


def _match_lr(lr: float, grid_lrs) -> float | None:
    for g in grid_lrs:
        if math.isclose(lr, g, rel_tol=LR_REL_TOL, abs_tol=0.0):
            return float(g)
    return None


def _scan(root: Path, grid: grids.FamilyGrid, report: ImportReport) -> list[_Entry]:
    """Network folders under ``root`` (parsed names), in grid order; unparseable or duplicate ones reported."""
    entries: list[_Entry] = []
    off_grid: set[float] = set()
    lr_order = {lr: i for i, lr in enumerate(grid.lrs)}
    others = [grids.family_grid(f) for f in ALSO_HOLDS.get(grid.family, ())]
    for d in sorted(root.iterdir(), key=lambda p: p.name):
        if not d.is_dir():
            continue
        m = _NET_DIR.match(d.name)
        if not m:
            report.problem(d.name, "not a network folder (expected lr<LR>_delay_<D_SECONDS>)", "ignored")
            continue
        try:
            lr_parsed, seconds = float(m["lr"]), float(m["delay"])
        except ValueError:
            report.problem(d.name, "cannot parse the learning rate or delay in the folder name", "ignored")
            continue
        if not (math.isfinite(lr_parsed) and lr_parsed > 0 and math.isfinite(seconds) and seconds >= 0):
            report.problem(d.name, f"invalid learning rate {lr_parsed!r} or delay {seconds!r}", "ignored")
            continue
        owner, lr = grid, _match_lr(lr_parsed, grid.lrs)
        for other in others:
            if lr is None and (lr := _match_lr(lr_parsed, other.lrs)) is not None:
                owner = other
        if lr is None:
            lr = lr_parsed
            off_grid.add(lr)
        sweep_ms = int(round(seconds * 1000))
        for p in sorted(d.iterdir(), key=lambda p: p.name):
            rel = f"{d.name}/{p.name}"
            pm = _PROC_DIR.match(p.name)
            if not p.is_dir() or not pm:
                report.problem(rel, "not a network folder (expected process_<SEED>)", "ignored")
                continue
            report.found += 1
            entries.append(_Entry(rel, p, lr, sweep_ms, int(pm["seed"]), owner))
    entries.sort(key=lambda e: (e.grid.family != grid.family, e.sweep_ms, lr_order.get(e.lr, len(lr_order)), -e.lr,
                                e.seed, e.rel))
    out, seen = [], {}
    for e in entries:
        key = (e.grid.family, e.sweep_ms, e.lr, e.seed)
        if key in seen:
            report.problem(e.rel, f"same network (lr {e.lr!r}, {grid.sweep} {e.sweep_ms}, seed {e.seed}) as "
                                  f"{seen[key]}", SKIPPED)
            continue
        seen[key] = e.rel
        out.append(e)
    report.lr_off_grid = sorted(off_grid, reverse=True)
    return out


def _base_config(e: _Entry, grid: grids.FamilyGrid) -> NetConfig:
    sweep = {"response_ms": e.sweep_ms, "delay_ms": 0} if grid.nomemory else \
        {"delay_ms": e.sweep_ms, "response_ms": grid.response_ms[0]}
    return NetConfig(family=grid.family, seed=e.seed, lr=e.lr, epochs=grid.epochs_for(e.lr), post_ms=grid.post_ms,
                     tau_ms=grid.tau_ms, nomemory=grid.nomemory, diverge_loss=grid.diverge_loss, **sweep)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _load_weights(e: _Entry, cfg: NetConfig, report: ImportReport) -> dict[str, torch.Tensor] | None:
    path = e.path / WEIGHTS_NAME
    if not path.is_file():
        report.problem(e.rel, f"no {WEIGHTS_NAME}", SKIPPED)
        return None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # pickled objects other than tensors: refused, never run
        what = next((ln.strip() for ln in str(err).splitlines() if "GLOBAL" in ln.upper()), "")
        report.problem(e.rel, f"{WEIGHTS_NAME} holds objects other than tensors, refused by "
                              f"torch.load(weights_only=True){': ' + what if what else ''}", SKIPPED)
        return None
    except Exception as err:  # corrupt or truncated file
        report.problem(e.rel, f"unreadable {WEIGHTS_NAME} ({_first_line(err)})", SKIPPED)
        return None
    if not isinstance(sd, dict):
        report.problem(e.rel, f"{WEIGHTS_NAME} holds a {type(sd).__name__}, not a state_dict", SKIPPED)
        return None
    keys = set(sd)
    if keys != set(PARAM_NAMES):
        missing, extra = sorted(set(PARAM_NAMES) - keys), sorted(map(str, keys - set(PARAM_NAMES)))
        report.problem(e.rel, f"unexpected state_dict keys in {WEIGHTS_NAME} (missing {missing}, extra {extra})",
                       SKIPPED)
        return None
    shapes = param_shapes(cfg.model_config())
    out = {}
    for n in PARAM_NAMES:
        t = sd[n]
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            report.problem(e.rel, f"{n} in {WEIGHTS_NAME} is not a floating-point tensor", SKIPPED)
            return None
        if tuple(t.shape) != shapes[n]:
            report.problem(e.rel, f"{n} in {WEIGHTS_NAME} has shape {tuple(t.shape)}, expected {shapes[n]}", SKIPPED)
            return None
        if t.dtype != torch.float32:
            report.problem(e.rel, f"{n} in {WEIGHTS_NAME} is {t.dtype}; stored as float32", IMPORTED)
        out[n] = t.detach().to(torch.float32).contiguous()
    return out


def _load_curves(e: _Entry, report: ImportReport) -> dict[str, np.ndarray] | None:
    path = e.path / CURVES_NAME
    if not path.is_file():
        report.problem(e.rel, f"no {CURVES_NAME}", SKIPPED)
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in CURVE_ARRAYS if k not in z.files]
            if missing:
                report.problem(e.rel, f"{CURVES_NAME} lacks {missing}", SKIPPED)
                return None
            raw = {k: z[k] for k in CURVE_ARRAYS}
    except Exception as err:  # not a zip, truncated, object arrays (pickled), ...
        report.problem(e.rel, f"unreadable {CURVES_NAME} ({_first_line(err)})", SKIPPED)
        return None
    curves = {}
    for k, name in CURVE_ARRAYS.items():
        a = np.asarray(raw[k])
        if a.ndim != 1 or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            report.problem(e.rel, f"{k} in {CURVES_NAME} is not a 1-D numeric array (shape {a.shape}, "
                                  f"dtype {a.dtype})", SKIPPED)
            return None
        curves[name] = a.astype(np.float32)
    lengths = {len(v) for v in curves.values()}
    if len(lengths) != 1 or 0 in lengths:
        report.problem(e.rel, f"curves in {CURVES_NAME} are empty or differ in length "
                              f"({ {k: len(v) for k, v in raw.items()} })", SKIPPED)
        return None
    return curves


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="strict").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _load_reference_label(e: _Entry, report: ImportReport, nomemory: bool) -> tuple[str | None, float]:
    outcome, ratio = None, float("nan")
    classes = NOMEMORY_CLASSES if nomemory else REFERENCE_CLASSES
    cpath, ppath = e.path / CLASS_NAME, e.path / PSD_NAME
    if not cpath.exists():
        report.problem(e.rel, f"no {CLASS_NAME}: reference_outcome is null", IMPORTED)
    else:
        text = _read_text(cpath)
        code = None
        try:
            v = float(text)  # None (unreadable) -> TypeError
            if v.is_integer() and int(v) in classes:
                code = int(v)
        except (TypeError, ValueError):
            pass
        if code is None:
            shown = (text[:40] + "...") if text and len(text) > 40 else text
            report.problem(e.rel, f"unreadable {CLASS_NAME} ({shown!r}; expected {', '.join(map(str, classes))}): "
                                  "reference_outcome is null", IMPORTED)
        else:
            outcome = classes[code]
    if ppath.exists():
        try:
            ratio = float(_read_text(ppath))  # None (unreadable) -> TypeError
        except (TypeError, ValueError):
            ratio = float("nan")
            report.problem(e.rel, f"unreadable {PSD_NAME}: reference_psd_ratio is NaN", IMPORTED)
    elif outcome in labels.MECHANISMS:
        report.problem(e.rel, f"no {PSD_NAME} for a learned network: reference_psd_ratio is NaN", IMPORTED)
    return outcome, ratio


def _final_config(base: NetConfig, grid: grids.FamilyGrid, curves: dict[str, np.ndarray],
                  report: ImportReport) -> tuple[NetConfig, bool]:
    """The config with ``epochs`` set (see the module docstring), and whether the run diverged."""
    n, rule = len(curves["loss"]), base.epochs
    if n == rule:
        report.epochs_from["family_rule"] += 1
        return base, False
    if grid.diverge_loss is not None and n < rule and not float(curves["loss"][-1]) <= grid.diverge_loss:
        report.epochs_from["family_rule"] += 1
        return base, True
    report.epochs_from["curves"] += 1
    return dataclasses.replace(base, epochs=n), False


def _curve_only_labels(df: pd.DataFrame, acc, rel, nomemory: bool) -> pd.DataFrame:
    df = df.copy()
    labs = [labels.label_curves(a, r, nomemory=nomemory).to_dict() for a, r in zip(acc, rel, strict=True)]
    for k in labs[0]:
        df[k] = [lab[k] for lab in labs]
    df["first_learned_epoch"] = df["first_learned_epoch"].astype("int64")
    df["psd_ratio"] = df["psd_ratio"].astype("float64")
    return df


def import_reference(src: str | os.PathLike, family: str, out: str | os.PathLike, *, label: bool = True,
                     device: str | torch.device = "cpu", shard_size: int = 512,
                     progress: Callable[[str, int], None] | None = None,
                     picture: release.PictureWriter | None = None) -> ImportReport:
    """Import the reference release of ``family`` from ``src`` (its results folder, or the folder holding it)
    into a new release folder ``out``. Returns an :class:`ImportReport`; problems are also written to
    ``zoo.json`` (``import_problems``). ``progress(shard_id, n_networks)`` is called after each shard; ``picture`` draws the
    card's picture (:func:`zoo.figures.write_phase_picture`). A
    non-empty ``out`` that holds no release or build of this package is refused."""
    publish.check_output_folder(out)
    grid = grids.family_grid(family)
    root = find_results_folder(src, family)
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ZooError(f"{out} is not empty: import into a new folder (or delete it first)")
    report = ImportReport(source=str(root.resolve()), out=str(out), family=family)
    entries = _scan(root, grid, report)
    by_id = {}
    for e in entries:
        by_id.setdefault(_base_config(e, e.grid), e)
    parts, written = [], {}
    for shard in grids.shards(list(by_id), shard_size):
        configs, weights, curves, refs, diverged = [], [], [], [], []
        for base in shard.configs:
            e = by_id[base]
            try:
                base.task()
            except ZooError as err:
                report.problem(e.rel, f"{grid.sweep} {e.sweep_ms} ms is not usable: {err}", SKIPPED)
                continue
            w = _load_weights(e, base, report)
            if w is None:
                continue
            c = _load_curves(e, report)
            if c is None:
                continue
            cfg, div = _final_config(base, e.grid, c, report)
            configs.append(cfg)
            weights.append(w)
            curves.append(c)
            diverged.append(div)
            refs.append(_load_reference_label(e, report, e.grid.nomemory))
        if not configs:
            continue
        ids = [c.net_id for c in configs]
        stacked = {n: torch.stack([w[n] for w in weights]) for n in PARAM_NAMES}
        cv = {name: [c[name] for c in curves] for name in CURVE_ARRAYS.values()}
        wf, cf = layout.weights_path(shard.family, shard.shard_id), layout.curves_path(shard.family, shard.shard_id)
        store.write_weights(out / wf, stacked, ids)
        store.write_curves(out / cf, ids, cv)
        written.update({rel: sha256_file(out / rel) for rel in (wf, cf)})  # the release keeps what we just wrote
        df = metadata_rows(configs, [len(c["loss"]) for c in curves], diverged, cv, wf, cf)
        if label:
            df = label_frame(df, stacked, cv["accuracy"], cv["reliability"], device)
        else:
            df = _curve_only_labels(df, cv["accuracy"], cv["reliability"], shard.configs[0].nomemory)
        df["reference_outcome"] = pd.Series([r[0] for r in refs], dtype="object")
        df["reference_psd_ratio"] = np.array([r[1] for r in refs], dtype=np.float64)
        parts.append(df)
        report.n_shards += 1
        report.imported += len(df)
        if progress is not None:
            progress(shard.shard_id, len(df))
    if not parts:
        shown = "; ".join(f"{p['folder']}: {p['problem']}" for p in report.problems[:5])
        raise ZooError(f"no network could be imported from {root} ({report.found} network folders found)"
                       + (f": {shown}" if shown else ""))
    meta = pd.concat(parts, ignore_index=True)
    report.reference_outcomes = {str(k): int(v) for k, v in
                                 meta["reference_outcome"].fillna("(none)").value_counts().sort_index().items()}
    report.outcomes = {str(k): int(v) for k, v in meta["outcome"].fillna("(none)").value_counts().sort_index().items()}
    info = {
        "preset": f"reference-{family}", "code_version": __version__,
        "label_version": labels.LABEL_VERSION, "mechanisms_labelled": bool(label), "partial": False,
        "imported_from": {
            "path": report.source, "results_folder": root.name, "family": family,
            "networks_per_family": {str(k): int(v) for k, v in meta["family"].value_counts().sort_index().items()},
            "network_folders": report.found, "networks_imported": report.imported,
            "networks_skipped": report.skipped, "lr_off_grid": report.lr_off_grid,
            "lr_rule": f"matched to the family grid with rel tol {LR_REL_TOL:g}, else the parsed value",
            "sweep_axis": f"folder delay_<D_SECONDS> -> {grid.sweep} = round(D * 1000)",
            "epochs_from": dict(report.epochs_from),
            "epochs_rule": "the family's epoch rule when the curves have that many epochs (or fewer after a "
                           "divergence), else the number of epochs in the curves",
            "reference_outcomes": report.reference_outcomes,
        },
        "import_problems": report.problems,
    }
    release.finalize_release(out, meta, info, verified=written, picture=picture)
    return report
