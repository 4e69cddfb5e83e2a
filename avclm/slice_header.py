"""Former home of the slice header syntax, kept so old imports keep working.

Everything now lives in :mod:`avclm.bits` (one module for H.264 bit syntax); import it
from there. The underscore aliases are the names this module used to have.
"""

from __future__ import annotations

from .bits import (  # noqa: F401  (re-exported)
    BAD_EBSP,
    BitWriter,
    PpsFields,
    SliceFields,
    compose_slice_header,
    data_bits,
    nal_bytes,
    parse_pps_fields,
    parse_slice_fields,
    rbsp_int,
    rewrite_sps,
    ue_len,
)

_data_bits = data_bits
_nal_bytes = nal_bytes
