"""Where shard tasks run: inline, in joblib (loky) processes, or on a Dask distributed cluster.

Every backend runs the same :func:`facedeg.build.task.run_shard` on the same tasks, so the bytes
written do not depend on the backend or the number of workers; only the order of completion does.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from facedeg.build.task import Job, ShardTask, progress_path, run_shard
from facedeg.errors import BuildError

BACKENDS = ("local", "dask")
ProgressFn = Callable[[int, int], None]  # (pairs handled, pairs planned)


def run_tasks(tasks: list[ShardTask], job: Job, backend: str, workers: int, scheduler: str | None) -> Iterator[dict]:
    """Yield each task's result as it finishes, on the configured backend."""
    if not tasks:
        return
    if backend == "dask":
        yield from _run_dask(tasks, job, workers, scheduler)
    elif workers == 1 or len(tasks) == 1:
        for t in tasks:
            yield run_shard(t, job)
    else:
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=min(workers, len(tasks)), backend="loky", return_as="generator_unordered")
        yield from parallel(delayed(run_shard)(t, job) for t in tasks)


def _run_dask(tasks: list[ShardTask], job: Job, workers: int, scheduler: str | None) -> Iterator[dict]:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise BuildError("--backend dask needs dask[distributed]: pip install 'facedeg[dask]'") from None
    cluster = None
    try:
        if scheduler:
            try:
                client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError, ValueError) as e:  # ValueError: a malformed address
                raise BuildError(f"--scheduler: cannot connect to {scheduler} ({e})") from None
        else:
            cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True,
                host="127.0.0.1", dashboard_address=None,
                silence_logs=logging.CRITICAL,  # task errors come back through the futures, as one line
            )
            client = Client(cluster)
        with client:
            tag = uuid.uuid4().hex[:8]
            futures = [client.submit(run_shard, t, job, pure=False, key=f"facedeg-{tag}-{t.name}") for t in tasks]
            try:
                for future in as_completed(futures):
                    yield future.result()
            finally:
                for f in futures:
                    f.cancel()
    finally:
        if cluster is not None:
            cluster.close()


class ProgressPoller:
    """Sums the per-task progress files a few times a second and reports (done, total)."""

    def __init__(self, out: Path, tasks: list[ShardTask], already: int, total: int, fn: ProgressFn | None) -> None:
        self.out, self.tasks, self.already, self.total, self.fn = out, tasks, already, total, fn
        self._finished: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _count(self) -> int:
        done = self.already + sum(len(t.pairs) for t in self.tasks if t.name in self._finished)
        for t in self.tasks:
            if t.name in self._finished:
                continue
            if (self.out / t.name).exists():  # renamed into place: finished
                self._finished.add(t.name)
                done += len(t.pairs)
                continue
            try:
                done += int(progress_path(self.out, t.name).read_text() or 0)
            except (OSError, ValueError):
                pass
        return min(done, self.total)

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            self.fn(self._count(), self.total)

    def __enter__(self) -> ProgressPoller:
        if self.fn:
            self.fn(self.already, self.total)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fn:
            self._stop.set()
            self._thread.join()
            if exc[0] is None:
                self.fn(self.total, self.total)
