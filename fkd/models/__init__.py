"""Models: the built-in ImageNet teacher (EfficientNet-Lite0) and a registry of architectures."""

from fkd.models.efficientnet_lite import (
    INPUT_SIZE,
    INTERPOLATION,
    MEAN,
    STD,
    EfficientNetLite0,
    efficientnet_lite0,
    efficientnet_lite0_weights_path,
    load_efficientnet_lite0_state_dict,
)
from fkd.models.imagenet_classes import (
    NUM_IMAGENET_CLASSES,
    imagenet_class_names,
    imagenet_wnids_for,
)
from fkd.models.registry import (
    ModelDefaults,
    ModelError,
    build_model,
    model_defaults,
    model_names,
    register_model,
)

__all__ = [
    "INPUT_SIZE",
    "INTERPOLATION",
    "MEAN",
    "NUM_IMAGENET_CLASSES",
    "STD",
    "EfficientNetLite0",
    "ModelDefaults",
    "ModelError",
    "build_model",
    "efficientnet_lite0",
    "efficientnet_lite0_weights_path",
    "imagenet_class_names",
    "imagenet_wnids_for",
    "load_efficientnet_lite0_state_dict",
    "model_defaults",
    "model_names",
    "register_model",
]
