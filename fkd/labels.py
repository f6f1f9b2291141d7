"""The old home of the torch label codecs, kept so ``from fkd.labels import ...`` still works.

They live in ``fkd.label_codecs_torch`` (encoding on the teacher's device, decoding on
the student's).
"""

from fkd.label_codecs_torch import (
    TorchDecoder,
    decode_torch,
    dequantize_values_torch,
    encode_torch,
    normalise_rows_torch,
    quantize_values_torch,
    register_torch_decoder,
    to_numpy_fields,
)

__all__ = [
    "TorchDecoder",
    "decode_torch",
    "dequantize_values_torch",
    "encode_torch",
    "normalise_rows_torch",
    "quantize_values_torch",
    "register_torch_decoder",
    "to_numpy_fields",
]
