"""Where shards run: in this process (``local``), or as Ray tasks (``ray``, see :func:`run_ray`).

Both executors only call :func:`zoo.shard_build.build_shards` (with several shards of one trial shape, trained
in one batch, on a GPU), which claims each shard, trains it, writes its results atomically into the build
folder and marks it done; so executors can be mixed on one build folder
(for example SLURM array tasks and a Ray cluster on the same shared filesystem) and re-running any of them
resumes the build. Ray is optional: it is imported only when :func:`run_ray` is called.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence

from .build_folder import BuildFolder
from .devices import parse_device, resolve_device
from .errors import ZooError, check_choice
from .log import logger
from .shard_build import build_shards
from .sharding import Shard

RAY_INSTALL_HINT = "pip install 'rnn-stm-zoo[ray]'  (or: pip install 'ray[default]')"


#: where shards can run (``zoo build --executor``)
EXECUTORS = ("local", "ray")


def execute(folder: BuildFolder, shards: Sequence[Shard], *, executor: str = "local", address: str | None = None,
            **options) -> dict[str, str]:
    """Run ``shards`` of the build in ``folder`` on ``executor`` (:data:`EXECUTORS`): :func:`run_local`, or :func:`run_ray` on
    the Ray cluster at ``address``; ``options`` are theirs (device, batch_size, label, progress, on_shard).
    Returns ``{shard_id: 'done' | 'built' | 'locked'}``."""
    check_choice("executor", executor, EXECUTORS)
    if executor == "ray":
        return run_ray(folder, shards, address=address, **options)
    return run_local(folder, shards, **options)


def run_local(folder: BuildFolder, shards: Sequence[Shard], *, device="cpu", batch_size: int | None = None,
              label: bool = True, progress: Callable[[int], None] | None = None,
              on_shard: Callable[[Shard, str], None] | None = None, combine: bool | None = None) -> dict[str, str]:
    """Run shards one after another in this process; returns ``{shard_id: 'done' | 'built' | 'locked'}``.

    ``combine`` (default: on CUDA) trains consecutive shards of one trial shape together, as many as one batch
    holds (``batch_size``, else what free GPU memory holds): thousands of networks per batch on a GPU instead of
    one shard's 512."""
    out = {}
    for group in shard_batches(shards, device, batch_size, combine):
        states = build_shards(folder, group, device=device, batch_size=batch_size, label=label, progress=progress)
        for s in group:
            out[s.shard_id] = states[s.shard_id]
            if on_shard is not None:
                on_shard(s, out[s.shard_id])
    return out


def shard_batches(shards: Sequence[Shard], device="cpu", batch_size: int | None = None,
                  combine: bool | None = None) -> list[list[Shard]]:
    """Consecutive shards of one trial shape grouped up to one batch of networks (``combine``, default on
    CUDA), else one shard per group."""
    dev = resolve_device(device)
    if not (dev.type == "cuda" if combine is None else combine):
        return [[s] for s in shards]
    from .train import default_batch_size

    groups: list[list[Shard]] = []
    key = cap = None
    for s in shards:
        k = s.configs[0].batch_key()
        if groups and k == key and sum(map(len, groups[-1])) + len(s) <= cap:
            groups[-1].append(s)
            continue
        key, cap = k, batch_size or default_batch_size(dev, s.configs[0].task().n_steps)
        groups.append([s])
    return groups


# ---------------------------------------------------------------- Ray
def import_ray():
    """The ``ray`` module, or a :class:`ZooError` that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ZooError(f"the ray executor needs Ray, which is not installed ({err}); install it with "
                       f"{RAY_INSTALL_HINT}") from None
    return ray


def _local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class _ProgressSink:
    """Ray actor: the latest network-epoch count each shard's task reported (the driver polls it)."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def report(self, shard_id: str, n: int) -> None:
        if n > self.counts.get(shard_id, 0):  # a retried task starts again from its saved chunks
            self.counts[shard_id] = n

    def get(self) -> dict[str, int]:
        return dict(self.counts)


