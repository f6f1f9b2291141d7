"""Built-in teacher models."""

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
from fkd.models.imagenet_classes import NUM_IMAGENET_CLASSES, imagenet_class_names

__all__ = [
    "INPUT_SIZE",
    "INTERPOLATION",
    "MEAN",
    "NUM_IMAGENET_CLASSES",
    "STD",
    "EfficientNetLite0",
    "efficientnet_lite0",
    "efficientnet_lite0_weights_path",
    "imagenet_class_names",
    "load_efficientnet_lite0_state_dict",
]
