"""`medref table1 --profile P`: run the declared experiment matrix and write Table 1.

For each dataset x ratio x seed x method cell: prepare (once) -> split -> pretrain (supervised) or
semi-train -> evaluate on test. A cell whose `eval-test/summary.json` exists is skipped, an interrupted
run is resumed, and a failing cell is reported and the matrix goes on. Output in
`<workdir>/results/table1/<profile>/`: `table1.md`, `table1.csv`, `table1.png`.
"""

from __future__ import annotations

import time
from pathlib import Path

from medref_cli.stages.table1_cells import ensure_dataset, resolve_raw, run_guarded
from medref_cli.stages.table1_matrix import Cell, Table1Config, matrix
from medref_cli.stages.table1_render import write_outputs
from medref_cli.workspace import Workspace


def run(cfg: Table1Config, ws: Workspace) -> tuple[list[Cell], Path]:
    """Run (or, with `collect`, gather) every cell, then write the table. `launcher`: `inline` runs the cells one
    after another in this process; `local` / `slurm` submit one submitit job per cell, at most `jobs` at a time."""
    pipeline, prof, cells = matrix(cfg)
    if not cfg.collect:
        for ds in prof["datasets"]:  # before any job: parallel cells must not prepare the same dataset twice
            if any(c.dataset == ds["name"] for c in cells):
                ensure_dataset(ws, ds, resolve_raw(str(ds["raw"]), cfg.raw, ds["name"]))
    t_start = time.time()
    if cfg.launcher == "inline" or cfg.collect:
        for k, cell in enumerate(cells, 1):
            run_guarded(ws, prof, cell, cfg.collect, f"{k}/{len(cells)}")
    else:
        from medref_cli.stages.table1_jobs import submit_all

        submit_all(cfg, ws, pipeline, cells)
    out = ws.results / "table1" / cfg.profile
    if cfg.only is None:
        write_outputs(out, cfg.profile, prof, cells, ws, time.time() - t_start)
    return cells, out
