"""Loader benchmark on a full-size synthetic release (81,500 networks, the `paper` preset): a benchmark, not a test.

The release is written in the real format (docs/format.md) with the real writers (zoo.store, zoo.metadata.metadata_rows,
release.finalize_release): 188 safetensors shards of up to 512 networks grouped by (family, delay) exactly as
``zoo.grids.shards`` cuts the `paper` preset, holding random float32 weights (3.3 GB); the metadata table has the
preset's real configurations and random but consistent label columns (outcome, mechanism, learned, stable,
psd_ratio, first_learned_epoch). **Curve files are small dummies** (4 epochs per network, not the real 1,000 to
30,000), so the release is ~3.4 GB instead of the real size; no benchmark below reads curves.

Each measurement runs in a fresh Python subprocess (``import zoo`` is timed separately):

- open + filter: ``load_zoo(dir, delay=40, mechanism="limit_cycle")``, first call in the process (cold) and a
  second call (warm); and the very first open of the release, which also writes the uncompressed copy of the
  metadata table into ``<release>/.cache/`` (zoo.store.read_table_cached);
- 1,000 networks' weights: ``load_zoo(dir, net_id=ids)`` with 1,000 networks drawn at random (so spread over
  almost every shard), then ``Zoo.weights()``, under the default verification (shards already stamped as
  verified, the normal case for a release you built or pulled), on a first read with no stamps (every touched
  shard is hashed once), and with ``verify=False``; and the peak RSS of that process.
- with ``--cold``, the release files are evicted from the page cache (posix_fadvise DONTNEED) before each run.

Goals: open + filter < 0.2 s, 1,000 networks' weights < 1 s, peak RSS < 1 GB.

    python benchmarks/bench_loader.py                 # temp dir, deleted afterwards
    python benchmarks/bench_loader.py --dir /tmp/zoo-bench --json results.json   # reuse the release
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOALS = {"open_filter_s": 0.2, "weights_1000_s": 1.0, "peak_rss_mb": 1000.0}
OUTCOME_P = {"no_learning": 0.35, "unstable": 0.10, "limit_cycle": 0.25, "slow_point": 0.30}


# -------------------------------------------------------------------------------------------------- writing
def write_release(folder: Path, seed: int = 0, log=print) -> dict:
    """Write the synthetic `paper`-size release into ``folder``; returns timings."""
    import numpy as np
    import pandas as pd
    import torch

    from zoo import __version__, grids, layout, release, store, task
    from zoo.metadata import metadata_rows
    from zoo.model import PARAM_NAMES, ModelConfig, param_shapes

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    configs = grids.make_grid("paper")
    shards = grids.shards(configs, grids.load_preset("paper").shard_size)
    shapes = param_shapes(ModelConfig())
    parts = []
    for i, sh in enumerate(shards):
        k, ids = len(sh), sh.net_ids
        w = {n: torch.from_numpy(0.1 * rng.standard_normal((k, *shapes[n]), dtype=np.float32)) for n in PARAM_NAMES}
        wf, cf = layout.weights_path(sh.family, sh.shard_id), layout.curves_path(sh.family, sh.shard_id)
        store.write_weights(folder / wf, w, ids)
        curves = {c: [rng.random(4, dtype=np.float32) for _ in range(k)] for c in task.CURVES}
        store.write_curves(folder / cf, ids, curves)  # dummy: 4 epochs per network
        parts.append(metadata_rows(sh.configs, [c.epochs for c in sh.configs], [False] * k, curves, wf, cf))
        if (i + 1) % 20 == 0 or i + 1 == len(shards):
            log(f"  wrote {i + 1}/{len(shards)} shards ({time.perf_counter() - t0:.0f} s)")
    df = pd.concat(parts, ignore_index=True)
    n = len(df)
    outcome = rng.choice(list(OUTCOME_P), size=n, p=list(OUTCOME_P.values()))
    learned = np.isin(outcome, ["limit_cycle", "slow_point"])
    df["outcome"] = outcome
    df["mechanism"] = np.where(learned, outcome, None)
    df["learned"] = learned
    df["stable"] = outcome != "unstable"
    df["psd_ratio"] = np.where(outcome == "limit_cycle", rng.uniform(0, 0.5, n),
                               np.where(outcome == "slow_point", rng.uniform(0.5, 1, n), np.nan))
    df["first_learned_epoch"] = np.where(learned | (outcome == "unstable"),
                                         rng.integers(0, 1000, n), -1).astype("int64")
    df["label_version"] = "1"
    t_write = time.perf_counter() - t0
    info = {"preset": "paper", "code_version": __version__, "label_version": "1", "partial": False,
            "synthetic": "bench_loader.py: random weights, random labels, dummy 4-epoch curves"}
    t1 = time.perf_counter()
    release.finalize_release(folder, df, info)  # metadata, card, zoo.json, manifest (hashes every file)
    t_final = time.perf_counter() - t1
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {"networks": n, "shards": len(shards), "bytes": size, "write_s": t_write, "finalize_s": t_final,
            "metadata_bytes": (folder / layout.METADATA_PATH).stat().st_size}


# -------------------------------------------------------------------------------------------------- children
CHILD = r"""
import json, resource, sys, time
class timer:  # wall and CPU (process_time: all threads) seconds of a block
    def __init__(self, out, key):
        self.out, self.key = out, key
    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
    def __exit__(self, *exc):
        self.out[self.key + "_s"] = time.perf_counter() - self.w
        self.out[self.key + "_cpu_s"] = time.process_time() - self.c
