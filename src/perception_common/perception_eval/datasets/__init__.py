"""Readers of the benchmark datasets' on-disk layouts (see each module's docstring for its layout)."""

from .common import (
    DatasetError,
    davis_palette,
    read_index_mask,
    require_dir,
    require_file,
    write_index_mask,
)

__all__ = ["DatasetError", "davis_palette", "read_index_mask", "require_dir", "require_file", "write_index_mask"]
