"""The model registry: built-ins build and run, names are checked, duplicates refused."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from fkd.models import IMAGENET_MEAN, IMAGENET_STD, ModelDefaults, registry
from fkd.models.registry import (
    ModelError,
    build_model,
    model_defaults,
    model_names,
    register_model,
    resolve_model_name,
)
from fkd.teachers import TeacherError, load_teacher

SMALL = ("cnn_4_8_16", "cnn_8_16_32", "cnn_teacher")


def test_builtins_are_registered() -> None:
    assert set(model_names()) >= {*SMALL, "efficientnet_lite0"}


@pytest.mark.parametrize("arch", SMALL)
@pytest.mark.parametrize("size", [28, 32])
def test_small_cnns_build_and_give_logits(arch: str, size: int) -> None:
    torch.manual_seed(0)
    model = build_model(arch, 10).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, size, size))
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()
    defaults = model_defaults(arch)
    assert defaults.input_size == 28
    assert defaults.mean == defaults.std == (0.5, 0.5, 0.5)


def test_small_cnn_widths_and_channels() -> None:
    model = build_model("cnn_4_8_16", 7, in_channels=1)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 8, 16]
    assert convs[0].in_channels == 1
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)
    sizes = {arch: sum(p.numel() for p in build_model(arch, 10).parameters()) for arch in SMALL}
    assert sizes["cnn_4_8_16"] < sizes["cnn_8_16_32"] < sizes["cnn_teacher"]


def test_efficientnet_lite0_builds_untrained() -> None:
    model = build_model("efficientnet_lite0", 5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    assert model_defaults("efficientnet_lite0").input_size == 224
    with pytest.raises(ModelError, match="3 input channels"):
        build_model("efficientnet_lite0", 5, in_channels=1)


@pytest.mark.parametrize("arch", ["resnet18", "torchvision:resnet18"])
def test_torchvision_models_by_name(arch: str) -> None:
    model = build_model(arch, 4).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 4)
    assert model_defaults(arch).input_size == 224


def test_unknown_model_lists_builtins_and_suggests() -> None:
    with pytest.raises(ModelError) as info:
        build_model("cnn_8_16_23", 10)
    message = str(info.value)
    assert "\n" not in message
    assert "did you mean cnn_8_16_32" in message
    for name in SMALL:
        assert name in message
    with pytest.raises(ModelError, match="did you mean resnet18"):
        model_defaults("resnet19")


def test_timm_models_build() -> None:
    model = build_model("timm:resnet18", 10).eval()  # timm is in the test extra
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_timm_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # as if the package were not installed
    with pytest.raises(ModelError, match="pip install timm"):
        build_model("timm:resnet18", 10)


def test_register_refuses_duplicates_and_bad_names() -> None:
    name = "test_only_linear"

    @register_model(name, input_size=8)
    def linear(num_classes: int, in_channels: int = 3) -> nn.Module:
        """A test model."""
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    try:
        assert name in model_names()
        assert model_defaults(name).input_size == 8
        assert build_model(name, 3)(torch.randn(2, 3, 8, 8)).shape == (2, 3)
        with pytest.raises(ModelError, match="already registered"):
            register_model(name)(linear)
        with pytest.raises(ModelError, match="already registered"):
            register_model("cnn_4_8_16")(linear)
        with pytest.raises(ModelError, match="no ':'"):
            register_model("timm:mine")
    finally:
        registry._REGISTRY.pop(name, None)


def test_bad_class_count() -> None:
    with pytest.raises(ModelError, match="num_classes"):
        build_model("cnn_4_8_16", 0)


def test_builds_on_the_meta_device() -> None:
    """fkd:<arch> teachers build their skeleton on the meta device first."""
    with torch.device("meta"):
        model = build_model("cnn_teacher", 10)
    assert all(p.is_meta for p in model.parameters())


def test_fkd_models_exports_build_model() -> None:
    """``fkd:<arch>`` teacher specs find the registry through ``fkd.models.build_model``."""
    import fkd.models

    assert fkd.models.build_model is build_model


# --------------------------------------------------------------------------- one resolver


def _teacher_preprocessing(name: str, tmp_path: Path) -> ModelDefaults:
    """What ``load_teacher(name)`` preprocesses with (a weights file, so no download)."""
    torch.manual_seed(0)
    path = tmp_path / "weights.pt"
    torch.save(build_model(name, 1000).state_dict(), path)
    info = load_teacher(name, weights=path).info
    return ModelDefaults(info.input_size, info.mean, info.std, info.interpolation)


@pytest.mark.parametrize(
    "name",
    [
        "torchvision:resnet18",
        "torchvision:efficientnet_b0",
        "timm:resnet18",
        "timm:vit_tiny_patch16_224",
    ],
)
def test_a_student_and_a_teacher_of_one_name_preprocess_the_same(name: str, tmp_path: Path) -> None:
    assert _teacher_preprocessing(name, tmp_path) == model_defaults(name)


def test_torchvision_names_resolve_with_or_without_the_scheme() -> None:
    bare, prefixed = resolve_model_name("resnet18"), resolve_model_name("torchvision:resnet18")
    assert bare == prefixed == resolve_model_name(" ResNet18 ")
    assert prefixed.spec == "torchvision:resnet18"
    # The preprocessing of a torchvision architecture is its DEFAULT weights' transforms.
    assert model_defaults("efficientnet_b0") == model_defaults("torchvision:efficientnet_b0")
    assert model_defaults("efficientnet_b0").interpolation == "bicubic"
    assert resolve_model_name("cnn_teacher").spec == "cnn_teacher"


def test_timm_interpolation_defaults_to_bicubic_for_students_and_teachers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import timm

    # A timm model whose pretrained config says nothing: timm's own default, bicubic.
    monkeypatch.setattr(timm, "get_pretrained_cfg", lambda *args, **kwargs: None)
    expected = ModelDefaults(224, IMAGENET_MEAN, IMAGENET_STD, "bicubic")
    assert model_defaults("timm:resnet18") == expected
    assert _teacher_preprocessing("timm:resnet18", tmp_path) == expected


@pytest.mark.parametrize(
    ("spec", "meant"),
    [("resnet50", "torchvision:resnet50"), ("cnn_teacher", "fkd:cnn_teacher with --weights CKPT")],
)
def test_a_bare_model_name_as_teacher_names_the_spec_meant(spec: str, meant: str) -> None:
    message = f"unknown teacher spec '{spec}'; did you mean {meant}?"
    with pytest.raises(TeacherError, match=re.escape(message)):
        load_teacher(spec)


def test_unknown_timm_and_torchvision_names_suggest_close_ones() -> None:
    with pytest.raises(ModelError, match="unknown timm model 'resnet18x'; did you mean resnet18"):
        model_defaults("timm:resnet18x")
    with pytest.raises(ModelError, match="unknown torchvision architecture 'resnet19'"):
        build_model("torchvision:resnet19", 10)
    with pytest.raises(ModelError, match="not an image classifier"):
        model_defaults("torchvision:fasterrcnn_resnet50_fpn")
