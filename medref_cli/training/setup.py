"""Everything a training stage does before its first step: config, dataset, split, run folder, DDP,
device, text encoder and model. Shared by `pretrain` and `semi-train`."""

from __future__ import annotations

import copy
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medref_cli.errors import MedrefError
from medref_cli.workspace import Workspace, check_name, check_unlocked

log = logging.getLogger(__name__)


@dataclass
class TrainRequest:
    """What the user asked for; CLI options map 1:1 onto these fields."""

    stage: str  # pretrain | semi-train
    method: str
    labeled: str
    dataset: str | None = None
    seed: int = 42
    preset: str = "cpu"
    config_file: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # {"model": {...}, "train": {...}, "method": {...}}
    name: str | None = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = False
    device: str = "auto"
    init_from: str | None = None


def load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise MedrefError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise MedrefError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise MedrefError(f"{path}: expected a mapping at the top level")
    return data


def pick_dataset(ws: Workspace, dataset: str | None) -> str:
    if dataset:
        return dataset
    names = ws.prepared_datasets()
    if len(names) == 1:
        return names[0]
    raise MedrefError(
        f"{ws.datasets}: pass --dataset (prepared: {', '.join(names) or 'none; run `medref prepare` first'})"
    )


def pick_device(name: str):  # noqa: ANN201 - torch.device
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MedrefError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


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


def default_run_name(req: TrainRequest, dataset: str, slug: str) -> str:
    """`pretrain-qata-5pct-s42`, `semi-medref-qata-5pct-s42`, `semi-medref-no-itcl-qata-5pct-s42`."""
    head = "pretrain" if req.stage == "pretrain" else req.method
    recipe = req.overrides.get("method", {}).get("recipe")
    if req.stage == "semi-train" and recipe and recipe != "medref":
        head = f"{head}-{recipe}"
    off = [k.replace("_", "-") for k in ("t_patchmix", "pos_aug", "itcl") if req.overrides.get("method", {}).get(k) is False]
    return "-".join([head, *(f"no-{k}" for k in off), dataset, slug, f"s{req.seed}"])


def resolve_config(req: TrainRequest, file_cfg: dict[str, Any]) -> dict[str, Any]:
    """The run's config, checked: preset, then (semi-train) the recipe, then the `--config` file, then the
    command-line options. The recipe is the one the options name, else the file's, else the default."""
    from medref_cli.model.presets import model_config, resolve, train_config

    layers = [(file_cfg, str(req.config_file or "config"))]
    if req.stage == "semi-train":
        from medref_cli.semi.recipes import DEFAULT_RECIPE, recipe_layer

        recipe = (req.overrides.get("method", {}).get("recipe") or file_cfg.get("method", {}).get("recipe")
                  or DEFAULT_RECIPE)
        layers.insert(0, (recipe_layer(recipe), f"recipe {recipe}"))
    config = resolve(req.preset, req.overrides, "command-line options", layers)
    config["train"]["seed"] = req.seed  # --seed draws the split and seeds training
    model_config(copy.deepcopy(config["model"]), "model")  # refuse a bad config before any folder exists
    train_config(copy.deepcopy(config["train"]), "train")
    from medref_cli.training.tb_log import check_logger

    check_logger(config["train"]["logger"])
    if req.stage == "semi-train":
        from medref_cli.semi.recipes import method_config

        method_config(dict(config.get("method", {}), name=req.method), "method")
    return config


def build(req: TrainRequest, ws: Workspace):  # noqa: ANN201 - (RunContext, SplitSpec, manifest, folder)
    import torch
    import yaml

    from medref_cli.artifacts import load_dataset
    from medref_cli.model.network import MedRefNet, count_parameters
    from medref_cli.model.presets import model_config, train_config
    from medref_cli.model.text_encoder import FrozenTextEncoder
    from medref_cli.stages import split as split_stage
    from medref_cli.training.loop import RunContext
    from medref_cli.training.run_dir import RunInfo, attach_log, load_run

    dataset = pick_dataset(ws, req.dataset)
    manifest, folder = load_dataset(ws, dataset)
    rank, world, local_rank = init_distributed()
    spec, split_file, created = split_stage.ensure(ws, dataset, req.labeled, req.seed) if rank == 0 else (None, None, False)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        spec, split_file, _ = split_stage.ensure(ws, dataset, req.labeled, req.seed)
    if created:
        log.info("created split %s", split_file)
    ratio = split_stage.parse_ratio(req.labeled)
    name = check_name(req.name or default_run_name(req, dataset, ratio.slug), "run name")
    run = ws.runs / name
    file_cfg = load_yaml(req.config_file) if req.config_file else {}
    preset = req.preset
    if rank == 0:
        check_unlocked(run)
    if req.resume:
        if not (run / "checkpoint_latest.pt").is_file():
            raise MedrefError(f"{run}: nothing to resume (no checkpoint_latest.pt); start without --resume")
        info = load_run(run)
        saved = yaml.safe_load((run / "config.yaml").read_text())
        preset, config = saved["preset"], saved["config"]
    else:
        config = resolve_config(req, file_cfg)
        if rank == 0:
            if run.exists() and not req.overwrite:
                raise MedrefError(f"{run}: run already exists; pass --resume to continue it or --overwrite to replace it")
            if run.exists():
                shutil.rmtree(run)
            run.mkdir(parents=True)
            (run / "config.yaml").write_text(yaml.safe_dump({"preset": preset, "config": config}, sort_keys=False))
            shutil.copyfile(split_file, run / "split.json")
        info = RunInfo(
            stage=req.stage, method=req.method, dataset=dataset, dataset_hash=manifest.dataset_hash,
            split_file=split_file.name, ratio=req.labeled, seed=req.seed, preset=preset,
            text_encoder=config["model"]["text_encoder"], init_from=req.init_from,
            eval_model=config.get("method", {}).get("eval_model", "student"),
        )
        if rank == 0:
            info.save(run)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    if rank == 0:
        attach_log(run)
    mcfg = model_config(copy.deepcopy(config["model"]), "model")
    tcfg = train_config(copy.deepcopy(config["train"]), "train")
    device = pick_device(req.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    torch.manual_seed(tcfg.seed)
    text = FrozenTextEncoder(mcfg.text_encoder, mcfg.max_tokens, tcfg.text_cache_size).to_device(device)
    model = MedRefNet(mcfg, text.dim).to(device)
    log.info("model: %s preset, %.2f M trainable parameters, text encoder %s (%d-d)",
             preset, count_parameters(model) / 1e6, mcfg.text_encoder, text.dim)
    ctx = RunContext(run=run, config=config, preset=preset, model_cfg=mcfg, train=tcfg, model=model, text=text,
                     device=device, info=info, rank=rank, world=world, progress=req.progress)
    return ctx, spec, manifest, folder
