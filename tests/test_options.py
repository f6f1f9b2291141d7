"""Options defined once: config fields declare their flags; the library checks them itself."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import click
import pytest

from fkd.cli.main import cli
from fkd.exceptions import OptionError
from fkd.generate.config import GenerateConfig, GenerateRun, parse_blocks, parse_shard
from fkd.options import OPTION_KEY, option_fields, parse_pair


def config(**options: object) -> GenerateConfig:
    return GenerateConfig(data=Path("images"), out="labels.zarr", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "flag", "fragment"),
    [
        ({"crops_per_image": 0}, "--crops-per-image", "0 is not in the range 1<=x<=65536"),
        ({"flip_prob": 1.5}, "--flip-prob", "1.5 is not in the range 0<=x<=1"),
        ({"label_type": "nonsense"}, "--label-type", "'nonsense' is not one of 'full', 'hard'"),
        ({"value_dtype": "int8"}, "--value-dtype", "'int8' is not one of"),
        ({"label_type": "full"}, "--value-dtype", "codec 'full' is a reference"),
        ({"scale": (0.5, 0.1)}, "--scale", "scale must satisfy low <= high"),
        ({"temperature": float("inf")}, "--temperature", "temperature must be a positive"),
        ({"input_size": 9000}, "--input-size", "teacher input_size must be an integer"),
        ({"weights": ("a.pt", "b.pt")}, "--weights", "2 --weights for 1 --teacher"),
        ({"shard": (2, 2)}, "--shard", "expected 0 <= i < n, got '2/2'"),
        ({"redo_blocks": (1,), "overwrite": True}, "--redo-blocks", "give one of them"),
    ],
)
def test_a_config_refuses_a_bad_value_naming_its_flag(
    options: dict[str, object], flag: str, fragment: str
) -> None:
    with pytest.raises(OptionError) as refused:
        config(**options)
    assert refused.value.option == flag and fragment in str(refused.value)
    assert isinstance(refused.value, ValueError)  # library callers catching ValueError


def test_good_values_pass_and_replace_checks_again() -> None:
    good = config(label_type="full", value_dtype="float16", topk=10, shard=(1, 2))
    with pytest.raises(OptionError, match="not in the range"):
        dataclasses.replace(good, block_size=0)
    with pytest.raises(OptionError, match="only applies with --plan"):
        GenerateRun(plan_crops_per_s=10.0)


def test_text_values_parse_into_the_fields_types() -> None:
    assert parse_pair("0.08,1.0") == (0.08, 1.0)
    assert parse_shard("1/4") == (1, 4)
    assert parse_blocks("7-9,3,5,3") == (3, 5, 7, 8, 9)
    for parse, text in [(parse_pair, "1"), (parse_shard, "a/b"), (parse_blocks, "3,a")]:
        with pytest.raises(ValueError, match="expected"):
            parse(text)


def test_the_click_options_are_the_declared_fields() -> None:
    """Every declared field is one click parameter of the command, with its flag and help;
    the command's own defaults are the fields' defaults."""
    command = cli.commands["generate"]
    params = {param.name: param for param in command.params}
    declared = [*option_fields(GenerateConfig), *option_fields(GenerateRun)]
    assert [item.name for item in declared] == [param.name for param in command.params]
    for item in declared:
        param = params[item.name]
        if isinstance(param, click.Option):
            assert param.opts[0] == item.spec.flag and param.help == item.spec.help
    assert params["crops_per_image"].default == 200 and params["scale"].default == "0.08,1.0"
    assert "max_pixels" not in params  # a field without an option stays off the command line
    field = {f.name: f for f in dataclasses.fields(GenerateConfig)}["topk"]
    assert field.default == 5 and field.metadata[OPTION_KEY].flag == "--topk"


def test_declaring_the_options_imports_neither_torch_nor_the_store_code() -> None:
    probe = (
        "import sys, fkd.cli.main, fkd.generate.config;"
        "print(sorted(m for m in ('torch', 'zarr', 'fkd.storage_formats') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_train_declares_its_options_once_and_its_choices_match_the_registries() -> None:
    from fkd import devices, losses
    from fkd.train.config import AMP_MODES, LOSS_NAMES, TrainConfig, TrainError, TrainRun

    command = cli.commands["train"]
    declared = [*option_fields(TrainConfig), *option_fields(TrainRun)]
    assert [item.name for item in declared] == [param.name for param in command.params]
    assert "flip_prob" not in {param.name for param in command.params}
    assert set(LOSS_NAMES) == set(losses.loss_names()) and AMP_MODES == devices.AMP_MODES
    with pytest.raises(OptionError) as refused:
        TrainConfig(data="d", model="m", resume="")
    assert refused.value.option == "--resume" and isinstance(refused.value, TrainError)
    assert TrainConfig(data="d", model="m", out="run", resume="").resume == "run"
    with pytest.raises(TrainError, match="loss: 'nope' is not one of 'soft_ce'"):
        TrainConfig(data="d", model="m", loss="nope")


def test_importing_the_train_config_loads_no_torch() -> None:
    probe = "import sys, fkd.train.config; print('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"
