"""Compact white-cell classifiers in plain torch (no torchvision, no timm).

One architecture family, :class:`HemoNet`: a small ResNet (stem convolution, four stages of basic
residual blocks with stride-2 downsampling, global average pooling, dropout, linear head) whose
width, depth and **normalisation layer** are configurable.

Image convention (the one thing every caller must get right)
------------------------------------------------------------
``HemoNet.forward`` takes **raw uint8 RGB images, NHWC** (``N x H x W x 3``), exactly the arrays the
readers produce, already resampled to the canonical pixel size and cropped to ``input_size``. The
network converts to float, scales to [0, 1], subtracts a per-channel mean and divides by a
per-channel std (both stored as buffers, so they travel with the weights and the ONNX graph) and
transposes to NCHW itself. The exported ONNX graph has the same input (``images``: uint8
``[batch, H, W, 3]``) and outputs probabilities. Float NCHW tensors are *not* accepted: one
convention, no silent double normalisation.

Why GroupNorm by default: BatchNorm stores training-set activation statistics and applies them at
test time, so a scanner with a different colour/brightness shifts every activation; GroupNorm and
LayerNorm normalise each image on its own, which is known to transfer better across microscopes.
``norm="batch"`` stays selectable so the comparison can be run.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from hemotwin.errors import InputError

NormKind = Literal["group", "layer", "batch"]

#: Default canonical pixel size (µm/px) and crop size (px): 112 px x 0.225 µm = a 25.2 µm field, large
#: enough for a big monocyte or blast with a margin, small enough for >= 500 cells/s on 2 cores.
#: 112 halves cleanly four times (56/28/14/7); odd feature-map sizes (e.g. from 100 px) ran slower.
DEFAULT_UM_PER_PX = 0.225
DEFAULT_INPUT_SIZE = 112


class ModelConfig(BaseModel):
    """Architecture of a :class:`HemoNet`; stored in every model file and enough to rebuild it.

    Parameters
    ----------
    n_classes
        Number of output classes (the length of the label set).
    input_size
        Side of the square input in pixels (at the canonical µm/px). The network itself accepts any
        size (global pooling); the model file records this one as the preprocessing contract.
    widths
        Channels of the four stages.
    blocks
        Residual blocks per stage.
    stem_stride
        Stride of the stem convolution (2 halves the resolution before the first stage, which is
        where most of the speed comes from).
    norm
        ``"group"`` (GroupNorm, default), ``"layer"`` (GroupNorm with one group: normalises over
        C x H x W per image) or ``"batch"`` (BatchNorm2d, for comparison).
    groups
        Groups of GroupNorm (reduced to a divisor of the channel count where needed).
    dropout
        Dropout probability before the linear head.
    mean, std
        Per-channel (R, G, B) input mean and std in [0, 1] units, applied inside the network.
    """

    model_config = ConfigDict(extra="forbid")

    arch: Literal["hemonet"] = "hemonet"
    n_classes: int = Field(ge=2)
    input_size: int = Field(default=DEFAULT_INPUT_SIZE, ge=16, le=1024)
    widths: tuple[int, int, int, int] = (16, 32, 64, 128)
    blocks: tuple[int, int, int, int] = (1, 1, 2, 1)
    stem_stride: Literal[1, 2] = 2
    norm: NormKind = "group"
    groups: int = Field(default=8, ge=1)
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    # Stained smears are bright (background ~0.85) with dark purple nuclei; these centre the typical
    # range without fitting them to one scanner (fitting them would bake a scanner into the model).
    mean: tuple[float, float, float] = (0.75, 0.65, 0.70)
    std: tuple[float, float, float] = (0.20, 0.22, 0.18)

    @field_validator("widths")
    @classmethod
    def _positive_widths(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(w < 1 for w in v):
            raise ValueError("widths must be positive")
        return v

    @field_validator("blocks")
    @classmethod
    def _positive_blocks(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(b < 1 for b in v):
            raise ValueError("every stage needs at least one block")
        return v

    @field_validator("std")
    @classmethod
    def _positive_std(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(s <= 0 for s in v):
            raise ValueError("std must be positive")
        return v


def make_norm(kind: NormKind, channels: int, groups: int = 8) -> nn.Module:
    """A normalisation layer over ``channels`` feature maps.

    Parameters
    ----------
    kind
        ``"group"``, ``"layer"`` or ``"batch"``.
    channels
        Number of channels.
    groups
        Requested GroupNorm groups; the largest divisor of ``channels`` not above it is used.
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        # GroupNorm(1, C) == LayerNorm over (C, H, W) per image, and exports to ONNX cleanly.
        return nn.GroupNorm(1, channels)
    if kind == "group":
        g = max(d for d in range(1, min(groups, channels) + 1) if channels % d == 0)
        return nn.GroupNorm(g, channels)
    raise InputError("norm", kind, "one of 'group', 'layer', 'batch'")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual shortcut (1x1 projection when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: NormKind, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = make_norm(norm, c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = make_norm(norm, c_out, groups)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          make_norm(norm, c_out, groups))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output: two convolutions plus the shortcut, rectified."""
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.act(y + self.shortcut(x))


class HemoNet(nn.Module):
    """Small ResNet for single-cell crops; input uint8 NHWC RGB, output logits ``N x n_classes``.

    Parameters
    ----------
    config
        The architecture (see :class:`ModelConfig`).

    Examples
    --------
    >>> net = HemoNet(ModelConfig(n_classes=5)).eval()
    >>> x = torch.zeros((2, 112, 112, 3), dtype=torch.uint8)
    >>> net(x).shape
    torch.Size([2, 5])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        # Buffers, not parameters: saved in the state dict and constant-folded into the ONNX graph,
        # never trained. Stored pre-multiplied by 255 so the graph does one sub and one mul on uint8.
        self.register_buffer("input_mean", torch.tensor(c.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("input_inv_std",
                             1.0 / (torch.tensor(c.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0))
        w0 = c.widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(3, w0, 3, stride=c.stem_stride, padding=1, bias=False),
            make_norm(c.norm, w0, c.groups),
            nn.ReLU(inplace=True),
        )
        stages = []
        c_in = w0
        for i, (width, n_blocks) in enumerate(zip(c.widths, c.blocks, strict=True)):
            layers = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(c_in, width, stride, c.norm, c.groups))
                c_in = width
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(c_in, c.n_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.GroupNorm | nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Zero the last norm of each residual branch: every block starts as the identity, which
        # makes short CPU training runs converge faster and more repeatably.
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.norm2.weight)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC RGB -> normalised float32 NCHW (the first step of :meth:`forward`)."""
        # contiguous(): the permuted view is channels-last in memory, and torch 2.13's CPU channels-last
        # GroupNorm/conv backward crashes the process (double free) for some batch sizes (e.g. 5).
        x = images.permute(0, 3, 1, 2).to(torch.float32).contiguous()
        return (x - self.input_mean) * self.input_inv_std

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features ``N x widths[-1]`` of uint8 NHWC images."""
        x = self.stages(self.stem(self.preprocess(images)))
        return torch.flatten(self.pool(x), 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``N x n_classes`` of uint8 NHWC RGB images."""
        return self.head(self.dropout(self.features(images)))


class ProbabilityModel(nn.Module):
    """A classifier followed by softmax: what the ONNX graph and the inference engine compute."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (``N x K``) of uint8 NHWC images."""
        return torch.softmax(self.model(images), dim=1)


def build_model(config: ModelConfig | dict) -> HemoNet:
    """Build a freshly initialised :class:`HemoNet` (seed torch first for repeatable weights).

    Parameters
    ----------
    config
        A :class:`ModelConfig` or a dict of its fields.
    """
    if isinstance(config, dict):
        try:
            config = ModelConfig.model_validate(config)
        except ValueError as exc:  # pydantic ValidationError is a ValueError
            raise InputError("model config", config, f"a valid ModelConfig ({exc})") from exc
    return HemoNet(config)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: HemoNet, input_size: int | None = None) -> int:
    """Multiply-accumulates of one forward pass on one image (convolutions and the head).

    Counted with forward hooks on a dummy image, so it follows any configuration; normalisation,
    activations and pooling are left out (they are a few percent of the convolutions).
    """
    size = input_size or model.config.input_size
    total = 0

    def conv_hook(m: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out.shape[1] * out.shape[2] * out.shape[3] * k

    def linear_hook(m: nn.Linear, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1, size, size, 3), dtype=torch.uint8))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total)
