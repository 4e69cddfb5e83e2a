"""litdata's ``TokensLoader`` with blocks that own their memory.

litdata's loader returns each block as a view into the chunk file's memory map, and unmaps
a chunk once its reader moves on. A resumed multi-process run (``--ckpt_path last`` with
2 ranks) could collate blocks whose chunk had already been unmapped: a segmentation fault
in ``np.stack``. Copying the block (``context + 1`` tokens) when it is read costs nothing
measurable and makes it independent of the map's lifetime.
"""

from __future__ import annotations

from litdata.streaming.item_loader import TokensLoader as _LitdataTokensLoader


class TokensLoader(_LitdataTokensLoader):
    """Same name as litdata's (its index check compares class names); copies each block."""

    def load_item_from_chunk(self, *args, **kwargs):
        block = super().load_item_from_chunk(*args, **kwargs)
        return block.clone() if hasattr(block, "clone") else block.copy()
