"""DICOM and 2-D NIfTI images read into the prepared 8-bit format (files written with pydicom / nibabel)."""

import numpy as np
import pytest

from medref_cli.errors import MedrefError
from medref_cli.imaging import load_gray


def write_dicom(path, pixels, photometric="MONOCHROME2", window=None, slope=1.0, intercept=0.0, suffix=True):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


GRADIENT = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (8, 1))  # 8 x 64, 0..4032


@pytest.mark.parametrize(("photometric", "window", "first", "last"), [
    ("MONOCHROME2", None, 0, 255),  # min-max
    ("MONOCHROME1", None, 255, 0),  # inverted: low values are bright
    ("MONOCHROME2", (1024, 2048), 0, 255),  # the file's window: 0..2048 spans the range, above clips
])
def test_dicom_window_and_photometric(tmp_path, photometric, window, first, last):
    img = load_gray(write_dicom(tmp_path / "x.dcm", GRADIENT, photometric, window))
    assert img.dtype == np.uint8 and img.shape == (8, 64)
    assert img[0, 0] == first and img[0, -1] == last
    if window:
        assert img[0, 16] == 128 and img[0, 40] == 255  # 1024 is the centre; 2560 lies above the window


def test_dicom_without_extension_and_rescale(tmp_path):
    path = write_dicom(tmp_path / "IM0001", GRADIENT, window=(0, 400), slope=1.0, intercept=-1024)
    img = load_gray(path)  # found by its DICM magic; intercept -1024 puts 1024 at the window centre (0)
    assert img[0, 16] == 128


def test_unreadable_and_colour_dicom_are_named(tmp_path):
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    with pytest.raises(MedrefError, match="broken.dcm: unreadable DICOM"):
        load_gray(bad)


def test_2d_nifti_image(tmp_path):
    import nibabel as nib

    arr = np.arange(48, dtype=np.float32).reshape(6, 8)
    nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / "s.nii.gz")
    img = load_gray(tmp_path / "s.nii.gz")
    assert img.shape == (8, 6) and img.dtype == np.uint8  # display orientation, as prepare mosmed shows slices
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.float32), np.eye(4)), tmp_path / "v.nii.gz")
    with pytest.raises(MedrefError, match="v.nii.gz: expected a 2-D NIfTI image"):
        load_gray(tmp_path / "v.nii.gz")
