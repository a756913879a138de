"""`medref predict RUN --image X --text "..." --out mask.png`: one mask from one image and report.

PNG/JPEG in -> PNG mask ({0,255}) + `<out stem>_overlay.png`. NIfTI in -> NIfTI mask (uint8 {0,1}) with the
input's affine and header; a 3-D volume is segmented slice by slice (axial, same report for every slice).
"""

from __future__ import annotations

import dataclasses
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medref_cli.config import THRESHOLD
from medref_cli.errors import MedrefError
from medref_cli.workspace import Workspace, write_bytes_atomic
from medref_cli.zones import normalise_caption


@dataclass
class PredictConfig:
    run: str | None  # a run folder or name; None with `model`
    image: Path
    text: str
    out: Path
    checkpoint: str = "best"
    threshold: float = THRESHOLD
    device: str = "auto"
    overwrite: bool = False  # replace an existing --out / overlay (never the input image)
    model: str | None = None  # a bundled model's name (`medref models`) instead of a run
    side_gate: bool = False  # nothing in the image half a one-lung report does not name
    laterality: str = "patient"  # which sides free-text reports name (template captions: image sides, always)

    @property
    def overlay(self) -> Path:
        return self.out.with_name(f"{self.out.name.split('.')[0]}_overlay.png")


PREDICTIONS_HEADER = "id,image,text,lesion_pixels"  # how predictions.csv of a prediction folder begins


def check_outputs(inputs: list[Path], outputs: list[Path], overwrite: bool) -> None:
    """Refuse an output that is an input file or folder, or holds one (even with --overwrite), and an existing
    output without --overwrite; paths compared after resolving links. With --overwrite, only what `predict` made
    before is replaced (`check_replaceable`)."""
    real_inputs = [p.resolve() for p in inputs]
    for out in outputs:
        real = out.resolve()
        for src in real_inputs:
            if real == src or src.is_relative_to(real):
                raise MedrefError(f"{out}: is or holds the input {src}; choose another --out (the input is never "
                                  "overwritten)")
        if out.exists() or out.is_symlink():
            if not overwrite:
                raise MedrefError(f"{out}: already exists; pass --overwrite to replace it")
            check_replaceable(out)


def _inside_run_or_dataset(path: Path) -> Path | None:
    """`path` or the first folder above it that is a run or a prepared dataset (holds run.json / dataset.json)."""
    real = path.resolve()
    return next((d for d in (real, *real.parents) if (d / "run.json").is_file() or (d / "dataset.json").is_file()),
                None)


def check_replaceable(out: Path) -> None:
    """`--overwrite` replaces only what `predict` made: a prediction folder (predictions.csv, masks/, overlays/
    and nothing else) or a mask / overlay image file; never the current folder or one above it, a workspace, a
    run, a dataset, a split or anything inside a run or dataset."""
    real = out.resolve()
    if real == Path.cwd().resolve() or Path.cwd().resolve().is_relative_to(real):
        raise MedrefError(f"{out}: is the current folder or holds it; --out must be a new or prediction folder")
    holder = _inside_run_or_dataset(out)
    if holder is not None:
        raise MedrefError(f"{out}: is or lies inside {holder}, a medref run or dataset; --overwrite never replaces "
                          f"anything there; choose another --out")
    if out.is_symlink():
        raise MedrefError(f"{out}: is a symbolic link; --overwrite replaces only a file or folder predict made")
    if out.is_dir():
        names = {p.name for p in out.iterdir()}
        csv_file = out / "predictions.csv"
        made_by_predict = (csv_file.is_file() and names <= {"predictions.csv", "masks", "overlays"}
                           and csv_file.read_text(errors="replace").startswith(PREDICTIONS_HEADER))
        if not made_by_predict:  # a run, dataset or workspace holds other names, so it is never replaced
            raise MedrefError(f"{out}: not a folder `medref predict --input` made (predictions.csv, masks/, "
                              f"overlays/ only); --overwrite replaces only such a folder; choose another --out")
        return
    if not out.name.lower().endswith((".png", ".nii", ".nii.gz")):
        raise MedrefError(f"{out}: not a mask or overlay predict writes (.png, .nii, .nii.gz); --overwrite "
                          f"replaces only those; choose another --out")


def check_threshold(threshold: float) -> None:
    if not 0.0 < threshold < 1.0:  # nan fails too
        raise MedrefError(f"--threshold {threshold}: must lie strictly between 0 and 1 (a probability cut)")


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


def _predictor(cfg: PredictConfig | BatchPredictConfig, ws: Workspace):  # noqa: ANN202 - a Predictor
    """The Predictor of `cfg.run` (its `cfg.checkpoint`) or of the bundled `cfg.model`, at `cfg.threshold`, with
    the side gate reading reports under `cfg.laterality` when `cfg.side_gate`."""
    from medref_cli.report_zones import check_laterality
    from medref_cli.training.predictor import from_bundled, open_predictor

    if (cfg.run is None) == (cfg.model is None):
        raise MedrefError("predict: give a RUN or --model NAME (a bundled model, see `medref models`), not both")
    check_laterality(cfg.laterality)
    predictor = (from_bundled(cfg.model, cfg.device) if cfg.model is not None
                 else open_predictor(ws, cfg.run, cfg.checkpoint, cfg.device, with_dataset=False)[0])
    return dataclasses.replace(predictor, threshold=cfg.threshold, side_gate=cfg.side_gate,
                               laterality=cfg.laterality)


