"""`medref split`: write the split file of one dataset, ratio and seed (rules in `medref_cli.splits`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medref_cli.artifacts import SplitSpec, load_dataset
from medref_cli.errors import MedrefError
from medref_cli.splits import TEST_FRACTION, VAL_FRACTION, import_split, make_split, parse_ratio, split_path
from medref_cli.workspace import Workspace


@dataclass
class SplitConfig:
    dataset: str
    labeled: str
    seed: int = 42
    val_fraction: float = VAL_FRACTION
    test_fraction: float = TEST_FRACTION
    overwrite: bool = False
    from_file: Path | None = None  # labelled ids from this file (`import_split`)
    unlabeled_file: Path | None = None


def run(cfg: SplitConfig, ws: Workspace) -> tuple[SplitSpec, Path]:
    from medref_cli.config import check_seed

    check_seed(cfg.seed)
    ratio = parse_ratio(cfg.labeled)
    manifest, _ = load_dataset(ws, cfg.dataset)
    path = split_path(ws, cfg.dataset, ratio, cfg.seed)
    if path.exists() and not cfg.overwrite:
        raise MedrefError(f"{path}: already exists; pass --overwrite to replace it")
    if cfg.from_file is not None:
        spec = import_split(manifest, ratio, cfg.seed, cfg.from_file, cfg.unlabeled_file, cfg.val_fraction)
    elif cfg.unlabeled_file is not None:
        raise MedrefError("--unlabeled-from needs --from (the labelled ids)")
    else:
        spec = make_split(manifest, ratio, cfg.seed, cfg.val_fraction, cfg.test_fraction)
    spec.save(path)
    return spec, path