def _shard_task(out: str, plan, shard_id: str, device: str, batch_size, label: bool, sink, threads: int,
                wait_locked_s: float | None = None, report_every_s: float = 0.5) -> str:
    """One shard, in a Ray worker: the same :func:`~zoo.shard_build.build_shards` as the local executor."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    folder = BuildFolder.open(out, plan)
    shard = plan.shard(shard_id)
    done, last = [0], [0.0]

    def progress(n: int) -> None:
        done[0] += n
        now = time.monotonic()
        if sink is not None and now - last[0] >= report_every_s:
            last[0] = now
            sink.report.remote(shard_id, done[0])

    # a shard locked by a worker that died on another node becomes free once its heartbeat is older than the
    # claim TTL; one that a live worker builds becomes done: wait for either (this is what retries need)
    ttl = folder.settings.claim_ttl_s
    deadline = time.monotonic() + (ttl + 60 if wait_locked_s is None else wait_locked_s)
    while True:
        state = build_shards(folder, [shard], device=device, batch_size=batch_size, label=label,
                             progress=progress)[shard_id]
        if state != "locked" or time.monotonic() >= deadline:
            break
        time.sleep(min(10.0, max(0.5, ttl / 20)))
    if sink is not None and done[0]:
        sink.report.remote(shard_id, done[0])
    return state


def run_ray(folder: BuildFolder, shards: Sequence[Shard], *, device="cpu", batch_size: int | None = None,
            address: str | None = None, label: bool = True, progress: Callable[[int], None] | None = None,
            on_shard: Callable[[Shard, str], None] | None = None, cpus_per_task: int | None = None,
            max_retries: int = 3, num_cpus: int | None = None, runtime_env: dict | None = None,
            wait_locked_s: float | None = None, poll_s: float = 0.25) -> dict[str, str]:
    """Run shards as Ray tasks; returns ``{shard_id: 'done' | 'built' | 'locked'}``.

    ``address``: a Ray cluster (``auto``, ``ray://host:10001``, ``host:6379``); None starts a local cluster
    (``num_cpus``, default all CPUs of this machine) and shuts it down afterwards. If Ray is already
    initialised in this process that cluster is used as is. Every task writes its shard into ``folder.out``,
    which must be the same path on a filesystem shared by all nodes (the done markers make a re-run skip
    finished shards, so tasks are idempotent).

    Resources: on CUDA one GPU (and one CPU) per task; on CPU ``cpus_per_task`` CPUs per task (default 1),
    and that many torch threads inside the task. A task whose worker process dies (killed, out of memory,
    node lost) is retried up to ``max_retries`` times, and so is one that fails with an ``OSError``
    (transient trouble with the shared filesystem); the retry resumes from the shard's saved chunks.
    Progress (network-epochs) is gathered from all workers by a small actor that this function polls, and
    ``on_shard(shard, state)`` is called as each task finishes. Shards that still fail are reported together
    in one :class:`ZooError` after every other shard has finished.

    A task that finds its shard claimed by another worker waits (up to ``wait_locked_s``, default the claim
    TTL + 60 s) until the shard is done or the claim is stale (a dead worker's claim: taken over at once on the
    same host, after the heartbeat TTL elsewhere), so a retried task is not stopped by its predecessor's claim.
    ``runtime_env`` is passed to the tasks (environment variables, a working dir for a remote cluster, ...).
    """
    ray = import_ray()
    started, tmp = False, None
    if not ray.is_initialized():
        if address is None:
            # a short path: Ray's unix sockets live below it (limit ~107 characters)
            tmp = tempfile.mkdtemp(prefix="zoo-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
            ray.init(num_cpus=num_cpus or _local_cpus(), include_dashboard=False, _temp_dir=tmp,
                     configure_logging=False)
        else:
            ray.init(address=address, configure_logging=False)
        started = True
    try:
        return _run_ray_tasks(ray, folder, shards, device=device, batch_size=batch_size, label=label,
                              progress=progress, on_shard=on_shard, cpus_per_task=cpus_per_task,
                              max_retries=max_retries, runtime_env=runtime_env, wait_locked_s=wait_locked_s,
                              poll_s=poll_s)
    finally:
        if started:
            ray.shutdown()
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)


def _run_ray_tasks(ray, folder, shards, *, device, batch_size, label, progress, on_shard, cpus_per_task,
                   max_retries, runtime_env, wait_locked_s, poll_s) -> dict[str, str]:
    shards = list(shards)
    if not shards:
        return {}
    if device is None or str(device).strip().lower() == "auto":
        device = "cuda" if ray.cluster_resources().get("GPU", 0) > 0 else "cpu"
    if parse_device(device).type == "cuda":  # the GPUs are the workers' (this driver may have none)
        # Ray gives each task one GPU through CUDA_VISIBLE_DEVICES: inside the task it is always cuda:0
        task_device, resources, threads = "cuda", {"num_gpus": 1, "num_cpus": 1}, 1
    else:
        threads = int(cpus_per_task or 1)
        task_device, resources = "cpu", {"num_cpus": threads}
    sink = ray.remote(num_cpus=0)(_ProgressSink).remote()
    opts = {"runtime_env": runtime_env} if runtime_env else {}
    task = ray.remote(_shard_task).options(max_retries=max_retries, retry_exceptions=[OSError], **resources, **opts)
    plan_ref = ray.put(folder.plan)
    out = str(folder.out.resolve())
    refs = {task.remote(out, plan_ref, s.shard_id, task_device, batch_size, label, sink, threads, wait_locked_s): s
            for s in shards}
    totals = {s.shard_id: sum(c.epochs for c in s.configs) for s in shards}
    shown = dict.fromkeys(totals, 0)
    states: dict[str, str] = {}
    errors: dict[str, BaseException] = {}

    def advance(sid: str, n: int) -> None:
        n = min(n, totals[sid])
        if n > shown[sid]:
            if progress is not None:
                progress(n - shown[sid])
            shown[sid] = n

    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=poll_s)
            try:
                counts = ray.get(sink.get.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - progress is best effort
                counts = {}
            for sid, n in counts.items():
                if sid not in states:
                    advance(sid, n)
            for ref in ready:
                s = refs[ref]
                try:
                    states[s.shard_id] = ray.get(ref)
                except Exception as err:  # noqa: BLE001 - reported together below
                    errors[s.shard_id] = err
                    states[s.shard_id] = "failed"
                    continue
                if states[s.shard_id] == "built":
                    advance(s.shard_id, totals[s.shard_id])
                if on_shard is not None:
                    on_shard(s, states[s.shard_id])
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        ray.kill(sink)
    if errors:
        shown_err = "; ".join(f"{sid}: {type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
                              for sid, e in list(errors.items())[:5])
        logger().warning(f"{len(errors)} shard(s) failed on the Ray cluster")
        raise ZooError(f"{len(errors)} shard(s) failed on the Ray cluster after {max_retries} retries: {shown_err}. "
                       "Finished shards are kept; re-run the same command to resume")
    return {s.shard_id: states[s.shard_id] for s in shards}