def run(cfg: PredictConfig, ws: Workspace) -> list[Path]:
    from medref_cli.imaging import load_gray, png_bytes
    from medref_cli.importers import nifti
    from medref_cli.overlays import panel_png

    cfg = dataclasses.replace(cfg, text=normalise_caption(cfg.text))
    if not cfg.text:
        raise MedrefError("--text: empty report; give the positional report, e.g. 'Unilateral pulmonary infection, "
                          "one infected area, lower left lung.'")
    if not cfg.image.is_file():
        raise MedrefError(f"{cfg.image}: image not found")
    check_threshold(cfg.threshold)
    if cfg.out.is_dir():
        raise MedrefError(f"--out {cfg.out} is a folder; --image writes one file (give a file name such as "
                          f"{cfg.out / 'mask.png'}, or use --input for a folder of results)")
    check_outputs([cfg.image], [cfg.out, cfg.overlay], cfg.overwrite)
    predictor = _predictor(cfg, ws)
    written = []
    if is_nifti(cfg.image):
        import nibabel as nib

        if not is_nifti(cfg.out):
            raise MedrefError(f"{cfg.out}: a NIfTI input needs a .nii or .nii.gz --out")
        vol = nifti.load_volume(cfg.image).astype(np.float32)  # one-line errors; slice size capped
        img = nib.load(str(cfg.image))
        squeeze2d = vol.ndim == 2
        vol3 = vol[..., None] if squeeze2d else vol
        if vol3.ndim != 3:
            raise MedrefError(f"{cfg.image}: expected a 2-D or 3-D volume, got shape {vol.shape}")
        out = np.zeros(vol3.shape, np.uint8)
        for z in range(vol3.shape[2]):
            shown = nifti.window(nifti.to_display(vol3[:, :, z]))
            out[:, :, z] = nifti.from_display(predictor.segment([shown], [cfg.text])[0][0])
        mask_img = nib.Nifti1Image(out[..., 0] if squeeze2d else out, img.affine, img.header)
        mask_img.set_data_dtype(np.uint8)
        buf = mask_img.to_bytes() if not cfg.out.name.endswith(".gz") else _gz(mask_img)
        write_bytes_atomic(cfg.out, buf)
        written.append(cfg.out)
        z_mid = int(np.argmax(out.reshape(-1, out.shape[2]).sum(0))) if out.any() else out.shape[2] // 2
        image2d = nifti.window(nifti.to_display(vol3[:, :, z_mid]))
        mask2d = nifti.to_display(out[:, :, z_mid])
    else:
        image2d = load_gray(cfg.image)
        mask2d = predictor.segment([image2d], [cfg.text])[0][0]
        write_bytes_atomic(cfg.out, png_bytes(mask2d * np.uint8(255)))
        written.append(cfg.out)
    write_bytes_atomic(cfg.overlay, panel_png(image2d, mask2d, cfg.text))
    written.append(cfg.overlay)
    return written


def _gz(img) -> bytes:  # noqa: ANN001 - nibabel image
    import gzip

    return gzip.compress(img.to_bytes(), mtime=0)


# predictions.csv names image sides, never the patient's: on a frontal chest X-ray the patient's right lung is on
# the image left (the `laterality` of dataset.json says which sides a dataset's reports name).
ZONE_COLUMNS = ("image-left-upper", "image-left-middle", "image-left-lower", "image-right-upper",
                "image-right-middle", "image-right-lower")


@dataclass
class BatchPredictConfig:
    run: str | None  # a run folder or name; None with `model`
    input: Path  # a folder of images, or a table (csv / tsv / xlsx) with `image` and `text` columns
    out: Path  # a new folder: masks/, overlays/, predictions.csv
    text: str | None = None  # one report for every image (a folder input needs it)
    checkpoint: str = "best"
    threshold: float = THRESHOLD
    batch_size: int = 16
    mask_format: str = "png"  # png | nifti
    overlays: int = 20  # overlay PNGs written (evenly spread); 0 for none
    overwrite: bool = False
    device: str = "auto"
    progress: bool = False
    model: str | None = None  # a bundled model's name (`medref models`) instead of a run
    side_gate: bool = False  # nothing in the image half a one-lung report does not name
    laterality: str = "patient"  # which sides free-text reports name (template captions: image sides, always)


