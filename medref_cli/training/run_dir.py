"""The run folder contract: everything that produced a model sits beside it.

`<workdir>/runs/<name>/`: `config.yaml` (the run's spec, `config.RunConfig`: method, data, inputs and the whole
resolved config, written before training starts), `run.json` (how far it got, `artifacts.RunStatus`), `split.json`
(copy of the split used), `checkpoint_latest.pt`, `checkpoint_best.pt`, `metrics.jsonl` (one line per epoch),
`curve.png`, `log.txt`, `environment.jsonl` (the machine and libraries of each start and resume,
`training.environment`); `evaluate` adds `eval-<split>/`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from medref_cli.errors import MedrefError


def resolve_run(path_or_name: str | Path, runs_dir: Path) -> Path:
    """A run given as a path or as a name under `<workdir>/runs/`."""
    p = Path(path_or_name)
    for cand in (p, runs_dir / str(path_or_name)):
        if (cand / "run.json").is_file():
            return cand.resolve()
    known = sorted(d.name for d in runs_dir.iterdir() if (d / "run.json").is_file()) if runs_dir.is_dir() else []
    raise MedrefError(
        f"{path_or_name}: no run folder (run.json) there or under {runs_dir}; known runs: {', '.join(known) or 'none'}"
    )


def append_metrics(run: Path, row: dict[str, Any]) -> None:
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps(row) + "\n")


def read_metrics(run: Path) -> list[dict[str, Any]]:
    """The rows of `<run>/metrics.jsonl`. A torn last line (the process was killed mid-append) is left out;
    a bad line before it is an error naming the file and line."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = [(k, line) for k, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if line.strip()]
    rows = []
    for n, (k, line) in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines) - 1:
                break
            raise MedrefError(f"{path}: line {k} is not a JSON row; fix or remove it") from None
        if not isinstance(row, dict):
            raise MedrefError(f"{path}: line {k} is not a JSON object")
        rows.append(row)
    return rows


def restore_metrics(run: Path, last_epoch: int, last_row: dict[str, Any] | None) -> None:
    """On resume: keep the rows of epochs <= last_epoch (later epochs are redone) and drop a torn line; the
    checkpoint's own row of `last_epoch` is put back when the process died between saving the checkpoint and
    appending it. Rewritten atomically."""
    from medref_cli.workspace import write_bytes_atomic

    rows = [r for r in read_metrics(run) if r.get("epoch", 0) <= last_epoch]
    if last_row is not None and not any(r.get("epoch") == last_epoch for r in rows):
        rows.append(last_row)
    write_bytes_atomic(run / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())


def attach_log(run: Path) -> logging.Handler:
    """Send the package's log records to `<run>/log.txt` until `detach_log` (one run's lines in one file)."""
    handler = logging.FileHandler(run / "log.txt")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("medref_cli").addHandler(handler)
    logging.getLogger("medref_cli").setLevel(logging.INFO)
    return handler


def detach_log(handler: logging.Handler | None) -> None:
    """Stop a run's `attach_log` handler and close its file (a later run in the same process, as table1 or
    the tests run them, no longer writes into this run's log.txt)."""
    if handler is not None:
        logging.getLogger("medref_cli").removeHandler(handler)
        handler.close()
