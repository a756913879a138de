"""Workspace folder resolution and atomic artifact writes.

Layout of a workspace::

    <workdir>/datasets/<name>/   prepared datasets (dataset.json, images/, masks/)
    <workdir>/splits/            split files (<dataset>-<ratio>-s<seed>.json)
    <workdir>/runs/              training runs
    <workdir>/results/           tables and plots
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medref_cli.errors import MedrefError

log = logging.getLogger(__name__)

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
        """Names of the datasets that have a manifest, sorted (never a temp folder)."""
        if not self.datasets.is_dir():
            return []
        restore_all_interrupted(self.datasets)
        return sorted(p.name for p in self.datasets.iterdir()
                      if not p.name.startswith(".") and (p / "dataset.json").is_file())


def check_name(name: str, what: str) -> str:
    """A name used as a folder: letters, digits, `-`, `_`, `.`; no path separators."""
    ok = name and all(c.isalnum() or c in "-_." for c in name) and not name.startswith(".")
    if not ok:
        raise MedrefError(f"invalid {what} {name!r}: use letters, digits, '-', '_' or '.'")
    return name


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file beside `path`, fsync, then rename over it."""
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def umask_mode(base: int) -> int:
    """`base` (0o666 for files, 0o777 for folders) less the process umask: the mode `open`/`mkdir` would give.
    Temp files and folders are created 0600 / 0700; artifacts get this mode so colleagues on a shared server
    read them as they read anything else the user writes."""
    current = os.umask(0o022)
    os.umask(current)
    return base & ~current


def temp_prefix(final: Path) -> str:
    """`.<name>.<pid>.`: the prefix of this process's temp files and folders beside `final`, so a cleaner can
    tell a live writer's temp (kept) from a killed one's (removed)."""
    return f".{final.name}.{os.getpid()}."


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, umask_mode(0o666))
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise _named(exc, path) from None


def safe_load_yaml(text: str) -> Any:  # noqa: ANN401 - what the YAML holds
    """`yaml.safe_load` through libyaml's parser where PyYAML has it (the same safe constructor, about ten times
    faster: a table reads some hundred run specs)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader


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


def lock_holder(folder: Path) -> int | None:
    """The pid of the live process (other than this one) holding `<folder>/.lock`, else None."""
    try:
        pid = int((folder / ".lock").read_text().strip() or "0")
    except (OSError, ValueError):
        return None
    return pid if pid and pid != os.getpid() and _pid_alive(pid) else None


def check_unlocked(folder: Path) -> None:
    """Refuse to touch a folder whose lock is held by a live process."""
    pid = lock_holder(folder)
    if pid is not None:
        raise MedrefError(f"{folder}: in use by process {pid} (lock {folder / '.lock'}); wait for it or stop it")


def acquire_lock(folder: Path) -> None:
    """Write `<folder>/.lock` holding this process's pid, atomically (O_EXCL): a lock held by another live
    process is refused, a stale one (its process is gone, e.g. after SIGKILL) or this process's own is taken
    over. The folder must exist."""
    lock = folder / ".lock"
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            check_unlocked(folder)  # held by another live process: refused
            with contextlib.suppress(FileNotFoundError):  # stale (its process is gone) or our own: taken over
                lock.unlink()
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return
    raise MedrefError(f"{folder}: could not take the lock {lock}; another process keeps taking it")


def release_lock(folder: Path) -> None:
    """Remove `<folder>/.lock` if this process holds it."""
    lock = folder / ".lock"
    with contextlib.suppress(OSError, ValueError):
        if int(lock.read_text().strip() or "0") == os.getpid():
            lock.unlink()


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold `<folder>/.lock` (see `acquire_lock`) for the block; a lock this process took earlier (run setup)
    is kept and released at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    acquire_lock(folder)
    try:
        yield
    finally:
        release_lock(folder)


def restore_interrupted(final: Path) -> bool:
    """Put back the old copy of `final` when a writer was killed between the two renames of a replace (`final`
    moved into `.<name>.<pid>.*.old/`, the new copy not yet renamed in): True if it restored one. Only a dead
    writer's `.old` is used; the old copy, complete by construction, wins over the new one."""
    if final.exists() or not final.parent.is_dir():
        return False
    for trash in sorted(final.parent.glob(f".{final.name}.*.old")):
        kept = trash / final.name
        if trash.is_dir() and kept.exists() and not _writer_alive(trash.name, final.name):
            os.replace(kept, final)
            log.warning("%s: restored the copy a killed replace had set aside (%s)", final, trash.name)
            return True
    return False


def restore_all_interrupted(parent: Path) -> None:
    """`restore_interrupted` for every artifact folder of `parent` that a killed replace left aside."""
    if parent.is_dir():
        for trash in parent.glob(".*.old"):
            name = trash.name[1:].rsplit(".", 3)[0]  # .<name>.<pid>.<random>.old
            if name:
                restore_interrupted(parent / name)


def remove_stale_temps(final: Path) -> None:
    """Temp folders of `final` left by a killed writer (`.<name>.<pid>.*.tmp` / `.old` whose process is gone;
    a live writer's temp folder is left alone), after `restore_interrupted` has put back an old copy."""
    restore_interrupted(final)
    if final.parent.is_dir():
        for p in final.parent.glob(f".{final.name}.*"):
            if p.is_dir() and p.name.endswith((".tmp", ".old")) and not _writer_alive(p.name, final.name):
                shutil.rmtree(p, ignore_errors=True)


def _writer_alive(temp_name: str, final_name: str) -> bool:
    """The pid in a temp name (`.<final>.<pid>.<random>.tmp`) is a live process other than this one."""
    pid = temp_name[len(final_name) + 2 :].split(".", 1)[0]
    return pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid))


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
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final), suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, umask_mode(0o777))  # mkdtemp made it 0700; what is inside was made with the umask
        if final.exists() and not overwrite:  # another writer finished first: keep its result
            raise MedrefError(f"{final}: written by another process meanwhile; pass --overwrite to replace it")
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=temp_prefix(final), suffix=".old", dir=final.parent))
            os.replace(final, trash / final.name)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            try:
                os.replace(tmp, final)
            except OSError as exc:  # a folder appeared under the name since the check: another writer's
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                raise MedrefError(f"{final}: written by another process meanwhile; pass --overwrite to replace it") \
                    from None
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _named(exc, final) from None


def _named(exc: BaseException, path: Path) -> BaseException:
    """A file-system error that names no file (a failed write on a full disk) gets the artifact's path."""
    if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
        return OSError(exc.errno, exc.strerror, str(path))
    return exc

