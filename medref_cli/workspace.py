"""Workspace folder resolution and atomic artifact writes.

Layout of a workspace::

    <workdir>/datasets/<name>/   prepared datasets (dataset.json, images/, masks/)
    <workdir>/splits/            split files (<dataset>-<ratio>-s<seed>.json)
    <workdir>/runs/              training runs
    <workdir>/results/           tables and plots
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medref_cli.errors import MedrefError

WORKDIR_ENV = "MEDREF_WORKDIR"
DEFAULT_WORKDIR = "medref-work"


@dataclass(frozen=True)
class Workspace:
    """Paths inside one workspace root; nothing is created until a stage writes."""

    root: Path

    @classmethod
    def resolve(cls, workdir: Path | str | None = None) -> Workspace:
        """`--workdir` > `$MEDREF_WORKDIR` > `./medref-work`."""
        chosen = workdir or os.environ.get(WORKDIR_ENV) or DEFAULT_WORKDIR
        return cls(Path(chosen).expanduser().resolve())

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def splits(self) -> Path:
        return self.root / "splits"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def dataset_dir(self, name: str) -> Path:
        return self.datasets / check_name(name, "dataset name")

    def prepared_datasets(self) -> list[str]:
        """Names of the datasets that have a manifest, sorted."""
        if not self.datasets.is_dir():
            return []
        return sorted(p.name for p in self.datasets.iterdir() if (p / "dataset.json").is_file())


def check_name(name: str, what: str) -> str:
    """A name used as a folder: letters, digits, `-`, `_`, `.`; no path separators."""
    ok = name and all(c.isalnum() or c in "-_." for c in name) and not name.startswith(".")
    if not ok:
        raise MedrefError(f"invalid {what} {name!r}: use letters, digits, '-', '_' or '.'")
    return name


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file beside `path`, fsync, then rename over it."""
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path, produced_by: str) -> Any:
    """Read a JSON artifact; a missing file names the command that produces it."""
    if not path.is_file():
        raise MedrefError(f"{path}: not found; run `{produced_by}` first")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MedrefError(f"{path}: not valid JSON ({exc})") from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_unlocked(folder: Path) -> None:
    """Refuse to touch a folder whose lock is held by a live process."""
    lock = folder / ".lock"
    try:
        pid = int(lock.read_text().strip() or "0")
    except (OSError, ValueError):
        return
    if pid and pid != os.getpid() and _pid_alive(pid):
        raise MedrefError(f"{folder}: in use by process {pid} (lock {lock}); wait for it or stop it")


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Exclusive `<folder>/.lock` holding the writer's pid; a second live writer is refused, a stale lock
    (its process is gone, e.g. after SIGKILL) is taken over."""
    lock = folder / ".lock"
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or "0")
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _pid_alive(pid):
                raise MedrefError(f"{folder}: in use by process {pid} (lock {lock}); wait for it or stop it") from None
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        break
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def remove_stale_temps(final: Path) -> None:
    """Temp folders of `final` left by a killed writer (`.<name>.*.tmp` / `.old`)."""
    if final.parent.is_dir():
        for p in final.parent.glob(f".{final.name}.*"):
            if p.is_dir() and p.name.endswith((".tmp", ".old")):
                shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(final: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a hidden temp folder beside `final`; on success it replaces `final` in one rename.

    On any error the temp folder is removed and `final` is untouched, so no half-written
    artifact is ever visible under its real name.
    """
    if final.exists() and not overwrite:
        raise MedrefError(f"{final}: already exists; pass --overwrite to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, trash / final.name)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
