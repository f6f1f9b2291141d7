"""Which source a teacher spec string names: the built-in, a scheme, or a factory.

A bare model name is not a teacher spec (whose weights would it be?); the error then
names the spec that is meant, e.g. ``torchvision:resnet50`` for ``resnet50``.
"""

from __future__ import annotations

from fkd.models.errors import ModelError
from fkd.models.registry import resolve_model_name
from fkd.teachers.builtin_source import resolve_efficientnet_lite0
from fkd.teachers.checkpoint_source import resolve_fkd_checkpoint
from fkd.teachers.errors import TeacherError, close_matches
from fkd.teachers.factory_source import resolve_callable
from fkd.teachers.source import KNOWN_SPEC_FORMS, Resolver
from fkd.teachers.timm_source import resolve_timm
from fkd.teachers.torchvision_source import resolve_torchvision

__all__ = ["find_resolver"]

_BUILTINS: dict[str, Resolver] = {"efficientnet_lite0": resolve_efficientnet_lite0}
_SCHEMES: dict[str, Resolver] = {
    "torchvision": resolve_torchvision,
    "timm": resolve_timm,
    "fkd": resolve_fkd_checkpoint,
}


def _is_dotted_identifier(text: str) -> bool:
    """``a.b_c.d``: a module or attribute path."""
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _model_name_hint(spec: str) -> str:
    """``"; did you mean torchvision:<arch>?"`` when ``spec`` is a bare model name, else ``""``."""
    try:
        model = resolve_model_name(spec)
    except ModelError:
        return ""
    if model.source == "registered":
        return f"; did you mean fkd:{model.name} with --weights CKPT?"
    return f"; did you mean {model.spec}?"


def find_resolver(spec: str) -> tuple[Resolver, str]:
    """The resolver for ``spec`` and the name it is given."""
    if spec in _BUILTINS:
        return _BUILTINS[spec], spec
    scheme, colon, name = spec.partition(":")
    if colon and scheme in _SCHEMES:
        return _SCHEMES[scheme], name
    if colon and _is_dotted_identifier(scheme) and _is_dotted_identifier(name):
        return resolve_callable, spec
    hint = close_matches(spec, [*_BUILTINS, *(f"{s}:{name}" for s in _SCHEMES)])
    if not hint and not colon:
        hint = _model_name_hint(spec)
    raise TeacherError(
        f"unknown teacher spec {spec!r}{hint}; known forms: {', '.join(KNOWN_SPEC_FORMS)}"
    )
