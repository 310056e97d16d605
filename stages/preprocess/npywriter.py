"""Write a large .npy file row block by row block with plain file writes (no memory map of the output).

Writing through ``np.memmap`` keeps every written page resident and counted in the process's memory; sequential
writes keep the peak at one block, which is what lets a million cells through in a few GB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class NpyWriter:
    def __init__(self, path: str | Path, shape: tuple[int, ...], dtype):
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        self._fh = open(path, "wb")
        np.lib.format.write_array_header_1_0(
            self._fh, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        )
        self.rows = 0

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.shape[1:] or self.rows + len(block) > self.shape[0]:
            raise ValueError(f"block {block.shape} does not fit {self.shape} after {self.rows} rows")
        self._fh.write(block.tobytes())
        self.rows += len(block)

    def close(self) -> None:
        self._fh.close()
        if self.rows != self.shape[0]:
            raise ValueError(f"wrote {self.rows} of {self.shape[0]} rows")

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._fh.close()
