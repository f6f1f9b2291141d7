"""fkd: offline knowledge distillation with teacher soft labels stored in a Zarr v3 store."""

__version__ = "0.1.0"
