"""Teacher loading: every spec form with real modules and real weights files, no mocks."""

from __future__ import annotations

import hashlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torchvision import models

import fkd.models
from fkd.models import efficientnet_lite0_weights_path, imagenet_class_names
from fkd.teachers import (
    LoadedTeacher,
    TeacherError,
    load_ensemble,
    load_teacher,
    load_teachers,
    preprocess_constants,
    sha256_file,
)

TINY_TEACHER = textwrap.dedent(
    '''
    """A tiny teacher module for tests: conv -> pool -> linear."""
    import torch
    from torch import nn


    def _net(seed, classes=5):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes)
        )


    INFO = {
        "input_size": 32,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.25, 0.25, 0.25),
        "interpolation": "bicubic",
        "class_names": ["a", "b", "c", "d", "e"],
    }


    def make():
        return _net(0), dict(INFO)


    def make_b():
        return _net(1), dict(INFO)


    def make_wide():
        return _net(2), {**INFO, "input_size": 48}


    def make_seven():
        return _net(3, classes=7), {"input_size": 32, "mean": INFO["mean"], "std": INFO["std"],
                                    "interpolation": "bicubic"}


    def make_plain():
        return _net(4)


    SEEN = []


    def make_loading(weights=None):
        SEEN.append(weights)
        model = _net(5)
        if weights is not None:
            model.load_state_dict(torch.load(weights, weights_only=True))
        return model, {"input_size": 32}


    def make_bad():
        return "not a module"


    def make_unknown_key():
        return _net(0), {"size": 32}


    def make_wrong_names():
        return _net(0), {**INFO, "class_names": ["only", "two"]}
    '''
)


class Canary:
    """Pickles to a call of ``open(path, "w")``: unpickling it would create ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def _assert_one_line(exc_info: pytest.ExceptionInfo[TeacherError]) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and message
    return message


def _resnet18(seed: int, num_classes: int = 1000) -> nn.Module:
    torch.manual_seed(seed)
    return models.resnet18(weights=None, num_classes=num_classes).eval()


def _logits(teacher: LoadedTeacher, x: torch.Tensor) -> torch.Tensor:
    (member,) = teacher.module.members
    with torch.inference_mode():
        out: torch.Tensor = member(x)
    return out


@pytest.fixture(scope="module")
def lite() -> LoadedTeacher:
    return load_teacher("efficientnet_lite0")


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    return _resnet18(seed=0)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def resnet_logits(resnet: nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        out: torch.Tensor = resnet(image)
    return out


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``tinyteacher`` importable from a fresh folder on sys.path."""
    folder = tmp_path / "pkgs"
    folder.mkdir()
    (folder / "tinyteacher.py").write_text(TINY_TEACHER)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("tinyteacher", None)
    yield folder
    sys.modules.pop("tinyteacher", None)


# --------------------------------------------------------------------------- built-in


def test_efficientnet_lite0_info(lite: LoadedTeacher) -> None:
    info = lite.info
    assert info.spec == "efficientnet_lite0"
    assert info.mean == (0.5, 0.5, 0.5) and info.std == (0.5, 0.5, 0.5)
    assert info.input_size == 224 and info.interpolation == "bicubic"
    assert info.class_names == imagenet_class_names() and len(info.class_names) == 1000
    packaged = efficientnet_lite0_weights_path().read_bytes()
    assert info.weights_sha256 == hashlib.sha256(packaged).hexdigest()
    assert lite.num_classes == 1000
    assert not lite.module.training
    assert not any(p.requires_grad for p in lite.module.parameters())


def test_probabilities_sum_to_one_and_temperature_flattens(lite: LoadedTeacher) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    sharp = lite.probabilities(x, temperature=1.0)
    flat = lite.probabilities(x, temperature=4.0)
    assert sharp.dtype == torch.float32 and sharp.shape == (2, 1000)
    torch.testing.assert_close(sharp.sum(-1), torch.ones(2))
    torch.testing.assert_close(flat.sum(-1), torch.ones(2))

    def entropy(p: torch.Tensor) -> torch.Tensor:
        return -(p * p.clamp_min(1e-12).log()).sum(-1)

    assert (entropy(flat) > entropy(sharp)).all()
    assert (flat.max(-1).values < sharp.max(-1).values).all()
    # Temperature acts on the logits: the same as softmax(logits / T).
    torch.testing.assert_close(flat, F.softmax(_logits(lite, x) / 4.0, dim=-1))


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_temperature_is_refused(lite: LoadedTeacher, temperature: float) -> None:
    with pytest.raises(TeacherError, match="temperature must be a positive finite number"):
        lite.probabilities(torch.zeros(1, 3, 32, 32), temperature)


