"""Semi-MedRef's pieces as pure functions over tensors and strings (SPEC 3), composed by `methods.py`."""
