"""Compile the Triton kernels ahead of time for a GPU target, on a machine without a GPU.

    PYTHONPATH=. python benchmarks/triton_aot.py [--arch 90] [--json out.json] [--markdown]

For every launch option of :data:`zoo.kernels.triton_kernels.LAUNCH_OPTIONS` (and the TF32 variant the trainer
uses with ``train_networks(tf32=True)``) it compiles the forward and backward kernels for ``GPUTarget("cuda",
arch, 32)`` with the Triton installed in this interpreter (no torch needed: ``zoo.kernels`` imports its
modules lazily and ``zoo.kernels.triton_kernels`` does not need torch), and reports per kernel: shared memory per block (``metadata.shared``), registers per thread, stack frame and
spills (``ptxas -v`` on the PTX, with the ptxas that the Triton wheel ships), the number of TF32 tensor-core
instructions in the PTX (``mma``/``wgmma`` with ``.tf32`` operands) and the compile time. The specialisation
mimics a launch of the benchmark's problem (128 trials of 100 units, T = 96, 16-byte aligned pointers).

Prints JSON (``--json`` writes it to a file, atomically) and, with ``--markdown``, a table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # compiled kernels, never the interpreter
if "TRITON_CACHE_DIR" not in os.environ:  # a fresh cache: compile times are real, nothing stale is reused
    import atexit
    import shutil

    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="zoo-triton-aot-")
    atexit.register(shutil.rmtree, os.environ["TRITON_CACHE_DIR"], ignore_errors=True)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from zoo.kernels import triton_kernels as kt  # noqa: E402

#: shared memory one block may use on sm_90 (H100, H200): 227 KiB
SMEM_LIMIT = {90: 232448, 80: 166912, 89: 101376, 86: 101376}
#: the problem whose launch is mimicked: trials, units, outputs, inputs, steps, cue steps, networks
B, N, NO, NI, T, C, K = 128, 100, 2, 2, 96, 6, 4096
_TF32_RE = re.compile(r"^\s*(?:@\S+\s+)?(?:mma|wgmma)\.[^\n;]*\.tf32", re.M)


def _int_sig(v: int) -> str:
    return "i32" if -(2**31) <= v < 2**31 else "i64"


def _source(fn, args: dict, constexprs: dict) -> ASTSource:
    """ASTSource with the types and 16-divisibility a launch with ``args`` would specialise to."""
    sig, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in constexprs:
            sig[name] = "constexpr"
            continue
        v = args[name]
        if isinstance(v, str):  # a pointer: "*fp32", "*i64" (torch allocations are 16-byte aligned)
            sig[name], attrs[(i,)] = v, [["tt.divisibility", 16]]
        elif isinstance(v, float):
            sig[name] = "fp32"
        else:
            param = fn.params[i]
            sig[name] = getattr(param, "annotation_type", "") or _int_sig(v)
            if v % 16 == 0 and not param.do_not_specialize:
                attrs[(i,)] = [["tt.divisibility", 16]]
    return ASTSource(fn, sig, constexprs=constexprs, attrs=attrs)


def forward_source(precision: str, bb: int) -> ASTSource:
    f32 = "*fp32"
    args = dict(W=f32, DC=f32, BIAS=f32, WO=f32, BO=f32, KEYS="*i64", R=f32, Z=f32, L=f32,
                w_ks=N * N, dc_ks=B * N, bias_ks=N, wo_ks=NO * N, bo_ks=NO, r_ks=(T + 1) * B * N, z_ks=T * B * N,
                l_ks=T * B * NO, ctr0=3 << 40, T=T, C=C, B=B, N=N, sigma=0.05, alpha=0.5, init_std=0.1)
    meta = kt.launch_meta(B, N, NO, bb)
    return _source(kt.forward_kernel, args, dict(meta, EVEN_N=N % 2 == 0, PRECISION=precision))


def backward_source(precision: str, bb: int, fused: bool) -> ASTSource:
    f32, nb = "*fp32", -(-B // bb)
    args = dict(W=f32, WO=f32, Z=f32, DL=f32, R=f32, U=f32, GB=f32, GW=f32, GWO=f32, GWI=f32,
                w_ks=N * N, wo_ks=NO * N, z_ks=T * B * N, dl_ks=T * B * NO, r_ks=(T + 1) * B * N, gb_ks=nb * N,
                gw_ks=nb * N * N, gwo_ks=nb * NO * N, gwi_ks=nb * NI * N, T=T, C=C, B=B, N=N, alpha=0.5)
    meta = kt.launch_meta(B, N, NO, bb)
    ni = NI if fused else 1
    return _source(kt.backward_kernel, args, dict(meta, NI=ni, IP=max(2, triton.next_power_of_2(ni)),
                                                   PRECISION=precision, FUSED=fused))


def _ptxas(arch: int) -> str:
    """The ptxas Triton itself runs for ``arch`` (it ships one per CUDA generation)."""
    from triton.backends.nvidia import compiler as nv

    for call in (lambda: nv.get_ptxas(arch), lambda: nv.get_ptxas()):
        try:
            return call().path
        except Exception:  # noqa: BLE001 - older or newer signatures
            pass
    return str(Path(nv.__file__).parent / "bin" / "ptxas")


def ptxas_usage(text: str) -> dict:
    """Registers, stack frame and spills from a ``ptxas -v`` log."""
    num = lambda pat: int(m.group(1)) if (m := re.search(pat, text)) else None  # noqa: E731
    return {"regs": num(r"Used (\d+) registers"), "stack": num(r"(\d+) bytes stack frame"),
            "spill_stores": num(r"(\d+) bytes spill stores"), "spill_loads": num(r"(\d+) bytes spill loads")}


def _run_ptxas(ptx: str, arch: int) -> str:
    """``ptxas -v`` on ``ptx`` with the ptxas Triton uses (when its own log was not captured)."""
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "k.ptx"
        src.write_text(ptx)
        cmd = [_ptxas(arch), "-v", f"--gpu-name=sm_{arch}a" if arch >= 90 else f"--gpu-name=sm_{arch}", str(src),
               "-o", str(Path(d) / "k.cubin")]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if out.returncode:
        raise RuntimeError(f"ptxas failed: {(out.stdout + out.stderr)[-500:]}")
    return out.stdout + out.stderr


def compile_one(src: ASTSource, arch: int, warps: int, maxnreg: int | None) -> dict:
    """Compile one kernel; its shared memory, registers, stack, spills, TF32 instructions and compile time."""
    from triton import knobs

    opts = {"num_warps": warps, **({"maxnreg": maxnreg} if maxnreg else {})}
    log = io.StringIO()
    t = time.perf_counter()
    try:
        with knobs.nvidia.scope() if hasattr(knobs.nvidia, "scope") else contextlib.nullcontext():
            knobs.nvidia.dump_ptxas_log = True  # Triton prints its own ptxas -v log: captured below
            with contextlib.redirect_stdout(log):
                ck = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=opts)
    except Exception as exc:  # noqa: BLE001 - reported, e.g. an out-of-resources failure
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}", "compile_s": time.perf_counter() - t}
    finally:
        knobs.nvidia.dump_ptxas_log = False
    dt = time.perf_counter() - t
    ptx = ck.asm["ptx"]
    text = log.getvalue()
    if "Used" not in text:
        text = _run_ptxas(ptx, arch)
    row = {"shared": int(ck.metadata.shared), "tf32_mma": len(_TF32_RE.findall(ptx)), "compile_s": dt}
    row.update(ptxas_usage(text))
    row["spills"] = (row["spill_stores"] or 0) + (row["spill_loads"] or 0)
    return row


def variants() -> list[dict]:
    """Every launch option the benchmark may try, then the trainer's default with TF32 (``tf32=True``)."""
    return [dict(o) for o in kt.LAUNCH_OPTIONS] + [dict(kt.current_option(), precision="tf32")]


