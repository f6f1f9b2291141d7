"""A published store served by a real HTTP server on 127.0.0.1 feeds a student's training step."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from http_server import serve
from PIL import Image
from skimage import data as skdata

from fkd.data import make_loader, set_epoch
from fkd.generate import GenerateConfig, generate
from fkd.label_codecs_torch import decode_torch
from fkd.losses import soft_cross_entropy
from fkd.storage_formats import LabelStore
from fkd.storage_formats.publish import publish_store

MODULE = "fkd_http_tiny_teacher"
TEACHER = textwrap.dedent(
    """
    import torch
    from torch import nn

    def make():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                            nn.Flatten(), nn.Linear(4, 10))
        return net, {"input_size": 32, "interpolation": "bilinear"}
    """
)


@pytest.fixture
def served(tmp_path, monkeypatch) -> Iterator[tuple[str, Path]]:
    (tmp_path / f"{MODULE}.py").write_text(TEACHER)
    monkeypatch.syspath_prepend(str(tmp_path))
    photos = tmp_path / "photos"
    for folder, name, load in [("cat", "chelsea.jpg", skdata.chelsea),
                               ("cup", "coffee.jpg", skdata.coffee)]:
        (photos / folder).mkdir(parents=True)
        Image.fromarray(load()).save(photos / folder / name)
    generate(GenerateConfig(data=photos, out=str(tmp_path / "labels.zarr"),
                            teachers=(f"{MODULE}:make",), crops_per_image=4, workers=0,
                            device="cpu", block_size=1), progress=False)
    publish_store(str(tmp_path / "labels.zarr"), tmp_path / "www" / "labels")
    with serve(tmp_path / "www") as url:
        yield f"{url}/labels", photos


def test_the_loader_trains_a_step_reading_labels_over_http(served, tmp_path) -> None:
    url, photos = served
    cache = tmp_path / "chunk-cache"
    loader, dataset, sampler = make_loader(photos, url, batch_images=2, crops_per_visit=2,
                                           input_size=32, workers=0, store_cache=cache)
    set_epoch((dataset, sampler), 0)
    batch = next(iter(loader))
    assert batch["images"].shape == (4, 3, 32, 32)
    codec = LabelStore.open(url).spec.codec
    targets = decode_torch(batch["labels"], codec, "cpu")
    assert targets.shape == (4, 10)
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    before = [p.detach().clone() for p in student.parameters()]
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    loss = soft_cross_entropy(student(batch["images"] / 255.0), targets)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters(), strict=True))
    assert any(cache.iterdir())  # the label shards read over HTTP were kept locally