def test_preprocess_constants(lite: LoadedTeacher) -> None:
    mean, std = preprocess_constants(lite.info)
    assert mean.shape == std.shape == (1, 3, 1, 1)
    assert mean.flatten().tolist() == [0.5, 0.5, 0.5] and std.dtype == torch.float32


# --------------------------------------------------------------------------- torchvision


def _save_plain(model: nn.Module, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


def _save_safetensors(model: nn.Module, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _save_nested_ddp(model: nn.Module, path: Path) -> Path:
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": state, "arch": "resnet18"}, path)
    return path


@pytest.mark.parametrize(
    ("name", "save"),
    [
        ("plain.pt", _save_plain),
        ("weights.safetensors", _save_safetensors),
        ("ddp.pth.tar", _save_nested_ddp),
    ],
)
def test_torchvision_state_dict_file_gives_the_source_logits(
    resnet: nn.Module,
    image: torch.Tensor,
    resnet_logits: torch.Tensor,
    tmp_path: Path,
    name: str,
    save: object,
) -> None:
    path = save(resnet, tmp_path / name)  # type: ignore[operator]
    teacher = load_teacher("torchvision:resnet18", weights=path)
    torch.testing.assert_close(_logits(teacher, image), resnet_logits, rtol=0, atol=0)
    info = teacher.info
    assert info.spec == "torchvision:resnet18" and teacher.num_classes == 1000
    assert (info.input_size, info.interpolation) == (224, "bilinear")
    assert info.mean == pytest.approx((0.485, 0.456, 0.406))
    assert info.std == pytest.approx((0.229, 0.224, 0.225))
    assert info.class_names is not None and info.class_names[0] == "tench"
    assert info.weights_sha256 == sha256_file(path)
    assert info.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_torchvision_preprocessing_comes_from_the_weights_enum(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = models.efficientnet_b0(weights=None, num_classes=10).eval()
    path = _save_plain(source, tmp_path / "b0.pt")
    teacher = load_teacher("torchvision:efficientnet_b0", weights=path)
    expected = models.EfficientNet_B0_Weights.DEFAULT.transforms()
    assert teacher.info.input_size == expected.crop_size[0] == 224
    assert teacher.info.interpolation == "bicubic"
    # The file's classifier has 10 classes: the model is rebuilt with 10, names dropped.
    assert teacher.num_classes == 10 and teacher.info.class_names is None
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(_logits(teacher, x), source(x))


def test_architecture_that_cannot_be_built_on_meta_still_loads(tmp_path: Path) -> None:
    # regnet's constructor computes with tensors, so the meta-device build falls back.
    torch.manual_seed(0)
    source = models.regnet_x_400mf(weights=None).eval()
    path = _save_plain(source, tmp_path / "regnet.pt")
    teacher = load_teacher("torchvision:regnet_x_400mf", weights=path)
    assert not any(t.is_meta for t in teacher.module.state_dict().values())
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(_logits(teacher, x), source(x))


def test_state_dict_of_another_architecture_is_refused(tmp_path: Path) -> None:
    path = _save_plain(models.mobilenet_v3_small(weights=None), tmp_path / "mobilenet.pt")
    with pytest.raises(TeacherError, match="does not fit teacher 'torchvision:resnet18'") as exc:
        load_teacher("torchvision:resnet18", weights=path)
    assert "missing keys" in _assert_one_line(exc)


def test_pickle_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(1)}, "hook": Canary(canary)}, path)
    for spec in ("torchvision:resnet18", "efficientnet_lite0", "fkd:resnet18"):
        with pytest.raises(TeacherError, match="refusing to load weights file") as exc:
            load_teacher(spec, weights=path)
        assert "re-save it with torch.save(model.state_dict()" in _assert_one_line(exc)
    assert not canary.exists()


def test_unknown_torchvision_arch_suggests_close_names() -> None:
    with pytest.raises(TeacherError, match="unknown torchvision architecture") as exc:
        load_teacher("torchvision:resnet181")
    assert "resnet18" in _assert_one_line(exc)


def test_torchvision_non_classifier_is_refused() -> None:
    with pytest.raises(TeacherError, match="not an image classifier"):
        load_teacher("torchvision:fasterrcnn_resnet50_fpn")


def test_failed_pretrained_fetch_suggests_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A broken file in torch hub's cache: torchvision reads it instead of downloading.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = models.ResNet18_Weights.DEFAULT.url
    cached = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a checkpoint")
    with pytest.raises(TeacherError, match="could not fetch torchvision's pretrained") as exc:
        load_teacher("torchvision:resnet18")
    assert "--weights FILE" in _assert_one_line(exc)


def test_missing_weights_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TeacherError, match="does not exist") as exc:
        load_teacher("torchvision:resnet18", weights=tmp_path / "nope.pt")
    assert "nope.pt" in _assert_one_line(exc)


