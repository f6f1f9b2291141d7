"""What a careless or hostile user could break in the store layer (issue 14, items 3, 4, 6, 7).

Real files, real processes: an emptied or truncated shard must fail ``fkd verify``
naming its block, and ``fkd publish`` must refuse it; a resume must never delete a
file outside the store through a link; importing fkd must leave zarr as it was for
the user's own data in the same process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from store_factory import block_data, make_spec, write_store

from fkd.cli.main import cli
from fkd.storage_formats import LabelStore, UnsafePathError


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "s.zarr"
    write_store(path, make_spec(num_images=12))  # 3 blocks of 4
    return path


def verify(path: Path):
    return CliRunner().invoke(cli, ["verify", str(path)])


@pytest.mark.parametrize(
    "chunk",
    ["label_index/c/1/0/0", "label_value/c/1/0/0", "image_status/c/1", "image_error/c/1/0"],
)
@pytest.mark.parametrize("damage", ["emptied", "halved"])
def test_an_emptied_or_truncated_chunk_fails_verify_naming_its_block(store, chunk, damage) -> None:
    assert verify(store).exit_code == 0
    path = store / chunk
    data = path.read_bytes()
    path.write_bytes(b"" if damage == "emptied" else data[: len(data) // 2])
    run = verify(store)
    assert run.exit_code == 1, run.output
    assert "block 1 (images 4..7)" in run.output and chunk.split("/")[0] in run.output
    assert "Traceback" not in run.output


def test_publish_verifies_first_and_writes_nothing_for_a_damaged_store(store, tmp_path) -> None:
    (store / "label_index/c/2/0/0").write_bytes(b"")
    out = tmp_path / "published"
    run = CliRunner().invoke(cli, ["publish", str(store), "--out", str(out), "--zip"])
    assert run.exit_code == 1, run.output
    assert "fails `fkd verify`" in run.output and "block 2" in run.output
    assert not out.exists() and not (tmp_path / "published.zip").exists()
    assert not any(p.name.startswith(".published") for p in tmp_path.iterdir())


def test_inspect_reads_a_zipped_published_store(store, tmp_path) -> None:
    out = tmp_path / "pub"
    assert (
        CliRunner().invoke(cli, ["publish", str(store), "--out", str(out), "--zip"]).exit_code == 0
    )
    zipped = tmp_path / "pub.zip"
    run = CliRunner().invoke(cli, ["inspect", str(zipped)])
    assert run.exit_code == 0, run.output
    assert f"size {zipped.stat().st_size} bytes on disk" in run.output
    as_json = CliRunner().invoke(cli, ["inspect", str(zipped), "--json"])
    assert f'"bytes_on_disk": {zipped.stat().st_size}' in as_json.output


def test_a_resume_never_deletes_a_file_outside_the_store_through_a_link(tmp_path) -> None:
    path = tmp_path / "s.zarr"
    spec = make_spec(num_images=12)
    write_store(path, spec, blocks=[0])
    outside = tmp_path / "outside"
    (path / "label_index" / "c").rename(outside)
    (path / "label_index" / "c").symlink_to(outside, target_is_directory=True)
    canary = outside / "1" / "0" / "0"  # where block 1's shard would be
    canary.parent.mkdir(parents=True)
    canary.write_bytes(b"the user's own file")
    writer = LabelStore.open(path, mode="r+")
    with pytest.raises(UnsafePathError, match="leads outside the store"):
        writer.write_block(1, block_data(spec, 1))
    assert canary.read_bytes() == b"the user's own file"
    run = CliRunner().invoke(cli, ["verify", str(path)])
    assert run.exit_code == 1 and "outside the store" in run.output


USERS_OWN_ZARR = textwrap.dedent(
    """
    import sys
    import numpy as np
    import zarr
    import zarr.registry

    def registry():
        codecs = getattr(zarr.registry, "__codec_registries")
        return {name: sorted(reg) for name, reg in codecs.items()}, dict(zarr.config.get("codecs"))

    # The user's own array, one zstd chunk written by a streaming compressor: its frame
    # declares no content size (a raw block, as `zstd -c` writes for piped input).
    array = zarr.create_array(sys.argv[1], shape=(4,), chunks=(4,), dtype="uint32",
                              compressors=[zarr.codecs.ZstdCodec()])
    array[:] = [1, 2, 3, 4]
    raw = np.arange(1, 5, dtype="<u4").tobytes()
    header = (len(raw) << 3 | 1).to_bytes(3, "little")  # last block, raw, its size
    frame = b"\\x28\\xb5\\x2f\\xfd" + bytes([0x00, 0x00]) + header + raw
    open(sys.argv[1] + "/c/0", "wb").write(frame)
    before = registry()
    assert zarr.open_array(sys.argv[1], mode="r")[:].tolist() == [1, 2, 3, 4]

    import fkd.storage_formats
    from fkd.storage_formats import LabelStore
    store = LabelStore.open(sys.argv[2])
    store.read_images(np.arange(store.spec.num_images))
    store.manifest

    assert zarr.open_array(sys.argv[1], mode="r")[:].tolist() == [1, 2, 3, 4]
    assert registry() == before, (registry(), before)
    print("unchanged")
    """
)


def test_importing_and_using_fkd_leaves_zarr_as_it_was(store, tmp_path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", USERS_OWN_ZARR, str(tmp_path / "users.zarr"), str(store)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "unchanged"


def test_fkd_still_refuses_a_frame_without_a_declared_size_in_its_own_store(store) -> None:
    """The bound stays inside fkd's reads: the same kind of frame in an fkd store is refused."""
    import numpy as np

    raw = np.zeros(4, dtype="<u4").tobytes()
    frame = b"\x28\xb5\x2f\xfd" + bytes([0, 0]) + (len(raw) << 3 | 1).to_bytes(3, "little") + raw
    import google_crc32c

    (store / "image_height" / "c" / "1").write_bytes(
        frame + google_crc32c.value(frame).to_bytes(4, "little")
    )
    run = CliRunner().invoke(cli, ["verify", str(store)])
    assert run.exit_code == 1 and "declares no content size" in run.output
