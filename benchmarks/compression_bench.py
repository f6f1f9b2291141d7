"""Which compression chain for the label arrays: bytes per crop of each candidate.

Writes the top-K label arrays (marginal smoothing, K=5) of teacher-like data
(``fkd.storage_formats.synthetic``) with each candidate chain and chunking, and
prints bytes on disk per crop.  This is the measurement behind
``zarr_store.chunk_codecs`` and ``DEFAULT_IMAGES_PER_CHUNK``.

    python benchmarks/compression_bench.py [--images 512] [--classes 1000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, TransposeCodec, ZstdCodec

from fkd.storage_formats import CodecSpec, get_codec
from fkd.storage_formats.synthetic import teacher_like_probs

CROPS, K, BLOCK = 200, 5, 256

CHAINS: dict[str, Callable[[int], list[Any]]] = {
    "zstd5": lambda size: [ZstdCodec(level=5), Crc32cCodec()],
    "blosc-zstd5-shuffle": lambda size: [
        BloscCodec(cname="zstd", clevel=5, shuffle="shuffle", typesize=size),
        Crc32cCodec(),
    ],
    "blosc-zstd5-bitshuffle": lambda size: [
        BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle", typesize=size),
        Crc32cCodec(),
    ],
    "blosc-zstd5-noshuffle": lambda size: [
        BloscCodec(cname="zstd", clevel=5, shuffle="noshuffle", typesize=size),
        Crc32cCodec(),
    ],
}


def directory_bytes(root: Path) -> int:
    return sum(os.path.getsize(Path(d) / f) for d, _, files in os.walk(root) for f in files)


def stored_bytes(
    workdir: Path, arrays: dict[str, np.ndarray], chain: str, per_chunk: int, transpose: bool
) -> int:
    total = 0
    for name, values in arrays.items():
        name = f"{name}-{arrays['value'].dtype}"
        path = workdir / f"{values.dtype}-{chain}-{per_chunk}-{transpose}-{name}"
        array = zarr.create_array(
            str(path),
            shape=values.shape,
            dtype=values.dtype,
            chunks=(per_chunk, CROPS, K),
            shards=(BLOCK, CROPS, K),
            filters=[TransposeCodec(order=(0, 2, 1))] if transpose else None,
            serializer=BytesCodec(),
            compressors=CHAINS[chain](values.dtype.itemsize),
            fill_value=0,
        )
        array[:] = values
        total += directory_bytes(path)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--classes", type=int, default=1000)
    args = parser.parse_args()
    probs = teacher_like_probs(np.random.default_rng(0), args.images, CROPS, args.classes)
    crops = args.images * CROPS
    print(
        f"label bytes per crop, marginal_smoothing K={K}, N={args.images}, M={CROPS}, "
        f"C={args.classes}"
    )
    print(
        f"{'values':8s} {'chain':24s} {'transpose':9s} "
        + " ".join(f"{n:>7s}" for n in ("1/chunk", "4/chunk", "16/chunk"))
    )
    with tempfile.TemporaryDirectory() as tmp:
        for value_dtype in ("uint8", "float16"):
            codec = get_codec(
                CodecSpec("marginal_smoothing", args.classes, k=K, value_dtype=value_dtype)
            )
            arrays = codec.encode(probs)
            for chain in CHAINS:
                for transpose in (False, True):
                    sizes = [
                        stored_bytes(Path(tmp), arrays, chain, per_chunk, transpose) / crops
                        for per_chunk in (1, 4, 16)
                    ]
                    print(
                        f"{value_dtype:8s} {chain:24s} {transpose!s:9s} "
                        + " ".join(f"{s:7.2f}" for s in sizes)
                    )


if __name__ == "__main__":
    main()
