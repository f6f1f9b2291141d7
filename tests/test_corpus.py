"""The corpus of malicious and broken inputs (``tests/corpus/make_corpus.py``) is refused.

Every store case is opened and read in a subprocess limited to a 2 GiB address space
(``RLIMIT_AS``; the torch-free reader and the ``fkd inspect``/``fkd verify`` commands
never import torch), through ``LabelStore.open``, the reads, ``verify_store`` and the
two CLI commands.  Each refusal is one line naming the store and the fault; no pickle
payload runs (its canary file never appears); nothing under the corpus folder is
written or changed.  Torch paths (pickled teacher weights, pickled legacy FKD files)
run under a 6 GiB bound: importing torch alone maps about 3.5 GiB of virtual memory.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from fault_tools.fashion_mnist import fashion_mnist_folder

sys.path.insert(0, str(Path(__file__).parent / "corpus"))

from make_corpus import CASES, Canary, make_corpus

from fkd.cli.main import cli
from fkd.data import CropLabelDataset
from fkd.storage_formats import StoreFormatError

GIB = 2**30
STORE_READER_BOUND = 2 * GIB
TORCH_BOUND = 6 * GIB

READ_EVERYTHING = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from click.testing import CliRunner
    from fkd.cli.main import cli
    from fkd.storage_formats import LabelStore, StoreError
    from fkd.storage_formats.verify import verify_store

    results = {}
    for name, case in json.load(open(sys.argv[1])).items():
        store, stage, message = case["store"], "open", ""
        try:
            handle = LabelStore.open(store)
            stage = "read"
            handle.manifest
            handle.read_images(np.arange(handle.spec.num_images))
            for name_ in handle.layout:
                handle.array(name_)[...]
            stage = "none"
        except StoreError as exc:
            message = str(exc)
        problems = [p.line() for p in verify_store(store)]
        cli_results = {}
        for command in ("inspect", "verify"):
            run = CliRunner().invoke(cli, [command, store])
            cli_results[command] = [run.exit_code, run.output, repr(run.exception)]
        results[name] = {"stage": stage, "message": message, "problems": problems, **cli_results}
    results["torch imported"] = "torch" in sys.modules
    print(json.dumps(results))
    """
)


def address_space(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` (links not followed) with its size and mtime."""
    found = {}
    for path in root.rglob("*"):
        info = path.lstat()
        found[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root)
    return root


def test_every_store_case_is_refused_in_2_gib_without_running_or_writing_anything(
    corpus: Path,
) -> None:
    before = tree(corpus)
    run = subprocess.run(
        [sys.executable, "-c", READ_EVERYTHING, str(corpus / "cases.json")],
        capture_output=True, text=True, check=False, cwd=corpus,
        preexec_fn=address_space(STORE_READER_BOUND),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout)
    assert results.pop("torch imported") is False
    assert set(results) == set(CASES)
    for name, result in results.items():
        _, stage, fragment = CASES[name]
        store = str(corpus / f"{name}.zarr")
        where = f"{name}: {result}"
        # The library refuses it at the stage the case names, in one line naming it.
        assert result["stage"] == stage, where
        assert fragment in result["message"] and store in result["message"], where
        assert "\n" not in result["message"], where
        # verify flags it, and its CLI exits 1 with one line per problem, no traceback.
        assert any(fragment in line for line in result["problems"]), where
        code, output, _ = result["verify"]
        assert code == 1 and "Traceback" not in output, where
        assert output.splitlines()[-1].startswith(f"Error: {store}: "), where
        assert any(fragment in line for line in output.splitlines()), where
        # inspect refuses with one line, except a bad manifest path: inspect never reads
        # the manifest (the loader, verify and verify --data do).
        code, output, _ = result["inspect"]
        if "manifest" in name:
            assert code == 0, where
        else:
            assert code == 1 and len(output.splitlines()) == 1, where
            assert output.startswith("Error: ") and fragment in output, where
    assert not (corpus / "canary").exists()
    assert tree(corpus) == before  # nothing written, created or touched


def test_manifest_paths_leaving_the_data_root_are_refused_by_the_loader_and_verify_data(
    corpus: Path, tmp_path: Path
) -> None:
    data = fashion_mnist_folder(tmp_path / "data", 4)
    for name in ("dotdot_manifest", "absolute_manifest"):
        store = corpus / f"{name}.zarr"
        with pytest.raises(StoreFormatError, match="invalid manifest") as refused:
            CropLabelDataset(data, store)
        assert str(store) in str(refused.value) and "\n" not in str(refused.value)
        result = CliRunner().invoke(cli, ["verify", str(store), "--data", str(data)])
        assert result.exit_code == 1 and "Traceback" not in result.output
        lines = result.output.splitlines()
        assert any(line.startswith("manifest: ") and "invalid manifest" in line for line in lines)


def test_pickled_teacher_weights_and_legacy_files_never_run(tmp_path: Path) -> None:
    """Both refused with one line, in a fresh process under a 6 GiB address space; the
    canary never appears and the output store is never created."""
    canary = tmp_path / "canary"
    weights = tmp_path / "evil.pt"
    torch.save({"conv1.weight": Canary(canary)}, weights)
    legacy = tmp_path / "legacy" / "cat"  # not "fkd": the cwd would shadow the package
    legacy.mkdir(parents=True)
    torch.save([torch.zeros(2, 4), torch.zeros(2, dtype=torch.bool), Canary(canary)],
               legacy / "evil.tar")  # fmt: skip
    data = fashion_mnist_folder(tmp_path / "data", 2)
    out = tmp_path / "out.zarr"
    commands = [
        ["generate", str(data), "--out", str(out), "--teacher", "torchvision:resnet18",
         "--weights", str(weights), "--device", "cpu", "-q"],
        ["convert", "--from", "fkd-legacy", str(tmp_path / "legacy"), "--out", str(out)],
    ]  # fmt: skip
    driver = (
        "import json, sys\nfrom click.testing import CliRunner\nfrom fkd.cli.main import cli\n"
        "runs = [CliRunner().invoke(cli, c) for c in json.loads(sys.argv[1])]\n"
        "print(json.dumps([[r.exit_code, r.output] for r in runs]))\n"
    )
    before = tree(tmp_path)
    run = subprocess.run(
        [sys.executable, "-c", driver, json.dumps(commands)],
        capture_output=True, text=True, check=False, cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=address_space(TORCH_BOUND),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    (code_weights, said_weights), (code_legacy, said_legacy) = json.loads(run.stdout)
    assert code_weights == 1 and said_weights.startswith("Error: "), said_weights
    assert len(said_weights.splitlines()) == 1 and "evil.pt" in said_weights
    assert code_legacy == 1 and "evil.tar: not a safe FKD label file" in said_legacy
    assert len(said_legacy.splitlines()) == 1
    assert not canary.exists() and not out.exists()
    assert tree(tmp_path) == before