def test_corrupt_safetensors_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(TeacherError, match="not a valid .safetensors file"):
        load_teacher("torchvision:resnet18", weights=path)


# --------------------------------------------------------------------------- spec dispatch


@pytest.mark.parametrize("spec", ["resnet50", "efficientnet_lite", "hub:foo/bar", "a b:c"])
def test_unknown_spec_lists_known_forms(spec: str) -> None:
    with pytest.raises(TeacherError, match="unknown teacher spec") as exc:
        load_teacher(spec)
    message = _assert_one_line(exc)
    assert "torchvision:<arch>" in message and "<module>:<callable>" in message


def test_unknown_spec_suggests_the_builtin() -> None:
    with pytest.raises(TeacherError, match="did you mean efficientnet_lite0"):
        load_teacher("efficientnet_lite")


@pytest.mark.parametrize("spec", ["torchvision:", "timm:", "fkd:"])
def test_scheme_without_a_name_is_refused(spec: str) -> None:
    with pytest.raises(TeacherError, match="names no model"):
        load_teacher(spec)


def test_unknown_device_is_refused() -> None:
    with pytest.raises(TeacherError, match="unknown device 'gpu0'"):
        load_teacher("efficientnet_lite0", device="gpu0")


# --------------------------------------------------------------------------- timm


def test_timm_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # as if the package were not installed
    with pytest.raises(TeacherError) as exc:
        load_teacher("timm:resnet50")
    assert _assert_one_line(exc) == ("timm teachers need the timm package: pip install 'fkd[timm]'")


def test_timm_weights_file_gives_the_source_logits(tmp_path: Path) -> None:
    import timm  # in the test extra
    torch.manual_seed(0)
    source = timm.create_model("resnet18", pretrained=False).eval()
    path = _save_safetensors(source, tmp_path / "timm_resnet18.safetensors")
    teacher = load_teacher("timm:resnet18", weights=path)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(_logits(teacher, x), source(x))
    assert teacher.info.interpolation == source.pretrained_cfg["interpolation"]
    assert teacher.info.input_size == source.pretrained_cfg["input_size"][-1]
    assert teacher.info.weights_sha256 == sha256_file(path)
    with pytest.raises(TeacherError, match="did you mean resnet18"):
        load_teacher("timm:resnet18x", weights=path)


# --------------------------------------------------------------------------- module:callable


def test_module_callable_with_info(tiny: Path) -> None:
    teacher = load_teacher("tinyteacher:make")
    info = teacher.info
    assert info.spec == "tinyteacher:make" and info.input_size == 32
    assert info.mean == (0.5, 0.5, 0.5) and info.std == (0.25, 0.25, 0.25)
    assert info.interpolation == "bicubic" and info.class_names == ("a", "b", "c", "d", "e")
    assert info.weights_sha256 is None and teacher.num_classes == 5
    probs = teacher.probabilities(torch.randn(3, 3, 32, 32))
    assert probs.shape == (3, 5)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))


def test_module_callable_plain_module_gets_defaults(tiny: Path) -> None:
    teacher = load_teacher("tinyteacher:make_plain")
    assert (teacher.info.input_size, teacher.info.interpolation) == (224, "bilinear")
    assert teacher.info.mean == pytest.approx((0.485, 0.456, 0.406))
    assert teacher.info.class_names is None and teacher.num_classes == 5


def test_module_callable_receives_weights(tiny: Path, tmp_path: Path) -> None:
    import tinyteacher  # type: ignore[import-not-found]

    source, _ = tinyteacher.make()
    path = _save_plain(source, tmp_path / "tiny.pt")
    teacher = load_teacher("tinyteacher:make_loading", weights=path)
    assert [path] == tinyteacher.SEEN
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(_logits(teacher, x), source(x))
    assert teacher.info.weights_sha256 == sha256_file(path)


def test_module_callable_without_weights_parameter_gets_the_file_loaded(
    tiny: Path, tmp_path: Path
) -> None:
    import tinyteacher

    source, _ = tinyteacher.make_b()
    path = _save_safetensors(source, tmp_path / "tiny.safetensors")
    teacher = load_teacher("tinyteacher:make_plain", weights=path)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(_logits(teacher, x), source(x))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tinyteacher:make_bad", "must return an nn.Module or"),
        ("tinyteacher:make_unknown_key", "unknown info keys \\['size'\\]"),
        ("tinyteacher:make_wrong_names", "gives 2 class names but has 5 outputs"),
        ("tinyteacher:missing", "has no attribute 'missing'"),
        ("tinyteacher:SEEN", "is not callable"),
        ("no_such_module_xyz:make", "cannot import module 'no_such_module_xyz'"),
    ],
)
def test_module_callable_errors(tiny: Path, spec: str, message: str) -> None:
    with pytest.raises(TeacherError, match=message) as exc:
        load_teacher(spec)
    _assert_one_line(exc)


