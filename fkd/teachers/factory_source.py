"""``<module>:<callable>``: any importable factory, e.g. ``mypkg.models:make_teacher``.

Contract: the factory is called with no arguments, or with ``weights=<Path>`` when a
weights file is given and the factory has a ``weights`` parameter (when it has none, fkd
loads the file into the returned module as a state dict). It returns an ``nn.Module``
mapping normalised ``(B, 3, S, S)`` images to ``(B, C)`` logits, or a pair
``(module, info)`` where ``info`` is a dict with any of ``input_size`` (int S), ``mean``,
``std`` (3 floats each), ``interpolation`` (``"bilinear"`` or ``"bicubic"``) and
``class_names`` (C strings). Missing entries default to 224 px and the ImageNet
mean/std, bilinear.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from fkd.exceptions import short_reason
from fkd.teachers.errors import TeacherError
from fkd.teachers.fitting import load_exact
from fkd.teachers.source import KNOWN_SPEC_FORMS, Resolved, info_from
from fkd.teachers.weights import load_state_dict_file, sha_if_file

__all__ = ["FACTORY_INFO_KEYS", "resolve_callable"]

FACTORY_INFO_KEYS = frozenset({"input_size", "mean", "std", "interpolation", "class_names"})


def _import_factory(spec: str) -> Callable[..., Any]:
    """The callable named by ``module.path:attr.path``."""
    module_name, _, attr_path = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise TeacherError(
            f"cannot import module {module_name!r} of teacher spec {spec!r} ({short_reason(exc)});"
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
    unknown = sorted(set(extra) - FACTORY_INFO_KEYS)
    if unknown:
        raise TeacherError(
            f"teacher factory {spec!r} returned unknown info keys {unknown}; "
            f"known keys are {sorted(FACTORY_INFO_KEYS)}"
        )
    return module, extra


def resolve_callable(_name: str, spec: str, weights: Path | None) -> Resolved:
    """``<module>:<callable>``: a user factory (see the module docstring for the contract)."""
    factory = _import_factory(spec)
    passes_weights = weights is not None and _takes_weights(factory)
    try:
        result = factory(weights=weights) if passes_weights else factory()
    except Exception as exc:
        call = "weights=FILE" if passes_weights else "no arguments"
        raise TeacherError(
            f"teacher factory {spec!r} failed when called with {call} ({short_reason(exc)}); "
            "a factory returns an nn.Module or (nn.Module, info dict) (fkd --debug shows the "
            "traceback)"
        ) from exc
    model, extra = _split_factory_result(result, spec)
    if weights is not None and not passes_weights:
        load_exact(model, load_state_dict_file(weights), weights, spec)
    return Resolved(model, info_from(spec, extra, sha_if_file(weights)))