def batch_inputs(cfg: BatchPredictConfig) -> list[tuple[str, Path, str]]:
    """(id, image path, report) per image of a folder or a table; one-line errors name the input."""
    from medref_cli.importers.custom import TEXT_COLUMNS, image_rows, table_images
    from medref_cli.importers.tables import IMAGE_FILE_EXTENSIONS, file_stem

    src = cfg.input
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_FILE_EXTENSIONS))
        root = src.resolve()
        outside = next((p for p in files if not p.resolve().is_relative_to(root)), None)
        if outside is not None:  # the rule tables follow: nothing is read from outside the input's folder
            raise MedrefError(f"{src}: {outside.name} is a link to {outside.resolve()}, outside the folder; copy the "
                              "image in or remove the link")
        if not files:
            raise MedrefError(f"{src}: no images (expected {', '.join(IMAGE_FILE_EXTENSIONS)})")
        if not (cfg.text or "").strip():
            raise MedrefError(f"{src}: a folder of images has no reports; pass --text with the report for all, "
                              "or --input a table with image and text columns")
        stems = Counter(file_stem(p.name).lower() for p in files)  # a.png and a.dcm: each keeps its whole name
        return [(file_stem(p.name) if stems[file_stem(p.name).lower()] == 1 else p.name, p,
                 normalise_caption(cfg.text)) for p in files]  # type: ignore[arg-type]
    if not src.is_file():
        raise MedrefError(f"{src}: input folder or table not found")
    rows, columns = image_rows(src)  # a csv / tsv / xlsx with an `image` column, optional text and id columns
    text_col = next((c for c in TEXT_COLUMNS if c in columns), None)
    out = []
    for (row_no, row), (rid, _, path) in zip(rows, table_images(src, rows), strict=True):
        text = normalise_caption((row.get(text_col, "") if text_col else "") or cfg.text or "")
        if not text.strip():
            raise MedrefError(f"{src}: row {row_no}: no report for {row['image']!r} (fill the text column or pass "
                              "--text)")
        out.append((rid, path, text))
    if not out:
        raise MedrefError(f"{src}: the table names no image")
    return out


def run_batch(cfg: BatchPredictConfig, ws: Workspace) -> tuple[Path, int]:
    """Masks, overlays and predictions.csv for every input image, built in a temp folder then renamed."""
    import csv

    from medref_cli.imaging import load_gray
    from medref_cli.overlays import panel_png
    from medref_cli.progress import track
    from medref_cli.workspace import staged_dir

    if cfg.mask_format not in ("png", "nifti"):
        raise MedrefError(f"--format {cfg.mask_format!r}: choose png or nifti")
    if cfg.batch_size < 1:
        raise MedrefError(f"--batch-size {cfg.batch_size}: must be at least 1")
    check_threshold(cfg.threshold)
    inputs = batch_inputs(cfg)
    check_outputs([cfg.input, *(path for _, path, _ in inputs)], [cfg.out], cfg.overwrite)
    predictor = _predictor(cfg, ws)
    show = set(np.linspace(0, len(inputs) - 1, min(cfg.overlays, len(inputs))).round().astype(int).tolist()) \
        if cfg.overlays else set()
    rows = []
    with staged_dir(cfg.out, cfg.overwrite) as tmp:
        (tmp / "masks").mkdir()
        (tmp / "overlays").mkdir()
        chunks = [inputs[i : i + cfg.batch_size] for i in range(0, len(inputs), cfg.batch_size)]
        k = 0
        for chunk in track(chunks, len(chunks), f"predict {len(inputs)} images", cfg.progress):
            images = [load_gray(path) for _, path, _ in chunk]
            results = predictor.segment(images, [t for _, _, t in chunk])
            for (rid, path, text), image, (mask, prob) in zip(chunk, images, results, strict=True):
                _write_mask(tmp / "masks", rid, mask, cfg.mask_format)
                if k in show:
                    (tmp / "overlays" / f"{rid}.png").write_bytes(panel_png(image, mask, text))
                rows.append(_row(rid, path, text, mask, prob))
                k += 1
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["id", "image", "text", "lesion_pixels", *(f"lesion_fraction_{z}" for z in ZONE_COLUMNS),
                    "mean_probability"])
        w.writerows(rows)
        (tmp / "predictions.csv").write_text(buf.getvalue())
    return cfg.out, len(rows)


def _write_mask(folder: Path, rid: str, mask: np.ndarray, fmt: str) -> None:
    """uint8 {0,1} mask -> `<rid>.png` ({0,255}) or `<rid>.nii.gz` (uint8 {0,1}, volume axes)."""
    from medref_cli.imaging import png_bytes

    if fmt == "png":
        (folder / f"{rid}.png").write_bytes(png_bytes(mask * np.uint8(255)))
        return
    import nibabel as nib

    from medref_cli.importers import nifti

    img = nib.Nifti1Image(nifti.from_display(mask), np.eye(4))
    img.set_data_dtype(np.uint8)
    (folder / f"{rid}.nii.gz").write_bytes(_gz(img))


def _row(rid: str, path: Path, text: str, mask: np.ndarray, prob: np.ndarray) -> list:
    """id, image, text, lesion pixels, the share of each zone region covered, mean probability inside the mask."""
    from medref_cli.zone_masks import zone_regions

    regions = zone_regions(*mask.shape).numpy()
    m = mask.astype(bool)
    fractions = [round(float((m & r).sum() / r.sum()), 5) for r in regions]
    mean_p = round(float(prob[m].mean()), 5) if m.any() else 0.0
    return [rid, str(path), text, int(m.sum()), *fractions, mean_p]
