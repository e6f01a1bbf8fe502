"""Where shards run: in this process (``local``), or as Ray tasks (``ray``, see :func:`run_ray`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .build import Build
from .grids import Shard


def run_local(build: Build, shards: Sequence[Shard], *, device="cpu", batch_size: int | None = None,
              label: bool = True, progress: Callable[[int], None] | None = None,
              on_shard: Callable[[Shard, str], None] | None = None) -> dict[str, str]:
    """Run shards one after another in this process; returns ``{shard_id: 'done' | 'built' | 'locked'}``."""
    out = {}
    for s in shards:
        out[s.shard_id] = build.run_shard(s, device=device, batch_size=batch_size, label=label, progress=progress)
        if on_shard is not None:
            on_shard(s, out[s.shard_id])
    return out


EXECUTORS = ("local", "ray")
