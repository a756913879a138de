"""Everything a training stage does before its first step: dataset, split, run folder (new or resumed), DDP,
device, text encoder and model, from a `TrainRequest` (`medref_cli.config`). Shared by `pretrain` and
`semi-train`."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medref_cli.config import (
    InitRun,
    RunConfig,
    RunData,
    RunInputs,
    TrainRequest,
    default_run_name,
    load_config_file,
    resolve_config,
    resume_config,
)
from medref_cli.errors import MedrefError
from medref_cli.training.device import flush_denormals, pick_device
from medref_cli.training.tb_log import check_logger
from medref_cli.workspace import Workspace, acquire_lock, check_name, check_unlocked, file_sha256, release_lock

if TYPE_CHECKING:
    from medref_cli.artifacts import RunStatus

log = logging.getLogger(__name__)


def pick_dataset(ws: Workspace, dataset: str | None) -> str:
    if dataset:
        return dataset
    names = ws.prepared_datasets()
    if len(names) == 1:
        return names[0]
    raise MedrefError(
        f"{ws.datasets}: pass --dataset (prepared: {', '.join(names) or 'none; run `medref prepare` first'})"
    )


def init_distributed() -> tuple[int, int, int]:
    """(rank, world, local_rank); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


@dataclass
class TrainSetup:
    """What `build` hands a training stage: the run context and the data it trains on. Use it as a context
    manager (`with build(req, ws) as s:`): leaving it detaches the run's log.txt handler."""

    ctx: Any  # training.context.RunContext
    spec: Any  # artifacts.SplitSpec
    manifest: Any  # artifacts.DatasetManifest
    folder: Path  # the prepared dataset folder
    log_handler: logging.Handler | None = None  # rank 0: the run's log.txt
    pseudo_labels: Path | None = None  # the `--pseudo-labels` set the run trains with (recorded in config.yaml)

    def __enter__(self) -> TrainSetup:
        return self

    def __exit__(self, *exc: object) -> None:
        from medref_cli.training.run_dir import detach_log

        detach_log(self.log_handler)
        self.log_handler = None


def build(req: TrainRequest, ws: Workspace, pseudo_labels: Path | None = None,
          init: InitRun | None = None) -> TrainSetup:
    """Config, split, run folder (new or resumed), device, text encoder and model of one training run; every
    input (`pseudo_labels`, `init` too) is checked before the split file or the run folder is written."""
    from medref_cli.artifacts import load_dataset, load_split
    from medref_cli.splits import check_trainable
    from medref_cli.training.context import RunContext
    from medref_cli.training.environment import record_environment
    from medref_cli.training.run_dir import attach_log

    dataset = pick_dataset(ws, req.dataset)
    manifest, folder = load_dataset(ws, dataset)
    if pseudo_labels is not None:
        from medref_cli.pseudo_labels import checked_set

        checked_set(pseudo_labels, manifest)
    rank, world, local_rank = init_distributed()
    run = ws.runs / check_name(req.name or default_run_name(req, dataset, _slug(req.labeled)), "run name")
    if rank == 0:
        check_unlocked(run)
    applied: list[str] = []
    if req.resume:  # the run's own config and split copy
        config, status, applied = _resume(req, run, manifest, rank)
        pseudo_labels = _resumed_pseudo_labels(run, config.inputs, pseudo_labels, manifest)
        spec = load_split(run / "split.json")
        check_trainable(spec, manifest, run / "split.json")
        try:
            device, text, model = _model(config, req.device, world, local_rank)
        except BaseException:
            release_lock(run)
            raise
    else:
        # preflight: the whole config, the logger, the device, the text encoder, the encoder and its weights are
        # resolved and built before the split file or the run folder exists, so a typo leaves nothing behind
        recorded = (str(pseudo_labels.resolve()), file_sha256(pseudo_labels / "pseudo_labels.json")) \
            if pseudo_labels is not None else None
        config = resolve_config(req, load_config_file(req.config_file) if req.config_file else {}, init, recorded)
        check_logger(config.train.logger)
        device, text, model = _model(config, req.device, world, local_rank)
        spec, split_file = _split(ws, dataset, req, rank, world)
        check_trainable(spec, manifest, split_file)
        config = replace(config, data=RunData(dataset, manifest.dataset_hash, req.labeled, split_file.name))
        status = _new_run(req, run, split_file, config, rank)
    _barrier(world)
    handler = attach_log(run) if rank == 0 else None
    if rank == 0:
        env = record_environment(run, device, world)
        log.info("environment: %s (%s kernels), torch %s, %d threads, %s", env["cpu"], env["cpu_capability"],
                 env["versions"]["torch"], env["torch_threads"], env.get("gpu", env["device"]))
    if applied:
        log.info("resume: applied %s", "; ".join(applied))
    _log_model(config, model, text)
    ctx = RunContext(run=run, config=config, model=model, text=text,
                     device=device, status=status, rank=rank, world=world, progress=req.progress)
    return TrainSetup(ctx, spec, manifest, folder, handler, pseudo_labels)


def _resumed_pseudo_labels(run: Path, inputs: RunInputs, given: Path | None, manifest) -> Path | None:  # noqa: ANN001
    """The pseudo-label set a resumed run goes on with: the one its config.yaml records (given again or not),
    unchanged since (its hash); another set, or one on a run that had none, is refused."""
    from medref_cli.pseudo_labels import checked_set
    from medref_cli.workspace import file_sha256

    if inputs.pseudo_labels is None:
        if given is not None:
            raise MedrefError(f"{run}: --resume cannot add --pseudo-labels (the run started without them); start a "
                              "new run (--name)")
        return None
    recorded = Path(inputs.pseudo_labels)
    if given is not None and given.resolve() != recorded:
        raise MedrefError(f"{run}: --resume cannot change --pseudo-labels ({recorded} -> {given.resolve()})")
    checked_set(recorded, manifest)
    if file_sha256(recorded / "pseudo_labels.json") != inputs.pseudo_labels_sha256:
        raise MedrefError(f"{recorded / 'pseudo_labels.json'}: changed since run {run.name} started with it "
                          "(sha256); --resume would train on other labels; start a new run")
    return recorded


