"""Models: the registry of architectures for students and teachers, and the built-ins.

``registry``: model names (registered, ``torchvision:``, ``timm:``) to models and their
preprocessing; ``preprocessing``: the ImageNet constants and ``ModelDefaults``;
``small``: CNNs for 28-32 px; ``efficientnet_lite``: EfficientNet-Lite0 with its weights.
"""

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
from fkd.models.errors import ModelError
from fkd.models.imagenet_classes import (
    NUM_IMAGENET_CLASSES,
    imagenet_class_names,
    imagenet_wnids_for,
)
from fkd.models.preprocessing import (
    DEFAULT_INPUT_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelDefaults,
)
from fkd.models.registry import (
    ModelName,
    build_model,
    describe_models,
    model_defaults,
    model_names,
    register_model,
    resolve_model_name,
)

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INPUT_SIZE",
    "INTERPOLATION",
    "MEAN",
    "NUM_IMAGENET_CLASSES",
    "STD",
    "EfficientNetLite0",
    "ModelDefaults",
    "ModelError",
    "ModelName",
    "build_model",
    "describe_models",
    "efficientnet_lite0",
    "efficientnet_lite0_weights_path",
    "imagenet_class_names",
    "imagenet_wnids_for",
    "load_efficientnet_lite0_state_dict",
    "model_defaults",
    "model_names",
    "register_model",
    "resolve_model_name",
]
