"""The cut of a build into shards: :class:`Shard` (networks trained in one batched run) and :func:`shards`,
deterministic from the configs, their order and the shard size."""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterable
from dataclasses import dataclass

from .config import NetConfig
from .families import check_count, check_no_duplicates


@dataclass(frozen=True)
class Shard:
    """A unit of build work: networks that share one trial shape and model (one batched training run)."""

    shard_id: str
    configs: tuple[NetConfig, ...]

    def __len__(self) -> int:
        return len(self.configs)

    @property
    def family(self) -> str:
        return self.configs[0].family

    @property
    def net_ids(self) -> list[str]:
        return [c.net_id for c in self.configs]

    def batch_key(self) -> tuple:
        return self.configs[0].batch_key()


_PER_NETWORK_FIELDS = ("seed", "lr", "epochs")


def shards(configs: Iterable[NetConfig], shard_size: int) -> list[Shard]:
    """Cut a build into shards, deterministically from the configs (and their order) and ``shard_size``.

    Networks are grouped by every field except seed, lr and epochs (family, delay, post, tau, response
    length, nomemory, ...: a refinement of :meth:`NetConfig.batch_key` equivalence), groups in order of
    first appearance; each group keeps the grid order and is cut into chunks of ``shard_size``.
    Shard ids: ``<family>-d<delay ms>-<chunk>`` (``<family>-r<response ms>-<chunk>`` for nomemory),
    e.g. ``nopost-d040-000``.
    """
    shard_size = check_count(shard_size, "shard_size")
    configs = list(configs)
    names = tuple(f.name for f in dataclasses.fields(NetConfig) if f.name not in _PER_NETWORK_FIELDS)
    group_key = operator.attrgetter(*names)
    groups: dict[tuple, list[NetConfig]] = {}
    for c in configs:
        groups.setdefault(group_key(c), []).append(c)
    check_no_duplicates(configs)
    out: list[Shard] = []
    prefixes: dict[str, tuple] = {}
    for key, members in groups.items():
        c0 = members[0]
        prefix = f"{c0.family}-r{c0.response_ms:03d}" if c0.nomemory else f"{c0.family}-d{c0.delay_ms:03d}"
        if prefixes.setdefault(prefix, key) != key:
            raise ValueError(f"two groups of networks would share the shard id prefix {prefix!r} "
                             f"(they differ in more than the delay/response length): {prefixes[prefix]} vs {key}")
        for i in range(0, len(members), shard_size):
            out.append(Shard(f"{prefix}-{i // shard_size:03d}", tuple(members[i:i + shard_size])))
    return out

