"""What every teacher source gives: the bare model, its TeacherInfo and maybe its class count.

A source is a resolver ``resolver(name, spec, weights)`` for one form of teacher spec
(``name`` is the spec without its scheme); :mod:`fkd.teachers.spec` picks it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

from fkd.models.preprocessing import ModelDefaults
from fkd.storage_formats.spec import TeacherInfo
from fkd.teachers.errors import TeacherError

__all__ = ["KNOWN_SPEC_FORMS", "Resolved", "Resolver", "info_from", "make_info", "require_name"]

KNOWN_SPEC_FORMS: tuple[str, ...] = (
    "efficientnet_lite0",
    "torchvision:<arch>",
    "timm:<name>",
    "fkd:<arch> (with --weights CKPT)",
    "<module>:<callable>",
)


@dataclass(frozen=True)
class Resolved:
    """What a resolver produces: the bare logits model, its info and, when the resolver
    built the classifier itself, its class count (else it is measured with one image)."""

    model: nn.Module
    info: TeacherInfo
    num_classes: int | None = None


Resolver = Callable[[str, str, Path | None], Resolved]
"""``resolver(name, spec, weights)``: ``name`` is the spec without its scheme."""


def require_name(name: str, spec: str, example: str) -> None:
    """Refuse a scheme with nothing after the colon."""
    if not name:
        raise TeacherError(f"teacher spec {spec!r} names no model; write e.g. {example}")


def make_info(spec: str, **fields: Any) -> TeacherInfo:
    """``TeacherInfo(spec, **fields)``, turning a bad field into a TeacherError."""
    try:
        return TeacherInfo(spec=spec, **fields)
    except (TypeError, ValueError) as exc:
        raise TeacherError(f"teacher {spec!r}: {exc}") from exc


def info_from(spec: str, given: Mapping[str, Any], weights_sha256: str | None) -> TeacherInfo:
    """The info from ``given``'s preprocessing and class names; missing preprocessing
    entries default to :class:`ModelDefaults` (224 px, ImageNet mean/std, bilinear)."""
    preprocessing = {key: given.get(key, value) for key, value in asdict(ModelDefaults()).items()}
    return make_info(
        spec,
        **preprocessing,
        weights_sha256=weights_sha256,
        class_names=given.get("class_names"),
    )
