"""``GenerateConfig``: every option of ``fkd generate``, and the default batch size per device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from fkd.images import DEFAULT_MAX_PIXELS

# Crops per teacher forward when --batch-size is not given.  A GPU wants large
# batches; on CPU small ones are faster per crop, since a layer's activations stay
# in cache: EfficientNet-Lite0 at 224 px ran 2.5-3.2x faster per crop at 4 than at
# 256, with 1 and 2 threads (benchmarks/teacher_batch_bench.py, docs/benchmarks.md).
# Tiny teachers on tiny inputs prefer more (the demo's 32 px CNN: 64).
CPU_BATCH_SIZE = 4
ACCELERATOR_BATCH_SIZE = 256


@dataclass(frozen=True)
class GenerateConfig:
    """Every option of ``fkd generate`` (see ``fkd generate --help``)."""

    data: Path
    out: str
    teachers: tuple[str, ...] = ("efficientnet_lite0",)
    weights: tuple[str | None, ...] = ()
    crops_per_image: int = 200
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    flip_prob: float = 0.5
    seed: int = 0
    label_type: str = "marginal_smoothing"
    topk: int = 5
    temperature: float = 1.0
    value_dtype: str = "uint8"
    input_size: int | None = None
    interpolation: str | None = None
    batch_size: int | None = None  # None: CPU_BATCH_SIZE or ACCELERATOR_BATCH_SIZE
    block_size: int = 256
    workers: int = 2
    device: str = "auto"
    shard: tuple[int, int] = (0, 1)
    overwrite: bool = False
    redo_blocks: tuple[int, ...] = ()  # label exactly these blocks again, committed or not
    hash_files: bool = False
    max_failures: float = 0.01
    max_pixels: int = DEFAULT_MAX_PIXELS
    reference: str | None = None
    check_fidelity: int = 0

    def batch_size_on(self, device: torch.device) -> int:
        """Crops per teacher forward on ``device``: ``batch_size``, or the device's default."""
        if self.batch_size is not None:
            return self.batch_size
        return CPU_BATCH_SIZE if device.type == "cpu" else ACCELERATOR_BATCH_SIZE


__all__ = ["ACCELERATOR_BATCH_SIZE", "CPU_BATCH_SIZE", "GenerateConfig"]
