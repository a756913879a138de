"""The GuideDecoder referring-segmentation network, its presets, text encoder and checkpoints."""
