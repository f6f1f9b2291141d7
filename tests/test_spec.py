"""The store spec dataclasses: validation at construction and plain-JSON round trips."""

from __future__ import annotations

import dataclasses
import json

import pytest
from store_factory import make_spec

from fkd.storage_formats import CodecSpec, CropSpec, StoreSpec, TeacherInfo
from fkd.storage_formats.spec import diff_generation, index_dtype_for


def test_store_spec_round_trips_through_json() -> None:
    spec = dataclasses.replace(
        make_spec(),
        teacher=TeacherInfo(
            "efficientnet_lite0",
            224,
            (0.5,) * 3,
            (0.5,) * 3,
            "bicubic",
            "ab" * 32,
            tuple(f"class {i}" for i in range(50)),
        ),
        software={"fkd": "0.1.0"},
        created="2026-11-23T00:00:00Z",
    )
    again = StoreSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.teacher.class_names[:2] == ("class 0", "class 1")


def test_specs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_spec().block_size = 3  # type: ignore[misc]


def test_unknown_keys_are_refused_with_the_known_ones() -> None:
    data = make_spec().to_dict()
    data["crops"]["sead"] = 1
    with pytest.raises(ValueError, match=r"unknown keys \['sead'\].*'seed'"):
        StoreSpec.from_dict(data)


def test_diff_names_the_differing_generation_parameters() -> None:
    old = make_spec()
    new = dataclasses.replace(
        old,
        crops=dataclasses.replace(old.crops, seed=8),
        codec=CodecSpec("marginal_smoothing", 50, k=10),
        created="later",
    )
    assert diff_generation(old, new) == ["codec.k", "codec.value_dtype", "crops.seed"]


def test_blocks_cover_the_images_exactly() -> None:
    spec = make_spec(num_images=10, block_size=4)
    assert spec.num_blocks == 3
    assert [spec.block_range(b) for b in range(3)] == [(0, 4), (4, 8), (8, 10)]
    with pytest.raises(IndexError, match="block 3"):
        spec.block_range(3)


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(num_images=0), "num_images"),
        (dict(block_size=0), "block_size"),
        (dict(images_per_chunk=3), "images_per_chunk"),
        (dict(format_version=4), "format_version 4"),
        (dict(path_data_bytes=1), "path_data_bytes"),
    ],
)
def test_store_spec_validates_at_construction(change, message) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(make_spec(), **change)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(name="marginal_smoothing", num_classes=10, k=5, temperature=0.0), "temperature"),
        (
            dict(name="marginal_smoothing", num_classes=10, k=5, value_dtype="float64"),
            "value_dtype",
        ),
        (dict(name="hard", num_classes=2**24 + 1), "num_classes"),
    ],
)
def test_codec_spec_validates_at_construction(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        CodecSpec(**kwargs)


def test_teacher_info_validates_at_construction() -> None:
    with pytest.raises(ValueError, match="interpolation"):
        TeacherInfo("t", 224, interpolation="lanczos")
    with pytest.raises(ValueError, match="std"):
        TeacherInfo("t", 224, std=(0.5, 0.0, 0.5))


def test_crop_spec_pairs_are_normalised_to_float_tuples() -> None:
    spec = CropSpec(scale=[0.25, 1], ratio=[0.5, 2])  # type: ignore[arg-type]
    assert spec.scale == (0.25, 1.0) and spec.ratio == (0.5, 2.0)
    assert CropSpec.from_dict(spec.to_dict()) == spec


def test_index_dtype() -> None:
    assert [index_dtype_for(c).name for c in (2, 256, 257, 65536, 65537)] == [
        "uint8",
        "uint8",
        "uint16",
        "uint16",
        "uint32",
    ]


def test_the_storage_core_never_imports_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, fkd.storage_formats as s\n"
        "s.LabelStore, s.get_codec, s.sample_boxes\n"
        "banned = [m for m in ('torch', 'torchvision') if m in sys.modules]\n"
        "assert not banned, banned\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
