"""ITCL's floor on real reports: the mean entropy of the soft targets over random batches, per target power.

    python bench/itc_floor.py [--annotation ../shared/data/qata-cov19/prompts/annotation.json] [--batch 16]

Reads the train captions of an SGSeg-layout `annotation.json`, parses their zone vectors and prints, for each
`method.itc_target_power`, the floor of `itc_loss` on random batches (`medref_cli.semi.itc.itc_floor`) against
ln B, the floor of uniform targets. No training; a second or two.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from pathlib import Path

import torch

from medref_cli.semi.itc import itc_floor
from medref_cli.zones import parse_zones

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "qata-cov19" / "prompts" / "annotation.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--annotation", type=Path, default=DEFAULT)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--powers", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0, 1000.0])
    args = ap.parse_args()
    captions = [r["caption"] for r in json.loads(args.annotation.read_text())["train"]]
    zones = torch.tensor([list(parse_zones(c)) for c in captions])
    sides = Counter(("L" if z[:3].any() else "") + ("R" if z[3:].any() else "") for z in zones)
    print(f"{args.annotation}: {len(captions)} train reports, {len({tuple(z.tolist()) for z in zones})} distinct "
          f"zone vectors, sides {dict(sides)}")
    gen = torch.Generator().manual_seed(0)
    batches = [zones[torch.randperm(len(zones), generator=gen)[: args.batch]] for _ in range(args.draws)]
    ln_b = math.log(args.batch)
    for power in args.powers:
        floor = sum(itc_floor(b, power=power).item() for b in batches) / len(batches)
        print(f"power {power:g}: floor {floor:.3f} = {floor / ln_b:.2f} ln B (ln {args.batch} = {ln_b:.3f}); "
              f"ITCL can move the loss by at most {ln_b - floor:.3f} from uniform")


if __name__ == "__main__":
    main()
