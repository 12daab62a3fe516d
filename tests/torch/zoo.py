"""A zoo of realistic models for the PyTorch adapter tests.

torchvision cannot be imported in the test environment, so the vision models below are written
from torchvision's published structure: the same module tree (and so the same qualified module
names), the same widths and block configurations, the same initialisation, and above all the
same *in-place* patterns. The in-place operations are what make real models hard for a
debugger: a forward hook sees a module's output tensor, and the very next operation may
overwrite that storage (``ReLU(inplace=True)`` after a BatchNorm, ``out += identity`` on a
BatchNorm output, ``Dropout(inplace=True)`` on a view...), so anything the debugger records
lazily, or any NaN it tries to attribute to the module that produced it, can be silently wrong.

Vision models (random images, batch 2, 32 px except GoogLeNet at 64 px; cross-entropy loss):

- ``resnet18``: ResNet-18 (BasicBlock x [2, 2, 2, 2], widths 64..512, 11.69M parameters at
  1000 classes). Each block runs conv-BN-``ReLU(inplace=True)``, then ``out += identity`` onto
  the second BatchNorm's output and reuses the *same* ``ReLU(inplace=True)`` module a second
  time; stride-2 blocks have a ``downsample`` 1x1 conv + BN shortcut.
- ``mobilenet_v3_small``: MobileNetV3-Small (the published 11-block config). Inverted residuals
  whose expand/depthwise ``Conv-BN-act`` stages use ``Hardswish(inplace=True)`` or
  ``ReLU(inplace=True)`` directly on BatchNorm outputs, squeeze-excitation with a
  ``Hardsigmoid`` gate (``scale * input``), ``result += input`` residuals, and a classifier with
  ``Hardswish(inplace=True)`` and ``Dropout(inplace=True)``.
- ``densenet``: DenseNet-121 (blocks (6, 12, 24, 16), growth 32, bn_size 4). Every dense layer
  concatenates all previous feature maps and applies BN + ``ReLU(inplace=True)`` twice;
  transitions are BN-ReLU(inplace)-conv-avgpool; the forward applies
  ``F.relu(features, inplace=True)`` to the output of ``features`` (whose last module,
  ``norm5``, therefore has its output overwritten outside any module).
- ``googlenet``: GoogLeNet/Inception-v1 with ``BasicConv2d`` (conv, BN, functional
  ``F.relu(x, inplace=True)``: the BN output is clobbered by a non-module op), four-branch
  inception blocks joined by ``torch.cat``, and two auxiliary heads (adaptive pooling, so small
  inputs work). Train mode returns the namedtuple ``GoogLeNetOutputs(logits, aux_logits2,
  aux_logits1)``, eval mode a plain tensor: a model whose output type depends on the mode.
- ``efficientnet_b0``: EfficientNet-B0. MBConv blocks with ``SiLU(inplace=True)``,
  squeeze-excitation (SiLU + Sigmoid gate), ``StochasticDepth`` ("row" mode: random per-sample
  drop via ``empty().bernoulli_`` during training) before ``result += input``, and a classifier
  ``Sequential(Dropout(p, inplace=True), Linear)`` applied to ``torch.flatten`` of the avgpool
  output, i.e. an in-place op on a *view* of another module's output.
- ``vit_tiny``: a small Vision Transformer in torchvision's layout (conv patch embedding, class
  token, learned position embedding, pre-norm encoder blocks with ``nn.MultiheadAttention`` and
  a GELU/Dropout MLP), 4 layers, hidden 192, 3 heads. No in-place ops, but fused attention
  kernels, parameters used outside any leaf module and a non-leaf attention module.

Hugging Face models (built from small configs with ``transformers``; nothing is downloaded;
``transformers`` is imported lazily so the vision models work without it). Batches come from
``hf_batch`` and the loss is ``model(**batch).loss``:

- ``bert_tiny`` / ``bert_mini``: ``BertForSequenceClassification`` (ModelOutput dataclasses,
  attention masks, dropout everywhere).
- ``gpt2_tiny``: ``GPT2LMHeadModel`` with ``use_cache`` on, so outputs carry a cache object
  (``out["cache"]``, a ``DynamicCache`` in transformers 5) that is neither a tensor nor a plain
  container; ``Conv1D`` leaf layers and tied embeddings.
- ``t5_tiny``: ``T5ForConditionalGeneration`` (encoder-decoder, relative position bias shared
  across blocks, labels shifted right into decoder inputs, an ``EncoderDecoderCache`` output).

Generic use::

    model, make = ZOO[name]()
    args, kwargs, loss_of = make(seed)
    loss_of(model(*args, **kwargs)).backward()

``deep_leaf(name)`` gives the qualified name of a deep inner leaf module of each model that is
a good target for NaN injection (usually one whose output is then modified in place).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "HF_NAMES",
    "IMAGE_NAMES",
    "ZOO",
    "GoogLeNetOutputs",
    "Inputs",
    "StochasticDepth",
    "bert_mini",
    "bert_tiny",
    "deep_leaf",
    "densenet",
    "efficientnet_b0",
    "googlenet",
    "gpt2_tiny",
    "hf_batch",
    "image_size",
    "mobilenet_v3_small",
    "resnet18",
    "t5_tiny",
    "vit_tiny",
]

NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[..., nn.Module]


def _make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision's channel rounding (from the original TensorFlow MobileNet code)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvNormActivation(nn.Sequential):
    """torchvision.ops.Conv2dNormActivation: conv (no bias), norm, activation(inplace=True)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        norm_layer: NormLayer | None = nn.BatchNorm2d,
        activation_layer: ActLayer | None = nn.ReLU,
        dilation: int = 1,
    ) -> None:
        padding = (kernel_size - 1) // 2 * dilation
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation=dilation,
                groups=groups,
                bias=norm_layer is None,
            )
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: ``input * gate(fc2(act(fc1(avgpool(input)))))``."""

    def __init__(
        self,
        input_channels: int,
        squeeze_channels: int,
        activation: ActLayer = nn.ReLU,
        scale_activation: ActLayer = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.avgpool(x)
        scale = self.fc1(scale)
        scale = self.activation(scale)
        scale = self.fc2(scale)
        out: torch.Tensor = self.scale_activation(scale)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._scale(x) * x


# --------------------------------------------------------------------------------------------
# ResNet-18
# --------------------------------------------------------------------------------------------


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity  # overwrites bn2's output in place
        result: torch.Tensor = self.relu(out)  # same ReLU module, second call
        return result


class ResNet(nn.Module):
    def __init__(self, layers: Sequence[int], num_classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * BasicBlock.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * BasicBlock.expansion, stride),
                nn.BatchNorm2d(planes * BasicBlock.expansion),
            )
        layers: list[nn.Module] = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        layers.extend(BasicBlock(self.inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        out: torch.Tensor = self.fc(x)
        return out


def resnet18(num_classes: int = 10) -> ResNet:
    return ResNet([2, 2, 2, 2], num_classes=num_classes)


# --------------------------------------------------------------------------------------------
# MobileNetV3-Small
# --------------------------------------------------------------------------------------------


class BneckConfig(NamedTuple):
    input_channels: int
    kernel: int
    expanded_channels: int
    out_channels: int
    use_se: bool
    use_hs: bool  # Hardswish ("HS") rather than ReLU ("RE")
    stride: int
    dilation: int = 1


class MobileInvertedResidual(nn.Module):
    """torchvision.models.mobilenetv3.InvertedResidual."""

    def __init__(self, cnf: BneckConfig, norm_layer: NormLayer) -> None:
        super().__init__()
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        act: ActLayer = nn.Hardswish if cnf.use_hs else nn.ReLU
        layers: list[nn.Module] = []
        if cnf.expanded_channels != cnf.input_channels:
            layers.append(
                ConvNormActivation(
                    cnf.input_channels,
                    cnf.expanded_channels,
                    kernel_size=1,
                    norm_layer=norm_layer,
                    activation_layer=act,
                )
            )
        stride = 1 if cnf.dilation > 1 else cnf.stride
        layers.append(
            ConvNormActivation(
                cnf.expanded_channels,
                cnf.expanded_channels,
                kernel_size=cnf.kernel,
                stride=stride,
                dilation=cnf.dilation,
                groups=cnf.expanded_channels,
                norm_layer=norm_layer,
                activation_layer=act,
            )
        )
        if cnf.use_se:
            squeeze = _make_divisible(cnf.expanded_channels // 4, 8)
            layers.append(
                SqueezeExcitation(cnf.expanded_channels, squeeze, scale_activation=nn.Hardsigmoid)
            )
        layers.append(
            ConvNormActivation(
                cnf.expanded_channels,
                cnf.out_channels,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=None,
            )
        )
        self.block = nn.Sequential(*layers)
        self.out_channels = cnf.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.block(x)
        if self.use_res_connect:
            result += x
        return result


MOBILENET_V3_SMALL: tuple[BneckConfig, ...] = (
    BneckConfig(16, 3, 16, 16, True, False, 2),  # C1
    BneckConfig(16, 3, 72, 24, False, False, 2),  # C2
    BneckConfig(24, 3, 88, 24, False, False, 1),
    BneckConfig(24, 5, 96, 40, True, True, 2),  # C3
    BneckConfig(40, 5, 240, 40, True, True, 1),
    BneckConfig(40, 5, 240, 40, True, True, 1),
    BneckConfig(40, 5, 120, 48, True, True, 1),
    BneckConfig(48, 5, 144, 48, True, True, 1),
    BneckConfig(48, 5, 288, 96, True, True, 2),  # C4
    BneckConfig(96, 5, 576, 96, True, True, 1),
    BneckConfig(96, 5, 576, 96, True, True, 1),
)


class MobileNetV3(nn.Module):
    def __init__(
        self,
        setting: Sequence[BneckConfig],
        last_channel: int,
        num_classes: int = 1000,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        norm_layer: NormLayer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
        first = setting[0].input_channels
        layers: list[nn.Module] = [
            ConvNormActivation(
                3,
                first,
                kernel_size=3,
                stride=2,
                norm_layer=norm_layer,
                activation_layer=nn.Hardswish,
            )
        ]
        layers.extend(MobileInvertedResidual(cnf, norm_layer) for cnf in setting)
        last_in = setting[-1].out_channels
        last_out = 6 * last_in
        layers.append(
            ConvNormActivation(
                last_in,
                last_out,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=nn.Hardswish,
            )
        )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(last_out, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        out: torch.Tensor = self.classifier(x)
        return out


def mobilenet_v3_small(num_classes: int = 10) -> MobileNetV3:
    return MobileNetV3(MOBILENET_V3_SMALL, last_channel=1024, num_classes=num_classes)


# --------------------------------------------------------------------------------------------
# DenseNet-121
# --------------------------------------------------------------------------------------------


class _DenseLayer(nn.Module):
    def __init__(
        self, num_input_features: int, growth_rate: int, bn_size: int, drop_rate: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(
            num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False
        )
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(
            bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False
        )
        self.drop_rate = float(drop_rate)

    def bn_function(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        concated_features = torch.cat(inputs, 1)
        out: torch.Tensor = self.conv1(self.relu1(self.norm1(concated_features)))
        return out

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        prev_features = [x] if isinstance(x, torch.Tensor) else x
        bottleneck_output = self.bn_function(prev_features)
        new_features: torch.Tensor = self.conv2(self.relu2(self.norm2(bottleneck_output)))
        if self.drop_rate > 0:
            new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
        return new_features


class _DenseBlock(nn.ModuleDict):
    def __init__(
        self,
        num_layers: int,
        num_input_features: int,
        bn_size: int,
        growth_rate: int,
        drop_rate: float,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = _DenseLayer(
                num_input_features + i * growth_rate,
                growth_rate=growth_rate,
                bn_size=bn_size,
                drop_rate=drop_rate,
            )
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, init_features: torch.Tensor) -> torch.Tensor:
        features = [init_features]
        for _name, layer in self.items():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(
            num_input_features, num_output_features, kernel_size=1, stride=1, bias=False
        )
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    def __init__(
        self,
        growth_rate: int = 32,
        block_config: tuple[int, int, int, int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv0", nn.Conv2d(3, num_init_features, 7, stride=2, padding=3, bias=False)),
                    ("norm0", nn.BatchNorm2d(num_init_features)),
                    ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
                ]
            )
        )
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = _DenseBlock(num_layers, num_features, bn_size, growth_rate, drop_rate)
            self.features.add_module(f"denseblock{i + 1}", block)
            num_features = num_features + num_layers * growth_rate
            if i != len(block_config) - 1:
                trans = _Transition(num_features, num_features // 2)
                self.features.add_module(f"transition{i + 1}", trans)
                num_features = num_features // 2
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        out = F.relu(features, inplace=True)  # clobbers norm5's output outside any module
        out = F.adaptive_avg_pool2d(out, (1, 1))
        out = torch.flatten(out, 1)
        result: torch.Tensor = self.classifier(out)
        return result


def densenet(num_classes: int = 10) -> DenseNet:
    """DenseNet-121."""
    return DenseNet(32, (6, 12, 24, 16), 64, bn_size=4, num_classes=num_classes)


# --------------------------------------------------------------------------------------------
# GoogLeNet
# --------------------------------------------------------------------------------------------


class GoogLeNetOutputs(NamedTuple):
    logits: torch.Tensor
    aux_logits2: torch.Tensor | None
    aux_logits1: torch.Tensor | None


class BasicConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.bn(x)
        return F.relu(x, inplace=True)  # functional: overwrites bn's output, no module


class Inception(nn.Module):
    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        # torchvision (like the original release) uses a 3x3 conv in the "5x5" branch.
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(outputs, 1)


class InceptionAux(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(x, (4, 4))
        x = self.conv(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x), inplace=True)
        x = self.dropout(x)
        out: torch.Tensor = self.fc2(x)
        return out


class GoogLeNet(nn.Module):
    def __init__(
        self,
        num_classes: int = 1000,
        aux_logits: bool = True,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
    ) -> None:
        super().__init__()
        self.aux_logits = aux_logits
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        self.aux1: InceptionAux | None = None
        self.aux2: InceptionAux | None = None
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, dropout=dropout_aux)
            self.aux2 = InceptionAux(528, num_classes, dropout=dropout_aux)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> GoogLeNetOutputs | torch.Tensor:
        x = self.conv1(x)
        x = self.maxpool1(x)
        x = self.conv2(x)
        x = self.conv3(x)
        x = self.maxpool2(x)
        x = self.inception3a(x)
        x = self.inception3b(x)
        x = self.maxpool3(x)
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4b(x)
        x = self.inception4c(x)
        x = self.inception4d(x)
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.inception4e(x)
        x = self.maxpool4(x)
        x = self.inception5a(x)
        x = self.inception5b(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.dropout(x)
        x = self.fc(x)
        if self.training and self.aux_logits:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


def googlenet(num_classes: int = 10, aux_logits: bool = True) -> GoogLeNet:
    return GoogLeNet(num_classes=num_classes, aux_logits=aux_logits)


# --------------------------------------------------------------------------------------------
# EfficientNet-B0
# --------------------------------------------------------------------------------------------


def stochastic_depth(x: torch.Tensor, p: float, mode: str, training: bool = True) -> torch.Tensor:
    """torchvision.ops.stochastic_depth."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
    if mode not in ("batch", "row"):
        raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode}")
    if not training or p == 0.0:
        return x
    survival_rate = 1.0 - p
    size = [x.shape[0]] + [1] * (x.ndim - 1) if mode == "row" else [1] * x.ndim
    noise = torch.empty(size, dtype=x.dtype, device=x.device)
    noise = noise.bernoulli_(survival_rate)
    if survival_rate > 0.0:
        noise.div_(survival_rate)
    return x * noise