def parse_option(text: str) -> dict:
    """``precision,bb,warps,grads[,maxnreg]``, e.g. ``ieee,32,8,gemm,128``."""
    f = text.split(",")
    return kt.launch_option(f[0], int(f[1]), int(f[2]), f[3], int(f[4]) if len(f) > 4 and f[4] else None)


@triton.jit
def _rewrite_probe(X, Y, OUT, M: tl.constexpr, K: tl.constexpr, N: tl.constexpr):
    """The form Triton <= 3.6 turns into a TF32 dot (triton-lang/triton#9609): proves the detector sees it."""
    x = tl.load(X + tl.arange(0, M)[:, None] * K + tl.arange(0, K)[None, :])
    y = tl.load(Y + tl.arange(0, K)[:, None] * N + tl.arange(0, N)[None, :])
    o = tl.sum(x[:, :, None] * y[None, :, :], axis=1)
    tl.store(OUT + tl.arange(0, M)[:, None] * N + tl.arange(0, N)[None, :], o)


def rewrite_probe(arch: int) -> int:
    """TF32 instructions in the probe's PTX (> 0 where this Triton rewrites the reduction into a TF32 dot)."""
    src = ASTSource(_rewrite_probe, {"X": "*fp32", "Y": "*fp32", "OUT": "*fp32", "M": "constexpr", "K": "constexpr",
                                     "N": "constexpr"}, constexprs={"M": 32, "K": 16, "N": 128})
    ck = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": 4})
    return len(_TF32_RE.findall(ck.asm["ptx"]))