# --------------------------------------------------------------------------- fkd checkpoints


def _fkd_arch_model(arch: str, num_classes: int) -> nn.Module:
    """The model ``fkd:<arch>`` builds: fkd.models.build_model when present, else torchvision."""
    torch.manual_seed(0)
    build = getattr(fkd.models, "build_model", None)
    if build is not None:
        return build(arch, num_classes).eval()  # type: ignore[no-any-return]
    return models.get_model(arch, weights=None, num_classes=num_classes).eval()


def test_fkd_checkpoint(tmp_path: Path) -> None:
    source = _fkd_arch_model("resnet18", 3)
    path = tmp_path / "student.pt"
    torch.save(
        {
            "model": {f"module.{k}": v for k, v in source.state_dict().items()},
            "arch": "resnet18",
            "num_classes": 3,
            "input_size": 64,
            "mean": [0.4, 0.4, 0.4],
            "std": [0.2, 0.2, 0.2],
            "interpolation": "bicubic",
            "class_names": ["x", "y", "z"],
            "epoch": 7,
        },
        path,
    )
    teacher = load_teacher("fkd:resnet18", weights=path)
    info = teacher.info
    assert (info.input_size, info.interpolation, info.class_names) == (
        64,
        "bicubic",
        ("x", "y", "z"),
    )
    assert info.mean == (0.4, 0.4, 0.4) and info.weights_sha256 == sha256_file(path)
    assert teacher.num_classes == 3
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(_logits(teacher, x), source(x))
    with pytest.raises(TeacherError, match="holds arch 'resnet18', not 'resnet34'"):
        load_teacher("fkd:resnet34", weights=path)


def test_fkd_checkpoint_needs_weights_and_its_keys(tmp_path: Path) -> None:
    with pytest.raises(TeacherError, match="needs --weights CKPT"):
        load_teacher("fkd:resnet18")
    path = tmp_path / "bare.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "num_classes": 3}, path)
    with pytest.raises(TeacherError, match="'arch' must be a str"):
        load_teacher("fkd:resnet18", weights=path)


# --------------------------------------------------------------------------- ensembles


def test_ensemble_averages_member_probabilities(tiny: Path) -> None:
    import tinyteacher

    ensemble = load_ensemble(["tinyteacher:make", "tinyteacher:make_b"])
    assert ensemble.info.spec == "tinyteacher:make+tinyteacher:make_b"
    assert ensemble.num_classes == 5 and len(ensemble.module.members) == 2
    assert ensemble.info.input_size == 32 and ensemble.info.weights_sha256 is None
    x = torch.randn(4, 3, 32, 32)
    a, _ = tinyteacher.make()
    b, _ = tinyteacher.make_b()
    with torch.inference_mode():
        manual = (F.softmax(a(x) / 2.0, dim=-1) + F.softmax(b(x) / 2.0, dim=-1)) / 2
    torch.testing.assert_close(ensemble.probabilities(x, temperature=2.0), manual)
    assert not torch.allclose(manual, F.softmax(a(x) / 2.0, dim=-1))


def test_ensemble_weights_digests_are_comma_joined(tiny: Path, tmp_path: Path) -> None:
    import tinyteacher

    path = _save_plain(tinyteacher.make_b()[0], tmp_path / "b.pt")
    ensemble = load_teachers(["tinyteacher:make_plain", "tinyteacher:make_plain"], [path, None])
    assert ensemble.info.weights_sha256 == f"{sha256_file(path)},none"
    single = load_teachers(["tinyteacher:make"])
    assert single.info.spec == "tinyteacher:make" and len(single.module.members) == 1


@pytest.mark.parametrize(
    ("other", "field"),
    [("tinyteacher:make_wide", "input_size"), ("tinyteacher:make_seven", "num_classes")],
)
def test_ensemble_with_mismatched_members_is_refused(tiny: Path, other: str, field: str) -> None:
    with pytest.raises(TeacherError, match=f"ensemble member 2 '{other}' has {field}=") as exc:
        load_ensemble(["tinyteacher:make", other])
    assert f"must share {field}" in _assert_one_line(exc)


def test_ensemble_needs_one_weights_entry_per_spec(tiny: Path) -> None:
    with pytest.raises(TeacherError, match="2 teacher specs but 1 weights entries"):
        load_ensemble(["tinyteacher:make", "tinyteacher:make_b"], [None])
    with pytest.raises(TeacherError, match="at least one teacher spec"):
        load_ensemble([])