out = {}
with timer(out, "import"):
    import zoo.api as api
args = json.loads(sys.argv[1])
if args["what"] == "open":
    for key in ("cold", "warm"):
        with timer(out, f"open_filter_{key}"):
            z = api.load_zoo(args["dir"], delay=40, mechanism="limit_cycle")
    out["selected"] = len(z)
else:
    ids = json.load(open(args["ids"]))
    with timer(out, "select"):
        z = api.load_zoo(args["dir"], net_id=ids, verify=args["verify"])
    out["rss_before_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with timer(out, "weights"):
        w = z.weights()
    out["selected"] = len(z)
    out["shards"] = int(z.metadata["weights_file"].nunique())
    out["weights_mb"] = sum(v.numel() * v.element_size() for v in w.values()) / 2**20
    out["check"] = float(w["W_rec.weight"][:, 0, 1].double().sum())
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def _evict(folder: Path) -> None:
    """Drop the release's files from the page cache (clean pages only; no root needed)."""
    for p in folder.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _child(args: dict, folder: Path, cold: bool) -> dict:
    if cold:
        _evict(folder)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True,
                         env=env, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _median(runs: list[dict]) -> dict:
    keys = [k for k, v in runs[0].items() if isinstance(v, float)]
    out = dict(runs[0])
    for k in keys:
        out[k] = sorted(r[k] for r in runs)[len(runs) // 2]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, help="release folder to write (or reuse if it holds one); default: temp")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--n", type=int, default=1000, help="networks whose weights are loaded")
    ap.add_argument("--repeats", type=int, default=3, help="subprocess runs per measurement (median reported)")
    ap.add_argument("--cold", action="store_true", help="evict the release from the page cache before each run")
    a = ap.parse_args(argv)

    tmp = None
    if a.dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="zoo-bench-"))
        folder = tmp / "zoo"
    else:
        folder = a.dir
    results: dict = {"goals": GOALS, "cold_page_cache": a.cold, "python": sys.version.split()[0]}
    try:
        import pandas as pd

        from zoo.layout import METADATA_PATH

        if (folder / "manifest.sha256").exists():
            print(f"reusing the release in {folder}")
        else:
            print(f"writing a synthetic 81,500-network release into {folder} ...")
            results["write"] = write_release(folder)
            w = results["write"]
            print(f"  {w['networks']} networks, {w['shards']} shards, {w['bytes'] / 1e9:.2f} GB; shards written in "
                  f"{w['write_s']:.0f} s, metadata + card + manifest in {w['finalize_s']:.0f} s")
        meta = pd.read_parquet(folder / METADATA_PATH, columns=["net_id"])
        import numpy as np

        ids = sorted(np.random.default_rng(1).choice(meta["net_id"].to_numpy(), a.n, replace=False).tolist())
        ids_file = folder / ".cache" / "bench_ids.json"
        ids_file.parent.mkdir(parents=True, exist_ok=True)
        ids_file.write_text(json.dumps(ids))
        stamps = folder / ".cache" / "verified.json"
        saved = stamps.read_bytes() if stamps.exists() else None

        results["open"] = _median([_child({"what": "open", "dir": str(folder)}, folder, a.cold)
                                   for _ in range(a.repeats)])
        runs = []
        for _ in range(a.repeats):  # the first open ever writes the uncompressed metadata copy in .cache/
            for p in (folder / ".cache").glob("metadata-*.arrow"):
                p.unlink()
            runs.append(_child({"what": "open", "dir": str(folder)}, folder, a.cold))
        results["open_first_ever"] = _median(runs)
        modes = {}
        for name, verify, drop_stamps in (("verified (stamps)", True, False), ("first read (hash)", True, True),
                                          ("verify=False", False, False)):
            runs = []
            for _ in range(a.repeats):
                if drop_stamps:
                    stamps.unlink(missing_ok=True)
                runs.append(_child({"what": "weights", "dir": str(folder), "ids": str(ids_file), "verify": verify},
                                   folder, a.cold))
            if saved is not None:
                stamps.write_bytes(saved)
            modes[name] = _median(runs)
        results["weights"] = modes
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def t(m, key):
        return f"{m[key + '_s']:.3f}", f"{m[key + '_cpu_s']:.3f}"

    o, first = results["open"], results["open_first_ever"]
    rows = [("import zoo", *t(o, "import"), ""),
            ("open + filter, cold", *t(o, "open_filter_cold"), f"< {GOALS['open_filter_s']} s"),
            ("open + filter, warm", *t(o, "open_filter_warm"), f"< {GOALS['open_filter_s']} s"),
            (f"  networks selected: {o['selected']}", "", "", ""),
            ("open + filter, first open ever", *t(first, "open_filter_cold"), "(writes .cache/metadata-*.arrow)")]
    for name, m in results["weights"].items():
        rows += [(f"{m['selected']} nets' weights, {name}", *t(m, "weights"),
                  f"< {GOALS['weights_1000_s']} s" if name != "first read (hash)" else ""),
                 (f"  select the {m['selected']} ids ({m['shards']} shards)", *t(m, "select"), ""),
                 ("  peak RSS (MB)", f"{m['peak_rss_mb']:.0f}", "", f"< {GOALS['peak_rss_mb']:.0f} MB")]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measurement':<{width}}  {'wall s':>8}  {'CPU s':>8}  goal      (median of {a.repeats} fresh "
          "processes" + (", page cache evicted" if a.cold else "") + ")")
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]:>8}  {r[2]:>8}  {r[3]}")
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))
        print(f"results written to {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
