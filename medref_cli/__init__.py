"""medref: semi-supervised medical referring image segmentation (Semi-MedRef)."""

__version__ = "0.1.0"
