"""The torch device of a command (`--device`) and the CPU float mode every process that runs the model sets."""

from __future__ import annotations

from medref_cli.errors import MedrefError


def pick_device(name: str):  # noqa: ANN201 - torch.device
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MedrefError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


def place(model, text, name: str):  # noqa: ANN001, ANN201 - (MedRefNet, FrozenTextEncoder) -> torch.device
    """Move a model and its text encoder to device `name` (`--device`), in the float mode inference runs in;
    returns the torch.device."""
    dev = pick_device(name)
    flush_denormals()
    model.to(dev)
    text.to_device(dev)
    return dev


def flush_denormals() -> None:
    """Compute float32 values below 1.2e-38 (denormals) as zero on the CPU, for the whole process.

    A Dice-only loss (the official recipe's) keeps pushing background logits down: on real QaTa they reach -260
    by epoch 100, and the sigmoids, activations and gradients in the denormal range run x86 arithmetic at a
    fraction of its speed (that run's semi-supervised epochs went from 24 s to 52 s). Flushed, each such value
    moves by less than 1.2e-38."""
    import torch

    torch.set_flush_denormal(True)