def _compile_task(task: tuple) -> dict:
    kind, precision, bb, warps, maxnreg, fused, arch = task
    src = forward_source(precision, bb) if kind == "forward" else backward_source(precision, bb, fused)
    return compile_one(src, arch, warps, maxnreg)


def run(arch: int = 90, only: list[int] | None = None, options: list[dict] | None = None,
        kernels: str = "both", jobs: int | None = None) -> dict:
    """Compile every option's kernels (each distinct kernel once, ``jobs`` processes) and collect the rows."""
    import concurrent.futures as cf
    import multiprocessing as mp

    limit = SMEM_LIMIT.get(arch, 232448)
    opts = [o for i, o in enumerate(options or variants()) if only is None or i in only]
    tasks = {}
    for o in opts:
        p, bb, w, mr = o["precision"], o["bb"], o["warps"], o.get("maxnreg")
        if kernels != "backward":
            tasks.setdefault(("forward", p, bb, w, mr, False, arch), None)
        if kernels != "forward":
            tasks.setdefault(("backward", p, bb, w, mr, o["grads"] == "kernel", arch), None)
    jobs = jobs or min(len(tasks), os.cpu_count() or 1)
    t0 = time.perf_counter()
    if jobs > 1:
        with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork")) as ex:
            for task, row in zip(tasks, ex.map(_compile_task, list(tasks)), strict=True):
                tasks[task] = row
    else:
        for task in tasks:
            tasks[task] = _compile_task(task)
    rows, skip = [], {"error": "not compiled"}
    for o in opts:
        p, bb, w, mr = o["precision"], o["bb"], o["warps"], o.get("maxnreg")
        fwd = tasks.get(("forward", p, bb, w, mr, False, arch), skip)
        bwd = tasks.get(("backward", p, bb, w, mr, o["grads"] == "kernel", arch), skip)
        row = {"option": o, "forward": fwd, "backward": bwd}
        row["fits"] = all("error" not in k and k["shared"] <= limit for k in (fwd, bwd) if k is not skip)
        rows.append(row)
        print(f"  {label(o)}: fwd {brief(fwd)}; bwd {brief(bwd)}", file=sys.stderr, flush=True)
    return {"triton": triton.__version__, "arch": arch, "smem_limit": limit, "rows": rows,
            "rewrite_probe_tf32": rewrite_probe(arch), "wall_s": time.perf_counter() - t0, "jobs": jobs}


def label(o: dict) -> str:
    return (f"{o['precision']} BB={o['bb']} warps={o['warps']} grads={o['grads']}"
            + (f" maxnreg={o['maxnreg']}" if o.get("maxnreg") else ""))


def brief(k: dict) -> str:
    if "error" in k:
        return k["error"][:80]
    return (f"smem {k['shared']}, {k['regs']} regs, stack {k['stack']}, spills {k['spills']}, "
            f"tf32 {k['tf32_mma']}, {k['compile_s']:.1f} s")


def markdown(results: list[dict]) -> str:
    """One table: a row per launch option, columns per Triton version (forward / backward)."""
    lines = []
    for res in results:
        lines.append(f"Triton {res['triton']}, sm_{res['arch']} (shared memory limit {res['smem_limit']:,} bytes "
                     "per block):\n")
        lines.append("| option | fwd smem | fwd regs | fwd stack / spills | bwd smem | bwd regs | bwd stack / spills "
                     "| TF32 mma (fwd + bwd) | fits |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for r in res["rows"]:
            cells = [label(r["option"])]
            for k in (r["forward"], r["backward"]):
                if "error" in k:
                    cells += ["error", "", ""]
                else:
                    cells += [f"{k['shared']:,}", str(k["regs"]), f"{k['stack']} / {k['spills']}"]
            tf = sum(k.get("tf32_mma", 0) for k in (r["forward"], r["backward"]))
            cells += [str(tf), "yes" if r["fits"] else "**no**"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_json(path: str, obj) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--only", type=int, nargs="*", help="indices of variants() to compile")
    ap.add_argument("--option", action="append", type=parse_option,
                    help="compile this option instead (precision,bb,warps,grads[,maxnreg]; repeatable)")
    ap.add_argument("--kernels", choices=["both", "forward", "backward"], default="both")
    ap.add_argument("--jobs", type=int, default=None, help="compiling processes (default: one per CPU)")
    ap.add_argument("--json", help="write the results here (else stdout)")
    ap.add_argument("--markdown", action="store_true", help="also print a markdown table (stderr)")
    args = ap.parse_args(argv)
    res = run(args.arch, args.only, args.option, args.kernels, args.jobs)
    if args.json:
        write_json(args.json, res)
    else:
        print(json.dumps(res))
    if args.markdown:
        print(markdown([res]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
