"""Build a classifier by architecture name: torchvision models, or a tiny CNN for fast tests."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from crucible.api.trainingrun import ARCHITECTURES


class TinyCNN(nn.Module):
    """Two conv blocks and a linear head: trains in seconds, for tests and smoke runs."""

    def __init__(self, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(64 * 16, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _last_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The classifier's final Linear layer and where it hangs, so the head can be replaced."""
    found = None
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, child_name, child)
    if found is None:
        raise ValueError("model has no Linear classifier layer")
    return found


def _torchvision_model(architecture: str, num_classes: int, dropout: float) -> nn.Module:
    import torchvision

    kwargs: dict = {"weights": None, "num_classes": num_classes}
    if architecture.startswith(("mobilenet", "efficientnet")):
        kwargs["dropout"] = dropout
    model = torchvision.models.get_model(architecture, **kwargs)
    if architecture.startswith("resnet") and dropout > 0:
        model.fc = nn.Sequential(nn.Dropout(dropout), model.fc)
    return model


# torchvision's MobileNet and EfficientNet use BatchNorm momentum 0.01, tuned for ImageNet's
# hundreds of thousands of steps. In a run of a few hundred steps the running statistics then lag
# the weights and eval-mode accuracy collapses (0.11 on digits while train-mode accuracy is 0.96).
# PyTorch's default of 0.1 tracks the weights at the step counts our runs have.
BATCHNORM_MOMENTUM = 0.1


def _set_batchnorm_momentum(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = BATCHNORM_MOMENTUM
    return model


def build_model(
    architecture: str, num_classes: int, dropout: float = 0.0, pretrained_weights: str | None = None
) -> nn.Module:
    """A classifier with `num_classes` outputs, ready to train (see `BATCHNORM_MOMENTUM`)."""
    return _set_batchnorm_momentum(_build(architecture, num_classes, dropout, pretrained_weights))


def _build(architecture: str, num_classes: int, dropout: float, pretrained_weights: str | None) -> nn.Module:
    """A freshly initialised classifier with `num_classes` outputs.

    Pretrained weights (a local torchvision state dict with its original head) are loaded first,
    then the head is replaced to fit the class list.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"spec.model.architecture: {architecture!r} is not one of {', '.join(ARCHITECTURES)}"
        )
    if architecture == "tiny_cnn":
        model: nn.Module = TinyCNN(num_classes, dropout)
        if pretrained_weights:
            model.load_state_dict(torch.load(pretrained_weights, map_location="cpu", weights_only=True))
        return model
    if not pretrained_weights:
        return _torchvision_model(architecture, num_classes, dropout)
    path = Path(pretrained_weights)
    if not path.is_file():
        raise FileNotFoundError(f"spec.model.pretrainedWeights: no such file: {pretrained_weights}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    head_classes = next(
        v.shape[0] for k, v in reversed(state.items()) if k.endswith("weight") and v.ndim == 2
    )
    model = _torchvision_model(architecture, head_classes, dropout)
    _, _, head = _last_linear(model)
    if isinstance(model, nn.Module) and architecture.startswith("resnet") and dropout > 0:
        state = {(f"fc.1.{k[3:]}" if k.startswith("fc.") else k): v for k, v in state.items()}
    model.load_state_dict(state)
    if head.out_features != num_classes:
        parent, name, head = _last_linear(model)
        setattr(parent, name, nn.Linear(head.in_features, num_classes))
    return model
