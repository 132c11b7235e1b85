"""A model-free backend for runner tests: "videos" are bytes derived from the job, so outputs are
checkable; ``python -m tests.batch.fakes MANIFEST OUT`` runs one rank of a batch (RANK/WORLD_SIZE
from the environment) and merges the shards when it is the only process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tora2.batch import Backend, distributed_env, finish, init_distributed, read_manifest, run_batch
from tora2.errors import InputError


class FakeBackend:
    """Records its calls; fails on request: a prompt containing "explode" fails in ``generate``,
    a height of 24 fails ``check`` (standing in for an impossible size)."""

    def __init__(self):
        self.batches: list[list[str]] = []
        self.prepared: list[str] = []

    def check(self, job):
        if job.height == 24:
            raise InputError(f"height {job.height} is not a multiple of 16; use 16, 32, 48, ...")

    def prepare(self, job):
        self.prepared.append(job.id)
        return job.prompt.upper()

    def generate(self, jobs, prepared):
        self.batches.append([j.id for j in jobs])
        if any("explode" in j.prompt for j in jobs):
            raise RuntimeError("the model exploded")
        return [f"{p}|{j.seed}|{j.height}x{j.width}".encode() for j, p in zip(jobs, prepared)]

    def write(self, job, result, path):
        Path(path).write_bytes(result)

    def backend(self) -> Backend:
        return Backend(generate=self.generate, write=self.write, prepare=self.prepare, check=self.check)


def main(manifest: str, out: str, batch_size: str = "2") -> None:
    env = distributed_env()
    fake = FakeBackend()
    report = run_batch(read_manifest(manifest), out, fake.backend(), batch_size=int(batch_size), env=env)
    finish(env, out, init_distributed(env))
    print(json.dumps({"rank": env.rank, "results": {r.id: r.status for r in report.results}, "batches": fake.batches}))


if __name__ == "__main__":
    main(*sys.argv[1:])
