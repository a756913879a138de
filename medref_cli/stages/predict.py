"""`medref predict RUN --image X --text "..." --out mask.png`: one mask from one image and report.

PNG/JPEG in -> PNG mask ({0,255}) + `<out stem>_overlay.png`. NIfTI in -> NIfTI mask (uint8 {0,1}) with the
input's affine and header; a 3-D volume is segmented slice by slice (axial, same report for every slice).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medref_cli.errors import MedrefError
from medref_cli.workspace import Workspace, write_bytes_atomic


@dataclass
class PredictConfig:
    run: str
    image: Path
    text: str
    out: Path
    checkpoint: str = "best"
    threshold: float = 0.5
    device: str = "auto"


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


def segment(model, text, image: np.ndarray, caption: str, device: torch.device, threshold: float) -> np.ndarray:  # noqa: ANN001
    """uint8 (H, W) image -> uint8 {0,1} (H, W) mask at the image's own size."""
    from medref_cli.training.inference import predict_probs

    size = model.cfg.image_size
    x = torch.from_numpy(image.astype(np.float32) / 255.0)[None, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    probs = predict_probs(model, text, x, [caption], device)
    probs = F.interpolate(probs, size=image.shape, mode="bilinear", align_corners=False)
    return (probs[0, 0] >= threshold).numpy().astype(np.uint8)


def run(cfg: PredictConfig, ws: Workspace) -> list[Path]:
    from medref_cli.imaging import load_gray, png_bytes
    from medref_cli.importers import nifti
    from medref_cli.overlays import panel
    from medref_cli.training.trained_run import open_run

    if not cfg.text.strip():
        raise MedrefError("--text: empty report; give the positional report, e.g. 'Unilateral pulmonary infection, "
                          "one infected area, lower left lung.'")
    if not cfg.image.is_file():
        raise MedrefError(f"{cfg.image}: image not found")
    tr = open_run(ws, cfg.run, cfg.checkpoint, cfg.device, with_dataset=False)
    model, text, device = tr.model, tr.text, tr.device
    written = []
    if is_nifti(cfg.image):
        import nibabel as nib

        if not is_nifti(cfg.out):
            raise MedrefError(f"{cfg.out}: a NIfTI input needs a .nii or .nii.gz --out")
        try:
            img = nib.load(str(cfg.image))
            vol = np.asarray(img.dataobj, dtype=np.float32)
        except Exception as exc:  # nibabel raises several types
            raise MedrefError(f"{cfg.image}: unreadable NIfTI ({exc.__class__.__name__})") from None
        squeeze2d = vol.ndim == 2
        vol3 = vol[..., None] if squeeze2d else vol
        if vol3.ndim != 3:
            raise MedrefError(f"{cfg.image}: expected a 2-D or 3-D volume, got shape {vol.shape}")
        out = np.zeros(vol3.shape, np.uint8)
        for z in range(vol3.shape[2]):
            shown = nifti.window(nifti.to_display(vol3[:, :, z]))
            out[:, :, z] = nifti.from_display(segment(model, text, shown, cfg.text, device, cfg.threshold))
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
        mask2d = segment(model, text, image2d, cfg.text, device, cfg.threshold)
        write_bytes_atomic(cfg.out, png_bytes(mask2d * np.uint8(255)))
        written.append(cfg.out)
    stem = cfg.out.name.split(".")[0]
    overlay = cfg.out.with_name(f"{stem}_overlay.png")
    buf = io.BytesIO()
    panel(image2d, mask2d, cfg.text).save(buf, format="PNG")
    write_bytes_atomic(overlay, buf.getvalue())
    written.append(overlay)
    return written


def _gz(img) -> bytes:  # noqa: ANN001 - nibabel image
    import gzip

    return gzip.compress(img.to_bytes(), mtime=0)
