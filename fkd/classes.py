"""Which of a model's classes each class folder is: matched by name or ImageNet wnid.

A folder of images (``DATA/<class>/...``) numbers its classes in sorted folder order;
a teacher (or a student trained from its labels) numbers them its own way. Scoring
folder index ``i`` against model output ``i`` is right only when the two lists agree,
and silently gives 0 % when they do not (a 7-class folder against an ImageNet teacher).
So when the model names its classes, each folder is looked up among those names,
else among its ImageNet wnids (``n01440764``); a folder found nowhere is refused.
Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from fkd.exceptions import UserInputError

SHOWN = 4  # names quoted in a message


class ClassMismatchError(UserInputError):
    """A folder's classes cannot be matched to a model's classes; the message names them."""


def _key(name: str) -> str:
    """A name as folders spell it loosely: case, ``_`` and ``-`` ignored."""
    return " ".join(name.replace("_", " ").replace("-", " ").lower().split())


def _quoted(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:SHOWN])
    return shown + (f", ... ({len(names)} in all)" if len(names) > SHOWN else "")


def match_classes(
    folder: Sequence[str],
    model: Sequence[str],
    wnids: Sequence[str] | None = None,
    *,
    folder_what: str = "the class folders",
    model_what: str = "the model",
) -> NDArray[np.int64]:
    """The model's class index of each folder class, in folder order.

    A folder class matches a model class of the same name (exactly, else ignoring case,
    ``_`` and ``-``), or the model class with that wnid when ``wnids`` (one per model
    class, e.g. ImageNet's) is given. Refuses (``ClassMismatchError``) when no folder
    class matches, or some do not, or one matches several model classes.
    """
    exact = {name: i for i, name in reversed(list(enumerate(model)))}
    loose: dict[str, list[int]] = {}
    for i, name in enumerate(model):
        loose.setdefault(_key(name), []).append(i)
    by_wnid = {w: i for i, w in enumerate(wnids)} if wnids is not None else {}
    found: list[int] = []
    unmatched: list[str] = []
    for name in folder:
        if name in exact:
            found.append(exact[name])
        elif name in by_wnid:
            found.append(by_wnid[name])
        elif len(loose.get(_key(name), [])) == 1:
            found.append(loose[_key(name)][0])
        elif _key(name) in loose:
            raise ClassMismatchError(
                f"{folder_what}: {name!r} names {len(loose[_key(name)])} classes of "
                f"{model_what}; name the folder exactly as one of them"
                + (" or by its wnid" if wnids is not None else "")
            )
        else:
            unmatched.append(name)
    if unmatched:
        how = "names" + (" or ImageNet wnids (n01440764)" if wnids is not None else "")
        if len(unmatched) == len(folder):
            raise ClassMismatchError(
                f"{folder_what} ({_quoted(list(folder))}) name none of the {len(model)} classes "
                f"of {model_what} ({_quoted(list(model))}): scoring folder indices against "
                f"its classes would give 0 %; use images of its classes, in folders named "
                f"by its class {how}, or a model of these classes"
            )
        raise ClassMismatchError(
            f"{folder_what}: {_quoted(unmatched)} name(s) none of the {len(model)} classes of "
            f"{model_what} ({_quoted(list(model))}); rename them to its class {how}, or "
            "remove them"
        )
    return np.asarray(found, dtype=np.int64)


def remap_targets(targets: NDArray[np.integer], mapping: NDArray[np.int64]) -> NDArray[np.int64]:
    """Folder class indices to model class indices (``-1``, no class, stays ``-1``)."""
    targets = np.asarray(targets, dtype=np.int64)
    out = np.full_like(targets, -1)
    labelled = targets >= 0
    out[labelled] = mapping[targets[labelled]]
    return out


def is_positional(folder: Sequence[str], model: Sequence[str]) -> bool:
    """Whether folder class ``i`` is model class ``i`` by name, for every folder class."""
    return len(folder) <= len(model) and tuple(folder) == tuple(model[: len(folder)])


__all__ = ["ClassMismatchError", "is_positional", "match_classes", "remap_targets"]
