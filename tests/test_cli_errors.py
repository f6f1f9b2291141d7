"""How the command line answers errors: one line for what the user can fix, tracebacks for bugs.

Real commands on real stores and real photo patches, in this process (click's runner)
or as subprocesses where the test is about the process itself (a traceback printed,
torch never imported, a read-only file system, the time a refusal takes).
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from generate_helpers import (
    assert_same_store,
    fkd,
    one_line_error,
    photo_patches,
    save_patches,
    succeeded,
)
from store_factory import write_store

TEACHER_MODULE = "errors_tiny_teacher"
TEACHER_SOURCE = textwrap.dedent(
    '''
    """Tiny seeded teachers (10 classes, 32 px) for the error tests."""
    import torch
    from torch import nn

    NAMES = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead",
             "electric ray", "stingray", "cock", "hen", "ostrich"]
    INFO = {"input_size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


    def _net():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(8, 10),
        )


    class Buggy(nn.Module):
        """Fine on the one-image probe, a ValueError on real batches: a bug, not a user error."""

        def __init__(self):
            super().__init__()
            self.inner = _net()

        def forward(self, x):
            if len(x) > 1:
                raise ValueError("shapes do not line up (a bug in this teacher)")
            return self.inner(x)


    def make():
        return _net(), dict(INFO)


    def make_named():
        return _net(), dict(INFO, class_names=NAMES)


    def make_buggy():
        return Buggy(), dict(INFO)
    '''
)
TINY = ("-m", "4", "--block-size", "2", "--device", "cpu", "-q", "--workers", "0")
STUDENT = ("--model", "cnn_4_8_16", "--epochs", "1", "-b", "8", "-q", "--workers", "0")
REPO = Path(__file__).resolve().parents[1]


def usage_error(result: Result, *fragments: str) -> str:
    """Exit status 2 from a click usage error: one ``Error:`` line (after the usage lines)."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), f"crashed: {result.exc_info}"
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def run_fkd(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 120):
    """``python -m fkd ARGS`` in a fresh process (the teacher module on its path)."""
    return subprocess.run(
        [sys.executable, "-m", "fkd", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("teachers")
    (folder / f"{TEACHER_MODULE}.py").write_text(TEACHER_SOURCE)
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop(TEACHER_MODULE, None)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 real-photo patches in class folders a/ and b/."""
    return save_patches(tmp_path_factory.mktemp("images"), photo_patches(8))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, teacher_path: Path, images: Path) -> Path:
    """The tiny teacher's labels of ``images``: 4 blocks of 2 images, 4 crops each."""
    out = tmp_path_factory.mktemp("store") / "labels.zarr"
    succeeded(fkd("generate", images, "--out", out, "--teacher", f"{TEACHER_MODULE}:make", *TINY))
    return out


def subprocess_env(teacher_path: Path) -> dict[str, str]:
    path = os.pathsep.join([str(REPO), str(teacher_path), os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


# --------------------------------------------------------------------------- the error model


def test_user_errors_share_one_base_and_library_callers_still_catch_value_error() -> None:
    from fkd.checkpoints import CheckpointError
    from fkd.classes import ClassMismatchError
    from fkd.cli.error_messages import user_message
    from fkd.data import StoreMismatchError
    from fkd.evaluation import EvaluationError
    from fkd.exceptions import FkdError, OptionError, UserInputError
    from fkd.fashion_mnist import DatasetError
    from fkd.generate import GenerateError
    from fkd.images import ImageSourceError
    from fkd.models import ModelError
    from fkd.storage_formats import StoreError
    from fkd.storage_formats.legacy_fkd import LegacyFormatError
    from fkd.teachers import TeacherError
    from fkd.train import TrainError

    value_errors = [ImageSourceError, TeacherError, LegacyFormatError, TrainError,
                    StoreMismatchError, CheckpointError, ModelError, EvaluationError,
                    DatasetError, ClassMismatchError, OptionError]  # fmt: skip
    for kind in [StoreError, GenerateError, *value_errors]:
        assert issubclass(kind, FkdError), kind
    for kind in value_errors:
        assert issubclass(kind, ValueError), kind  # library callers catching ValueError
    assert user_message(UserInputError("a  fix\n here")) == "a fix here"
    assert user_message(ValueError("a bug")) is None  # no longer one line: keeps its traceback
    assert user_message(TypeError("a bug")) is None
    assert user_message(FileNotFoundError(errno.ENOENT, "gone", "x")) is None


def test_a_bug_keeps_its_traceback_and_debug_shows_user_errors_in_full(
    teacher_path: Path, images: Path, tmp_path: Path
) -> None:
    buggy = run_fkd("generate", images, "--out", tmp_path / "x.zarr",
                    "--teacher", f"{TEACHER_MODULE}:make_buggy", *TINY,
                    env=subprocess_env(teacher_path))  # fmt: skip
    assert buggy.returncode == 1
    assert "Traceback (most recent call last)" in buggy.stderr
    assert buggy.stderr.rstrip().splitlines()[-1] == (
        "ValueError: shapes do not line up (a bug in this teacher)"
    )
    spec = "no_such_module_xyz:make"
    plain = fkd("generate", images, "--out", tmp_path / "y.zarr", "--teacher", spec, *TINY)
    one_line_error(plain, "cannot import module 'no_such_module_xyz'")
    debug = fkd("--debug", "generate", images, "--out", tmp_path / "y.zarr", "--teacher", spec)
    assert debug.exit_code == 1 and type(debug.exception).__name__ == "TeacherError"


# --------------------------------------------------------------------------- tracebacks before


def test_inspect_reads_a_published_zip_and_counts_its_bytes(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "published"
    succeeded(fkd("publish", store, "--out", out, "--zip"))
    archive = out.with_name("published.zip")
    text = succeeded(fkd("inspect", archive))
    assert f"size {archive.stat().st_size} bytes on disk" in text
    summary = json.loads(succeeded(fkd("inspect", archive, "--json")))
    assert summary["bytes_on_disk"] == archive.stat().st_size


def test_train_out_that_is_a_regular_file_is_one_line(
    store: Path, images: Path, tmp_path: Path
) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    result = fkd("train", images, "--labels", store, *STUDENT, "--out", a_file)
    one_line_error(result, f"--out {a_file} is a file, not a folder")
    assert a_file.read_text() == "mine\n"


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("os:system", "teacher factory 'os:system' failed when called with no arguments"),
        ("os:getcwd", "must return an nn.Module or (nn.Module, dict), got str"),
    ],
)
def test_a_teacher_spec_naming_no_model_factory_is_one_line(
    images: Path, tmp_path: Path, spec: str, fragment: str
) -> None:
    out = tmp_path / "labels.zarr"
    one_line_error(fkd("generate", images, "--out", out, "--teacher", spec, *TINY), fragment)
    assert not out.exists()


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed")
def test_an_s3_url_without_s3fs_names_the_package() -> None:
    for command in ("inspect", "verify"):
        one_line_error(fkd(command, "s3://bucket/labels.zarr"), "needs s3fs", "pip install s3fs")
    usage_error(fkd("inspect", "nosuch://bucket/x"), "unknown URL protocol 'nosuch'")


# --------------------------------------------------------------------------- messages


def can_mount_read_only(folder: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = f"mount -t tmpfs -o ro tmpfs {folder}"
    return (
        subprocess.run(["unshare", "-rm", "sh", "-c", probe], capture_output=True).returncode == 0
    )


def test_a_read_only_out_is_blamed_on_its_folder_and_only_generate_says_it_resumes(
    teacher_path: Path, images: Path, store: Path, tmp_path: Path
) -> None:
    read_only = tmp_path / "ro"
    read_only.mkdir()
    if not can_mount_read_only(read_only):
        pytest.skip("cannot mount a read-only file system here (unshare -rm)")
    python = f"{sys.executable} -m fkd"
    script = (
        f"mount -t tmpfs -o ro tmpfs {read_only} || exit 9; "
        f"{python} generate {images} --out {read_only}/labels.zarr "
        f"--teacher {TEACHER_MODULE}:make {' '.join(TINY)}; echo rc=$? >&2; "
        f"{python} publish {store} --out {read_only}/published; echo rc=$? >&2"
    )
    env = {**os.environ, **subprocess_env(teacher_path)}
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                          text=True, timeout=300, env=env)  # fmt: skip
    lines = done.stderr.splitlines()
    assert len(lines) == 4 and lines[1] == lines[3] == "rc=1", done.stderr
    generate, publish = lines[0], lines[2]
    assert generate == (
        f"Error: --out {read_only}/labels.zarr: cannot create the label store in {read_only}: "
        f"a read-only file system; make {read_only} writable, or choose another --out"
    )
    assert publish.startswith("Error: ") and "read-only file system" in publish, publish
    assert "fkd generate" not in publish and ".creating" not in generate


def test_the_resume_hint_of_a_refused_write_is_for_generate_only() -> None:
    from fkd.cli.error_messages import user_message

    refused = OSError(errno.ENOSPC, "No space left on device", "out/checkpoint.pt")
    for command in ("train", "publish", "convert", None):
        message = user_message(refused, command)
        assert message is not None and "no space left" in message
        assert "fkd generate" not in message, command
    assert "`fkd generate` resumes" in str(user_message(refused, "generate"))


def test_overwrite_is_suggested_only_where_it_is_accepted(tmp_path: Path) -> None:
    from store_factory import make_spec

    from fkd.storage_formats import CodecSpec

    full = tmp_path / "full.zarr"
    write_store(full, make_spec(codec=CodecSpec("full", 50, k=50, value_dtype="float16")))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine\n")
    args = ("convert", "--to", "store", full, "--out", foreign, "--label-type", "hard")
    first = one_line_error(fkd(*args), "not an fkd label store")
    assert "--overwrite" not in first  # it would be refused: the folder is not a store
    one_line_error(fkd(*args, "--overwrite"), "not an fkd label store")
    assert (foreign / "keep.txt").read_text() == "mine\n"


def test_a_store_with_failed_images_names_the_skip_failed_flag(
    teacher_path: Path, tmp_path: Path
) -> None:
    folder = save_patches(tmp_path / "images", photo_patches(4))
    (folder / "a" / "broken.jpg").write_text("not a picture\n")
    out = tmp_path / "labels.zarr"
    teacher = ("--teacher", f"{TEACHER_MODULE}:make")
    succeeded(fkd("generate", folder, "--out", out, *teacher, *TINY, "--max-failures", "0.5"))
    line = one_line_error(fkd("train", folder, "--labels", out, *STUDENT), "1 image(s) that failed")
    assert "`fkd train --skip-failed`" in line
    succeeded(fkd("train", folder, "--labels", out, *STUDENT, "--skip-failed"))


def corrupt(path: Path) -> None:
    """Flip bytes in the middle of a chunk file (its crc32c no longer matches)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4] = b"\xde\xad\xbe\xef"
    path.write_bytes(bytes(data))


def test_redo_blocks_relabels_damaged_committed_blocks_to_the_same_bytes(
    teacher_path: Path, images: Path, store: Path, tmp_path: Path
) -> None:
    damaged = tmp_path / "labels.zarr"
    shutil.copytree(store, damaged)
    corrupt(damaged / "label_index" / "c" / "1" / "0" / "0")
    (damaged / "label_value" / "c" / "2" / "0" / "0").unlink()
    verify = fkd("verify", damaged)
    assert verify.exit_code == 1
    last = verify.stderr.splitlines()[-1]
    assert last.startswith("Error: ") and last.endswith("plus --redo-blocks 1,2"), last
    command = ("generate", images, "--out", damaged, "--teacher", f"{TEACHER_MODULE}:make", *TINY)
    again = succeeded(fkd(*command))  # re-running skips committed blocks, damaged or not
    assert "blocks written 0, skipped (already committed) 4" in again
    redone = succeeded(fkd(*command, "--redo-blocks", "1,2"))
    assert "crops 16, failures 0, blocks written 2, skipped (already committed) 2" in redone
    assert succeeded(fkd("verify", damaged)).startswith(f"{damaged}: OK")
    assert_same_store(store, damaged)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--redo-blocks", "3,a"), "expected block numbers like 3,5 or 7-9, got '3,a'"),
        (("--redo-blocks", "5-2"), "'5-2': block numbers are >= 0 and ranges run low-high"),
        (("--redo-blocks", "0-2000000"), "more than 1000000 blocks"),
        (("--redo-blocks", "9"), "block 9 does not exist: the store has 4 blocks, 0..3"),
        (("--redo-blocks", "1", "--shard", "0/2"), "block 1 is not in --shard 0/2"),
        (("--redo-blocks", "1", "--overwrite"), "give one of them"),
    ],
)
def test_redo_blocks_are_checked_before_anything_is_written(
    teacher_path: Path, images: Path, tmp_path: Path, args: tuple[str, ...], fragment: str
) -> None:
    out = tmp_path / "labels.zarr"
    result = fkd("generate", images, "--out", out, "--teacher", f"{TEACHER_MODULE}:make", *TINY,
                 *args)  # fmt: skip
    usage_error(result, "--redo-blocks", fragment)
    assert not out.exists()


def test_verify_never_tells_to_run_verify(store: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "labels.zarr"
    shutil.copytree(store, damaged)
    corrupt(damaged / "image_path_data" / "c" / "0")
    result = fkd("verify", damaged)
    assert result.exit_code == 1 and "its image list is damaged" in result.stderr
    assert "run `fkd verify`" not in result.output


USAGE_PROBE = textwrap.dedent(
    """
    import json, sys, time
    from click.testing import CliRunner
    from fkd.cli.main import cli

    results = []
    for args in json.loads(sys.argv[1]):
        start = time.perf_counter()
        run = CliRunner().invoke(cli, args)
        results.append([run.exit_code, run.stderr, time.perf_counter() - start])
    print(json.dumps({"results": results, "torch": "torch" in sys.modules}))
    """
)


def test_usage_errors_exit_2_naming_the_flag_before_torch_is_imported(
    images: Path, tmp_path: Path
) -> None:
    out = str(tmp_path / "x.zarr")
    cases = [
        (["--label-type", "nonsense"], "'nonsense' is not one of 'full', 'hard'"),
        (["--scale", "0.5,0.1"], "--scale: scale must satisfy low <= high"),
        (["--ratio", "0,1"], "--ratio: ratio must be positive"),
        (["--temperature", "inf"], "--temperature: temperature must be a positive finite"),
        (["--label-type", "full"], "--value-dtype: codec 'full' is a reference"),
        (["--input-size", "9000"], "--input-size: teacher input_size must be an integer"),
        (["--redo-blocks", "x"], "--redo-blocks: expected block numbers"),
        (["--weights", "a.pt", "--weights", "b.pt"], "2 --weights for 1 --teacher"),
    ]
    argv = [["generate", str(images), "--out", out, *args] for args, _ in cases]
    argv.append(["train", str(images), "--model", "cnn_4_8_16", "--scale", "2,3"])
    done = subprocess.run([sys.executable, "-c", USAGE_PROBE, json.dumps(argv)],
                          capture_output=True, text=True, check=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    report = json.loads(done.stdout)
    fragments = [fragment for _, fragment in cases] + ["--scale: scale must lie in (0, 1]"]
    for (code, stderr, _), fragment in zip(report["results"], fragments, strict=True):
        assert code == 2 and fragment in stderr, (fragment, stderr)
    assert not report["torch"], "an option check imported torch"
    assert not Path(out).exists()


def test_topk_above_the_teachers_classes_is_a_usage_error_naming_topk(
    teacher_path: Path, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "labels.zarr"
    result = fkd("generate", images, "--out", out, "--teacher", f"{TEACHER_MODULE}:make", *TINY,
                 "--topk", "2000")  # fmt: skip
    usage_error(result, "--topk", "2000 is more than the 10 classes of teacher", "give 1..10")
    assert not out.exists()


def test_values_only_the_run_can_check_are_usage_errors_too(
    teacher_path: Path, images: Path, tmp_path: Path
) -> None:
    from store_factory import make_spec

    from fkd.storage_formats import CodecSpec

    out = tmp_path / "labels.zarr"
    generate = ("generate", images, "--out", out, "--teacher", f"{TEACHER_MODULE}:make")
    for command in (generate, ("train", images, "--model", "cnn_4_8_16")):
        result = fkd(*command, "--device", "banana")
        usage_error(result, "--device", "'banana': use auto, cpu, cuda or cuda:N")
    full = tmp_path / "full.zarr"
    write_store(full, make_spec(codec=CodecSpec("full", 50, k=50, value_dtype="float16")))
    recode = ("convert", "--to", "store", full, "--out", out, "--label-type")
    usage_error(
        fkd(*recode, "marginal_smoothing", "--topk", "60"),
        "k must be an integer in [1, num_classes=50], got 60",
    )
    assert not out.exists()


# --------------------------------------------------------------------------- classes


def named_folder(root: Path, names: list[str]) -> Path:
    """Real-photo patches, two per class, in class folders ``names``."""
    patches = photo_patches(2 * len(names))
    for i, patch in enumerate(patches):
        from PIL import Image

        (root / names[i % len(names)]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(patch).save(root / names[i % len(names)] / f"{i}.png")
    return root


def test_train_refuses_a_folder_whose_classes_the_stores_teacher_lacks(
    teacher_path: Path, tmp_path: Path
) -> None:
    folder = named_folder(tmp_path / "seven", [f"kind{c}" for c in range(7)])
    out = tmp_path / "labels.zarr"
    succeeded(fkd("generate", folder, "--out", out, "--teacher", f"{TEACHER_MODULE}:make_named",
                  *TINY))  # fmt: skip
    result = fkd("train", folder, "--labels", out, *STUDENT, "--val", folder)
    line = one_line_error(result, "('kind0', 'kind1', 'kind2', 'kind3', ... (7 in all)) name none")
    assert "of the 10 classes of the store's teacher" in line and "0 %" in line
    assert "epoch 1" not in result.stdout  # refused before training
    # teacher-eval refuses the same folder instead of reporting 0.00 %.
    evaluated = fkd("teacher-eval", folder, "--teacher", f"{TEACHER_MODULE}:make_named",
                    "--workers", "0")  # fmt: skip
    one_line_error(evaluated, "name none of the 10 classes of teacher")


def test_train_maps_folder_classes_onto_the_teachers_and_its_checkpoint_is_a_teacher(
    teacher_path: Path, tmp_path: Path
) -> None:
    # Sorted, the folders are goldfish (0), hen (1), tench (2); the teacher has tench 0,
    # goldfish 1, hen 8.
    folder = named_folder(tmp_path / "three", ["tench", "goldfish", "hen"])
    store = tmp_path / "labels.zarr"
    succeeded(fkd("generate", folder, "--out", store, "--teacher",
                  f"{TEACHER_MODULE}:make_named", *TINY))  # fmt: skip
    out = tmp_path / "run"
    trained = succeeded(fkd("train", folder, "--labels", store, *STUDENT, "--val", folder,
                            "--alpha", "0.5", "--out", out))  # fmt: skip
    assert "top-1" in trained
    import torch

    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["num_classes"] == 10 and len(checkpoint["class_names"]) == 10
    assert checkpoint["class_names"][:2] == ["tench", "goldfish"]
    student = ("--teacher", "fkd:cnn_4_8_16", "--weights", out / "checkpoint.pt")
    line = succeeded(fkd("teacher-eval", folder, *student, "--workers", "0"))
    assert line.startswith("top-1 ") and "on 6 image(s)" in line


# --------------------------------------------------------------------------- timm offline


needs_timm = pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="needs timm")
TIMM_NAME = "test_efficientnet"  # timm's tiny test model (0.36 M parameters)


def offline_env(hf_home: Path) -> dict[str, str]:
    """A hub that refuses connections (port 9) and a hub cache of our own."""
    return {"HF_HOME": str(hf_home), "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"}


@needs_timm
def test_timm_teacher_without_cached_weights_fails_at_once_offline(
    images: Path, tmp_path: Path
) -> None:
    start = time.perf_counter()
    done = run_fkd("teacher-eval", images, "--teacher", f"timm:{TIMM_NAME}", "--workers", "0",
                   env=offline_env(tmp_path / "hf"), timeout=40)  # fmt: skip
    elapsed = time.perf_counter() - start
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith(
        f"Error: timm's pretrained weights for 'timm:{TIMM_NAME}' are not in the local cache "
        f"({tmp_path / 'hf' / 'hub'}) and cannot be downloaded (127.0.0.1:9: "
    )
    assert "timm.create_model('test_efficientnet', pretrained=True)" in lines[0]
    assert "--weights FILE" in lines[0]
    assert elapsed < 30, elapsed  # the hub client's retries took 51 s


@needs_timm
def test_timm_teacher_with_cached_weights_loads_offline_without_retries(
    tmp_path: Path,
) -> None:
    import timm
    from safetensors.torch import save_file

    repo = tmp_path / "hf" / "hub" / f"models--timm--{TIMM_NAME}.r160_in1k"
    commit = "0" * 40
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    model = timm.create_model(TIMM_NAME, pretrained=False)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(repo / "snapshots" / commit / "model.safetensors"))
    listing = tmp_path / "val.csv"
    from PIL import Image
    from skimage import data

    Image.fromarray(data.coffee()).save(tmp_path / "coffee.jpg")
    listing.write_text("path,label\ncoffee.jpg,967\n")
    start = time.perf_counter()
    done = run_fkd("teacher-eval", listing, "--teacher", f"timm:{TIMM_NAME}", "--workers", "0",
                   env=offline_env(tmp_path / "hf"), timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("top-1 ") and "on 1 image(s)" in done.stdout
    assert time.perf_counter() - start < 45
    assert "Retrying" not in done.stderr
