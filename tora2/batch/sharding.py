"""Splitting jobs across processes, GPUs and nodes, deterministically.

``torchrun`` and ``accelerate launch`` set ``RANK`` (global process index), ``WORLD_SIZE`` (number of
processes over all nodes) and ``LOCAL_RANK`` (the GPU index on this node). Unit ``i`` of the
manifest (in manifest order, every unit, finished or not) belongs to rank ``i % WORLD_SIZE``. The
split depends only on the manifest and the world size, never on timing or on the ledger, so every
process computes the same partition without talking to the others: no job runs twice, none is
missed. Finished jobs are skipped inside each shard; a resumed run with the same world size gives
each rank the same jobs back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence, TypeVar

from tora2.errors import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"environment variable {name}={raw!r} is not an integer; unset it or set a process index") from None


def distributed_env(env: Mapping[str, str] | None = None) -> DistributedEnv:
    """Read RANK / WORLD_SIZE / LOCAL_RANK (absent = a single process)."""
    env = os.environ if env is None else env
    world_size = _env_int(env, "WORLD_SIZE", 1)
    rank = _env_int(env, "RANK", 0)
    local_rank = _env_int(env, "LOCAL_RANK", rank)  # plain RANK/WORLD_SIZE on one node: GPU = rank
    if world_size < 1:
        raise InputError(f"WORLD_SIZE={world_size} must be at least 1")
    if not 0 <= rank < world_size:
        raise InputError(f"RANK={rank} is outside 0..{world_size - 1} for WORLD_SIZE={world_size}; check the launcher's settings")
    if local_rank < 0:
        raise InputError(f"LOCAL_RANK={local_rank} must be 0 or more")
    return DistributedEnv(rank=rank, world_size=world_size, local_rank=local_rank)


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """The items of ``rank``: every ``world_size``-th one starting at ``rank`` (round robin)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} / world size {world_size}: need 0 <= rank < world_size")
    return list(items[rank::world_size])


def group_batches(items: Sequence[T], key, batch_size: int) -> list[list[T]]:
    """Consecutive batches of at most ``batch_size`` items with equal ``key(item)``.

    Items are grouped by key in order of each key's first appearance, then cut into batches, so a
    manifest that alternates shapes still fills whole batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size} must be at least 1")
    groups: dict = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return [group[i:i + batch_size] for group in groups.values() for i in range(0, len(group), batch_size)]


__all__ = ["DistributedEnv", "distributed_env", "group_batches", "shard"]
