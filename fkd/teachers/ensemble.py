"""Ensembles: several teachers whose softmax probabilities are averaged.

All members must share input size, mean, std, interpolation and class count (and class
names where given).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from fkd.teachers.errors import TeacherError
from fkd.teachers.load import load_teacher
from fkd.teachers.module import LoadedTeacher, TeacherModule
from fkd.teachers.source import make_info

__all__ = ["load_ensemble", "load_teachers"]


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
    info = make_info(
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