class StochasticDepth(nn.Module):
    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stochastic_depth(x, self.p, self.mode, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class MBConvConfig(NamedTuple):
    expand_ratio: float
    kernel: int
    stride: int
    input_channels: int
    out_channels: int
    num_layers: int


class MBConv(nn.Module):
    def __init__(self, cnf: MBConvConfig, stochastic_depth_prob: float, norm_layer: NormLayer):
        super().__init__()
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        layers: list[nn.Module] = []
        expanded = _make_divisible(cnf.input_channels * cnf.expand_ratio, 8)
        if expanded != cnf.input_channels:
            layers.append(
                ConvNormActivation(
                    cnf.input_channels,
                    expanded,
                    kernel_size=1,
                    norm_layer=norm_layer,
                    activation_layer=nn.SiLU,
                )
            )
        layers.append(
            ConvNormActivation(
                expanded,
                expanded,
                kernel_size=cnf.kernel,
                stride=cnf.stride,
                groups=expanded,
                norm_layer=norm_layer,
                activation_layer=nn.SiLU,
            )
        )
        squeeze = max(1, cnf.input_channels // 4)
        layers.append(
            SqueezeExcitation(expanded, squeeze, activation=partial(nn.SiLU, inplace=True))
        )
        layers.append(
            ConvNormActivation(
                expanded,
                cnf.out_channels,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=None,
            )
        )
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = cnf.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.block(x)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result += x
        return result


EFFICIENTNET_B0: tuple[MBConvConfig, ...] = (
    MBConvConfig(1, 3, 1, 32, 16, 1),
    MBConvConfig(6, 3, 2, 16, 24, 2),
    MBConvConfig(6, 5, 2, 24, 40, 2),
    MBConvConfig(6, 3, 2, 40, 80, 3),
    MBConvConfig(6, 5, 1, 80, 112, 3),
    MBConvConfig(6, 5, 2, 112, 192, 4),
    MBConvConfig(6, 3, 1, 192, 320, 1),
)


class EfficientNet(nn.Module):
    def __init__(
        self,
        setting: Sequence[MBConvConfig],
        dropout: float,
        stochastic_depth_prob: float = 0.2,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        norm_layer: NormLayer = nn.BatchNorm2d
        layers: list[nn.Module] = [
            ConvNormActivation(
                3,
                setting[0].input_channels,
                kernel_size=3,
                stride=2,
                norm_layer=norm_layer,
                activation_layer=nn.SiLU,
            )
        ]
        total_stage_blocks = sum(cnf.num_layers for cnf in setting)
        stage_block_id = 0
        for cnf in setting:
            stage: list[nn.Module] = []
            for _ in range(cnf.num_layers):
                block_cnf = cnf
                if stage:
                    block_cnf = cnf._replace(input_channels=cnf.out_channels, stride=1)
                sd_prob = stochastic_depth_prob * float(stage_block_id) / total_stage_blocks
                stage.append(MBConv(block_cnf, sd_prob, norm_layer))
                stage_block_id += 1
            layers.append(nn.Sequential(*stage))
        last_in = setting[-1].out_channels
        last_out = 4 * last_in
        layers.append(
            ConvNormActivation(
                last_in, last_out, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.SiLU
            )
        )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout, inplace=True),  # in place on a view of avgpool's output
            nn.Linear(last_out, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                init_range = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -init_range, init_range)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        out: torch.Tensor = self.classifier(x)
        return out


def efficientnet_b0(num_classes: int = 10) -> EfficientNet:
    return EfficientNet(EFFICIENTNET_B0, dropout=0.2, num_classes=num_classes)


# --------------------------------------------------------------------------------------------
# Vision Transformer
# --------------------------------------------------------------------------------------------


class MLPBlock(nn.Sequential):
    """torchvision's ViT MLP: Linear, GELU, Dropout, Linear, Dropout (children named 0..4)."""

    def __init__(self, in_dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(in_dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, in_dim),
            nn.Dropout(dropout),
        )
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)


class EncoderBlock(nn.Module):
    def __init__(
        self,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float,
        attention_dropout: float,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln_1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(
            hidden_dim, num_heads, dropout=attention_dropout, batch_first=True
        )
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(inp)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x)
        x = x + inp
        y = self.ln_2(x)
        y = self.mlp(y)
        out: torch.Tensor = x + y
        return out


class Encoder(nn.Module):
    def __init__(
        self,
        seq_length: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float,
        attention_dropout: float,
    ) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, hidden_dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i in range(num_layers):
            layers[f"encoder_layer_{i}"] = EncoderBlock(
                num_heads, hidden_dim, mlp_dim, dropout, attention_dropout
            )
        self.layers = nn.Sequential(layers)
        self.ln = nn.LayerNorm(hidden_dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embedding
        out: torch.Tensor = self.ln(self.layers(self.dropout(x)))
        return out


class VisionTransformer(nn.Module):
    def __init__(
        self,
        image_size: int,
        patch_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        if image_size % patch_size != 0:
            raise ValueError("image_size must be divisible by patch_size")
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.conv_proj = nn.Conv2d(3, hidden_dim, kernel_size=patch_size, stride=patch_size)
        seq_length = (image_size // patch_size) ** 2 + 1
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.encoder = Encoder(
            seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout, attention_dropout
        )
        self.seq_length = seq_length
        head = nn.Linear(hidden_dim, num_classes)
        self.heads = nn.Sequential(OrderedDict([("head", head)]))
        fan_in = self.conv_proj.in_channels * patch_size * patch_size
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        assert self.conv_proj.bias is not None
        nn.init.zeros_(self.conv_proj.bias)
        # torchvision zero-initialises the head, which makes every gradient below it exactly
        # zero on the first step; a small random head keeps the backward pass informative.
        nn.init.trunc_normal_(head.weight, std=0.02)
        nn.init.zeros_(head.bias)

    def _process_input(self, x: torch.Tensor) -> torch.Tensor:
        n, _c, h, w = x.shape
        p = self.patch_size
        n_h, n_w = h // p, w // p
        x = self.conv_proj(x)
        x = x.reshape(n, self.hidden_dim, n_h * n_w)
        return x.permute(0, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._process_input(x)
        n = x.shape[0]
        batch_class_token = self.class_token.expand(n, -1, -1)
        x = torch.cat([batch_class_token, x], dim=1)
        x = self.encoder(x)
        x = x[:, 0]
        out: torch.Tensor = self.heads(x)
        return out


def vit_tiny(image_size: int = 32, patch_size: int = 4, num_classes: int = 10) -> VisionTransformer:
    return VisionTransformer(
        image_size=image_size,
        patch_size=patch_size,
        num_layers=4,
        num_heads=3,
        hidden_dim=192,
        mlp_dim=4 * 192,
        dropout=0.1,
        num_classes=num_classes,
    )


# --------------------------------------------------------------------------------------------
# Hugging Face models (transformers imported lazily)
# --------------------------------------------------------------------------------------------

HF_VOCAB = 1000


def _bert(layers: int, hidden: int, heads: int) -> nn.Module:
    """``BertForSequenceClassification`` (2 labels, intermediate 4x hidden)."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=HF_VOCAB,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
    )
    config.num_labels = 2
    return BertForSequenceClassification(config)


def bert_tiny() -> nn.Module:
    """``BertForSequenceClassification``: 2 layers, hidden 128, 2 heads, 2 labels."""
    return _bert(2, 128, 2)


def bert_mini() -> nn.Module:
    """``BertForSequenceClassification``: 4 layers, hidden 256, 4 heads, 2 labels."""
    return _bert(4, 256, 4)


def gpt2_tiny() -> nn.Module:
    """``GPT2LMHeadModel``: 2 layers, n_embd 128, 2 heads, 128 positions, cache on."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=HF_VOCAB,
        n_positions=128,
        n_embd=128,
        n_layer=2,
        n_head=2,
        bos_token_id=HF_VOCAB - 1,
        eos_token_id=HF_VOCAB - 1,
    )
    return GPT2LMHeadModel(config)


def t5_tiny() -> nn.Module:
    """``T5ForConditionalGeneration``: d_model 128, d_ff 256, d_kv 32, 2+2 layers, 2 heads."""
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=HF_VOCAB,
        d_model=128,
        d_kv=32,
        d_ff=256,
        num_layers=2,
        num_heads=2,
        pad_token_id=0,
        eos_token_id=1,
    )
    config.decoder_start_token_id = 0  # T5 starts decoding from the pad token
    return T5ForConditionalGeneration(config)


HF_NAMES: tuple[str, ...] = ("bert_tiny", "bert_mini", "gpt2_tiny", "t5_tiny")


def hf_batch(name: str, batch: int = 2, seq: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    """A deterministic batch for the HF model ``name`` such that ``model(**batch).loss`` works.

    Rows after the first are right-padded by a quarter of ``seq`` (attention_mask 0, label
    -100 for token-level labels) so masking is exercised.
    """
    if name not in HF_NAMES:
        raise KeyError(f"not a Hugging Face zoo model: {name!r}")
    g = torch.Generator().manual_seed(seed)
    n_pad = seq // 4
    input_ids = torch.randint(2, HF_VOCAB, (batch, seq), generator=g)
    attention_mask = torch.ones(batch, seq, dtype=torch.long)
    if n_pad:
        attention_mask[1:, seq - n_pad :] = 0
    if name.startswith("bert"):
        input_ids = input_ids.masked_fill(attention_mask == 0, 0)  # [PAD] is 0
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": torch.zeros_like(input_ids),
            "labels": torch.randint(0, 2, (batch,), generator=g),
        }
    if name == "gpt2_tiny":
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": input_ids.masked_fill(attention_mask == 0, -100),
        }
    # t5_tiny: encoder inputs plus shorter decoder labels (shifted right internally).
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    tgt = max(2, seq // 2)
    labels = torch.randint(2, HF_VOCAB, (batch, tgt), generator=g)
    labels[:, -1] = 1  # </s>
    if tgt > 2:
        labels[1:, -(tgt // 4 or 1) :] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

LossFn = Callable[[Any], torch.Tensor]


class Inputs(NamedTuple):
    """What ``make(seed)`` returns: call ``loss_of(model(*args, **kwargs))``."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    loss_of: LossFn


MakeInputs = Callable[[int], Inputs]
Factory = Callable[..., tuple[nn.Module, MakeInputs]]

NUM_CLASSES = 10
BATCH = 2
IMAGE_SIZES: dict[str, int] = {
    "resnet18": 32,
    "mobilenet_v3_small": 32,
    "densenet": 32,
    "googlenet": 64,  # 64 px: 4x4 maps at the aux heads, as at 224 px after pooling
    "efficientnet_b0": 32,
    "vit_tiny": 32,
}
IMAGE_NAMES: tuple[str, ...] = tuple(IMAGE_SIZES)


def image_size(name: str) -> int:
    return IMAGE_SIZES[name]


def _image_loss(labels: torch.Tensor) -> LossFn:
    def loss_of(out: Any) -> torch.Tensor:
        if isinstance(out, torch.Tensor):
            return F.cross_entropy(out, labels)
        # GoogLeNetOutputs in train mode: sum of the heads that are present.
        heads = [h for h in out if h is not None]
        return torch.stack([F.cross_entropy(h, labels) for h in heads]).sum()

    return loss_of


def _image_inputs(size: int) -> MakeInputs:
    def make(seed: int) -> Inputs:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(BATCH, 3, size, size, generator=g)
        labels = torch.randint(0, NUM_CLASSES, (BATCH,), generator=g)
        torch.manual_seed(seed)  # dropout / stochastic depth in the next forward
        return Inputs((x,), {}, _image_loss(labels))

    return make


def _hf_loss(out: Any) -> torch.Tensor:
    loss: torch.Tensor = out.loss
    return loss


def _hf_inputs(name: str) -> MakeInputs:
    def make(seed: int) -> Inputs:
        batch = hf_batch(name, seed=seed)
        torch.manual_seed(seed)  # dropout in the next forward
        return Inputs((), dict(batch), _hf_loss)

    return make


def _factory(name: str, build: Callable[[], nn.Module], make: MakeInputs) -> Factory:
    def factory(seed: int = 0) -> tuple[nn.Module, MakeInputs]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build()
        model.train()
        return model, make

    factory.__name__ = name
    factory.__qualname__ = name
    return factory


_BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "resnet18": lambda: resnet18(NUM_CLASSES),
    "mobilenet_v3_small": lambda: mobilenet_v3_small(NUM_CLASSES),
    "densenet": lambda: densenet(NUM_CLASSES),
    "googlenet": lambda: googlenet(NUM_CLASSES, aux_logits=True),
    "efficientnet_b0": lambda: efficientnet_b0(NUM_CLASSES),
    "vit_tiny": lambda: vit_tiny(32, 4, NUM_CLASSES),
    "bert_tiny": bert_tiny,
    "bert_mini": bert_mini,
    "gpt2_tiny": gpt2_tiny,
    "t5_tiny": t5_tiny,
}

ZOO: dict[str, Factory] = {
    name: _factory(
        name,
        build,
        _image_inputs(IMAGE_SIZES[name]) if name in IMAGE_SIZES else _hf_inputs(name),
    )
    for name, build in _BUILDERS.items()
}
"""``model, make = ZOO[name](seed=0)``: a freshly built model in train mode (construction is
seeded without touching the global RNG) and ``make(seed) -> Inputs(args, kwargs, loss_of)``.
``make`` also calls ``torch.manual_seed(seed)`` so dropout and stochastic depth in the forward
that follows are reproducible."""

_DEEP_LEAVES: dict[str, str] = {
    # bn2's output is then overwritten by ``out += identity`` and ReLU(inplace=True).
    "resnet18": "layer3.1.bn2",
    # depthwise BN of a residual block; the next module is Hardswish(inplace=True).
    "mobilenet_v3_small": "features.10.block.1.1",
    # BN followed by ReLU(inplace=True) deep inside the largest dense block.
    "densenet": "features.denseblock3.denselayer5.norm2",
    # BasicConv2d's BN, clobbered by the functional F.relu(inplace=True).
    "googlenet": "inception4d.branch2.1.bn",
    # depthwise BN followed by SiLU(inplace=True) in a block with stochastic depth.
    "efficientnet_b0": "features.5.1.block.1.1",
    "vit_tiny": "encoder.layers.encoder_layer_2.mlp.0",
    "bert_tiny": "bert.encoder.layer.1.intermediate.dense",
    "bert_mini": "bert.encoder.layer.2.intermediate.dense",
    "gpt2_tiny": "transformer.h.1.mlp.c_fc",
    "t5_tiny": "encoder.block.1.layer.1.DenseReluDense.wi",
}


def deep_leaf(name: str) -> str:
    """Qualified name (for ``model.get_submodule``) of a deep leaf good for NaN injection."""
    return _DEEP_LEAVES[name]
