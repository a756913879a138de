"""Table 1 cells as jobs (`medref table1 --launcher local|slurm --jobs N`).

Each cell is one job running `table1.run_cell`: with `slurm`, a submitit job on a SLURM node; with `local`, a
task of a pool of `jobs` worker processes on this machine (the cores shared out among them as torch threads),
each of which runs cell after cell, so the imports and the text encoder are loaded once per worker, not once per
cell. At most `jobs` run at once; the next one is submitted as one finishes. A job that fails (an exception, a
killed node or worker) marks its cell failed and the others go on (a dead local worker takes the cells running
beside it down too: they are marked failed and a new pool runs the rest; a re-run resumes them). The parent then
reads every cell's `eval-test/summary.json` like `--collect` does, so the table is the one an in-process run
writes. Job logs: `<workdir>/results/table1/<profile>/jobs/` (local: `<cell>.log`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medref_cli.artifacts import load_summary
from medref_cli.config import METHODS
from medref_cli.errors import MedrefError
from medref_cli.stages.table1_cells import run_guarded
from medref_cli.stages.table1_matrix import Cell, Table1Config, matrix, parse_method
from medref_cli.workspace import Workspace

log = logging.getLogger(__name__)


def cell_job(workdir: str, cfg: Table1Config, cell_name: str, threads: int | None = None,
             log_file: str | None = None) -> dict[str, Any]:
    """Runs in the job's process: one cell, by run name -> {status, error, wall_s, train_s}. `threads`: torch's intra-op
    threads in this process (a profile's `train.threads` still wins); `log_file`: the cell's log lines go there
    too (a local worker's job log)."""
    from dataclasses import replace

    if threads:
        import torch

        torch.set_num_threads(threads)
    handler = None
    if log_file:
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("medref_cli").addHandler(handler)
        logging.getLogger("medref_cli").setLevel(logging.INFO)
    try:
        ws = Workspace.resolve(Path(workdir))
        _, prof, cells = matrix(replace(cfg, only=cell_name))
        run_guarded(ws, prof, cells[0], False, cell_name)
    finally:
        if handler is not None:
            logging.getLogger("medref_cli").removeHandler(handler)
            handler.close()
    return {"status": cells[0].status, "error": cells[0].error, "wall_s": cells[0].wall_s, "train_s": cells[0].train_s}


def expected_cost(cell: Cell) -> float:
    """A cell's rough length, to submit the longest first (then no worker idles while the last long cell runs
    alone): its budget in minutes where it has one, else 2 for a teacher-student method and 1 for supervised."""
    if cell.budget is not None:
        return cell.budget
    return 2.0 if METHODS[parse_method(cell.method)[0]].stage == "semi-train" else 1.0


def _worker_init(threads: int) -> None:
    """A local worker process: its share of the cores, for torch and for OpenMP (set before torch loads)."""
    import os

    os.environ["OMP_NUM_THREADS"] = str(threads)


class _LocalPool:
    """`local` jobs: a pool of `jobs` spawned worker processes (each runs cell after cell); `submit` gives a
    future with `done()`, `result()` and a `job_id`, as a submitit job has. A pool whose worker died is replaced
    before the next submission."""

    def __init__(self, jobs: int, threads: int) -> None:
        self.jobs, self.threads, self.count, self.pool = jobs, threads, 0, None

    def submit(self, fn: Any, *args: Any) -> Any:  # noqa: ANN401 - a concurrent.futures.Future
        from concurrent.futures.process import BrokenProcessPool

        self.count += 1
        try:
            future = self._pool().submit(fn, *args)
        except BrokenProcessPool:  # a worker died: its pool takes no more work
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
            future = self._pool().submit(fn, *args)
        future.job_id = f"local task {self.count}"
        return future

    def _pool(self) -> Any:  # noqa: ANN401 - a ProcessPoolExecutor
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if self.pool is None:  # spawned: a fresh interpreter, no forked torch state
            self.pool = ProcessPoolExecutor(self.jobs, multiprocessing.get_context("spawn"), _worker_init,
                                            (self.threads,))
        return self.pool

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def shared_threads(jobs: int) -> int:
    """The cores this process may use, shared out over `jobs` local jobs (at least one thread each): two torch
    processes that each take every core slow each other 5-10x."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, jobs))


def _executor(cfg: Table1Config, folder: Path):  # noqa: ANN202 - submitit.Executor
    try:
        import submitit
    except ImportError:
        raise MedrefError("--launcher local|slurm needs submitit: pip install 'medref[cluster]'") from None
    params = {"name": f"medref-{cfg.profile}", "timeout_min": 24 * 60, **cfg.slurm}
    executor = submitit.AutoExecutor(folder=folder, cluster=cfg.launcher)
    executor.update_parameters(**params)
    return executor


def submit_all(cfg: Table1Config, ws: Workspace, pipeline: Path, cells: list[Cell]) -> None:
    """Run `cells` as jobs, `cfg.jobs` at a time; fills each cell's status, error and summary."""
    from dataclasses import replace

    folder = ws.results / "table1" / cfg.profile / "jobs"
    job_cfg = replace(cfg, pipeline=pipeline, launcher="inline")
    threads = shared_threads(cfg.jobs) if cfg.launcher == "local" else None
    if threads:
        folder.mkdir(parents=True, exist_ok=True)
        executor = _LocalPool(max(1, cfg.jobs), threads)
        log.info("%d cells at a time, %d torch thread(s) each", max(1, cfg.jobs), threads)
    else:
        executor = _executor(cfg, folder)
    try:
        _run_jobs(executor, cfg, ws, job_cfg, cells, threads, folder)
    finally:
        if threads:
            executor.shutdown()


def _run_jobs(executor: Any, cfg: Table1Config, ws: Workspace, job_cfg: Table1Config,  # noqa: ANN401
              cells: list[Cell], threads: int | None, folder: Path) -> None:
    import time

    pending, running, finished = sorted(cells, key=expected_cost, reverse=True), [], 0  # longest first
    while pending or running:
        while pending and len(running) < max(1, cfg.jobs):
            cell = pending.pop(0)
            log_file = str(folder / f"{cell.run_name}.log") if threads else None
            running.append((cell, executor.submit(cell_job, str(ws.root), job_cfg, cell.run_name, threads,
                                                  log_file)))
            log.info("submitted %s (job %s)", cell.run_name, running[-1][1].job_id)
        for item in [r for r in running if r[1].done()]:
            running.remove(item)
            cell, job = item
            try:
                result = job.result()
            except Exception as exc:  # the job's process died or raised outside run_cell
                result = {"status": "failed", "error": f"job {job.job_id}: {exc.__class__.__name__}: {exc}"}
            cell.status, cell.error = result["status"], result.get("error", "")
            cell.wall_s, cell.train_s = result.get("wall_s", 0.0), result.get("train_s")
            cell.run = str(ws.runs / cell.run_name)
            summary = ws.runs / cell.run_name / "eval-test" / "summary.json"
            if cell.status != "failed" and summary.is_file():
                cell.summary = load_summary(summary)
            finished += 1
            log.info("cell %d/%d %s: %s (%.0f s)", finished, len(cells), cell.run_name, cell.status, cell.wall_s)
        time.sleep(0.05 if threads else 0.5)  # a local worker waits for its next cell at most this long
