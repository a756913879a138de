"""Data layer, metrics and the one training loop shared by `pretrain` and `semi-train`."""
