"""Batch generation: job manifests, a resumable JSONL ledger, deterministic sharding, the runner.

Model-free: the runner takes a :class:`~tora2.batch.runner.Backend` of callables, so the CLI wires in
the pipeline and the entity encoders (``cli → entities → tora2``) and the tests wire in fakes.
"""

from tora2.batch.ledger import Ledger, check_output, merge_ledgers, read_all
from tora2.batch.manifest import EntityRequest, Job, Manifest, parse_manifest, read_manifest
from tora2.batch.runner import Backend, RunReport, finish, format_summary, init_distributed, run_batch, summarize
from tora2.batch.sharding import DistributedEnv, distributed_env, group_batches, shard

__all__ = [
    "Backend", "DistributedEnv", "EntityRequest", "Job", "Ledger", "Manifest", "RunReport", "check_output",
    "distributed_env", "finish", "format_summary", "group_batches", "init_distributed", "merge_ledgers",
    "parse_manifest", "read_all", "read_manifest", "run_batch", "shard", "summarize",
]