def _slug(labeled: str) -> str:
    from medref_cli.splits import parse_ratio

    return parse_ratio(labeled).slug


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _split(ws: Workspace, dataset: str, req: TrainRequest, rank: int, world: int):  # noqa: ANN202
    """(SplitSpec, split file): rank 0 makes a missing split first, the other ranks then read it."""
    from medref_cli.splits import ensure

    seed = req.new_run_seed
    spec, split_file, created = ensure(ws, dataset, req.labeled, seed) if rank == 0 else (None, None, False)
    if world > 1:
        _barrier(world)
        spec, split_file, _ = ensure(ws, dataset, req.labeled, seed)
    if created:
        log.info("created split %s", split_file)
    return spec, split_file


def _resume(req: TrainRequest, run: Path, manifest, rank: int):  # noqa: ANN001, ANN202
    """(RunConfig, RunStatus, applied changes) of the run to continue. config.yaml is rewritten: it records the
    changes, and one of an older version is upgraded to the current one before run.json is rewritten (a version-1
    run.json held the identity an old config.yaml lacks); a current one without changes keeps its bytes."""
    from medref_cli.artifacts import load_run

    if not (run / "checkpoint_latest.pt").is_file():
        raise MedrefError(f"{run}: nothing to resume (no checkpoint_latest.pt); start without --resume")
    if rank == 0:
        acquire_lock(run)  # held from here to the end of training
    was = _saved_config(run)
    if was.data.dataset_hash != manifest.dataset_hash:
        raise MedrefError(f"{run}: dataset {was.data.dataset!r} changed since this run started; it cannot be resumed")
    config, applied = resume_config(req, run, was, load_config_file(req.config_file) if req.config_file else {})
    check_logger(config.train.logger)
    if rank == 0:
        _write_config(run, config)
    return config, load_run(run), applied


def _saved_config(run: Path) -> RunConfig:
    """The run's `config.yaml`, checked: a field edited by hand since the last
    checkpoint that `--resume` may not change is a one-line error naming it (the checkpoint holds the config it
    ran with)."""
    from medref_cli.config import RESUMABLE, load_run_config, plain_value
    from medref_cli.model import checkpoint

    path = run / "config.yaml"
    written = load_run_config(run)
    now_cfg = written.to_dict()
    ran = checkpoint.load(run / "checkpoint_latest.pt").get("config") or {}
    for section, values in ran.items():
        for key, value in values.items():
            now = now_cfg.get(section, {}).get(key)
            if plain_value(now) != plain_value(value) and (section, key) not in RESUMABLE:
                raise MedrefError(f"{path}: {section}.{key} was edited ({value!r} -> {now!r}) since the run's last "
                                  f"checkpoint; --resume cannot change it; put it back, or start a new run (--name)")
    return written


def _write_config(run: Path, config: RunConfig) -> None:
    """`<run>/config.yaml`: the run's spec (written atomically)."""
    from medref_cli.workspace import write_bytes_atomic

    write_bytes_atomic(run / "config.yaml", config.to_yaml())


def _new_run(req: TrainRequest, run: Path, split_file: Path, config: RunConfig, rank: int) -> RunStatus:
    """The new run's folder: its spec (config.yaml), its split (split.json) and its status (run.json)."""
    from medref_cli.artifacts import RunStatus

    status = RunStatus()
    if rank == 0:
        _claim_new_run(run, req.overwrite)
        _write_config(run, config)
        shutil.copyfile(split_file, run / "split.json")
        status.save(run)
    return status


def _claim_new_run(run: Path, overwrite: bool) -> None:
    """Create the run folder, or empty it with `--overwrite`, holding its lock before anything is removed or
    written: a live run (training, or still in its set-up) is refused, never mixed with this one."""
    if run.exists() and not overwrite:
        raise MedrefError(f"{run}: run already exists; pass --resume to continue it or --overwrite to replace it")
    if run.exists():
        acquire_lock(run)
        for child in run.iterdir():
            if child.name != ".lock":
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        return
    run.parent.mkdir(parents=True, exist_ok=True)
    try:
        run.mkdir()
    except FileExistsError:
        raise MedrefError(f"{run}: created by another process meanwhile; pass --overwrite to replace it") from None
    acquire_lock(run)


def _model(config: RunConfig, device_name: str, world: int, local_rank: int):  # noqa: ANN202
    """(device, frozen text encoder, MedRefNet) of a resolved config."""
    import torch

    from medref_cli.model.network import MedRefNet
    from medref_cli.model.text_encoder import text_encoder

    mcfg, tcfg = config.model, config.train
    device = pick_device(device_name)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    flush_denormals()
    torch.manual_seed(tcfg.seed)
    text = text_encoder(mcfg.text_encoder, mcfg.max_tokens, tcfg.text_cache_size).to_device(device)
    return device, text, MedRefNet(mcfg, text.dim).to(device)


def _log_model(config: RunConfig, model: Any, text: Any) -> None:  # noqa: ANN401 - MedRefNet, TextEncoder
    from medref_cli.model.network import count_parameters

    log.info("model: %s preset, %.2f M trainable parameters, text encoder %s (%d-d)",
             config.preset, count_parameters(model) / 1e6, config.model.text_encoder, text.dim)
