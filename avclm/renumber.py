"""The model's pictures renumbered for the output stream, so that a continuation can
re-prompt the model from a re-encoded frame without writing that frame again.

A continuation (:meth:`avclm.generate.VideoGenerator.continue_row`) restarts a row's
model from SPS, PPS and its last output frame re-encoded as an IDR picture (frame_num 0).
The model numbers its next pictures after that IDR picture, while the output already
holds the frame it stands for, as the picture it was (frame_num ``F``). A *seamless*
continuation writes nothing for it: :class:`OutputNumbering` adds ``F`` (mod
MaxFrameNum) to the frame_num of every later slice, so the output's frame_num runs on
without a gap, and the output's short-term references line up with the model's (its
IDR picture is the output's last picture; the pictures after it are the same pictures).
An IDR picture the model writes later gets frame_num 0 (the offset ends) and, where
the output's previous picture is an IDR picture with the same idr_pic_id, the other
one (two consecutive IDR access units must differ in it, H.264 7.4.3). Everything else
in a slice is kept bit for bit (:func:`avclm.bits.rewrite_slice`).

What the decoder then holds differs from what the model was prompted with by one
re-encoding of one frame: the model writes its P picture against the re-encoded frame,
the decoder applies it to the frame itself. That difference does not accumulate (each
continuation re-encodes the output's actual last frame), and no frame repeats, where
writing the re-encoded frame (``continuation="idr"``) repeats one frame per
continuation. Only the output's last picture being a reference picture (what the model
will predict from) makes this possible: :attr:`OutputNumbering.can_reanchor`.
"""

from __future__ import annotations

from . import nal as nalmod
from .bits import Sps, parse_slice_header, rewrite_slice

#: what a continuation writes to the output (``generate_video(continuation=...)``,
#: ``--continuation``): nothing, the output's last picture standing for the re-encoded
#: frame (the default), or that re-encoded IDR picture
CONTINUATIONS = ("seamless", "idr")


def check_continuation(mode: str) -> None:
    """ConfigError unless ``mode`` is one of :data:`CONTINUATIONS`."""
    if mode not in CONTINUATIONS:
        from codeclm.errors import ConfigError

        raise ConfigError(f"continuation must be one of {', '.join(CONTINUATIONS)}, "
                          f"got {mode!r}")


class OutputNumbering:
    """One row's map from the model's slices to the output's (``sps``: the stream's SPS).

    Feed every picture NAL the output gets, in order, through :meth:`output_unit`; call
    :meth:`reanchor` when the model restarts from the output's last picture re-encoded
    as an IDR picture that is not written to the output."""

    def __init__(self, sps: Sps):
        self.sps = sps
        self.max_frame_num = 1 << sps.log2_max_frame_num
        self.offset = 0  # added to the model's frame_num (mod max_frame_num)
        self.open: tuple[int, int | None] | None = None  # the last picture's output
        #   frame_num and idr_pic_id (None: not an IDR picture)
        self.open_is_reference = False  # the last picture's nal_ref_idc is not 0
        self._previous_idr_id: int | None = None  # the picture before the last, if IDR

    @property
    def can_reanchor(self) -> bool:
        """Whether the output's last picture can stand for a re-encoded IDR picture: there
        is one, it is a reference picture (later P pictures predict from it), and the
        stream's picture order follows frame_num (pic_order_cnt_type 2, every canonical
        profile's: a slice then carries no picture order count to renumber)."""
        return (self.open is not None and self.open_is_reference
                and self.sps.pic_order_cnt_type == 2)

    def reanchor(self) -> None:
        """The model's next pictures follow an IDR picture (frame_num 0) that stands for
        the output's last picture: number them after that one."""
        if not self.can_reanchor:
            raise ValueError("the output holds no picture that can stand for an IDR picture")
        self.offset = self.open[0]

    def output_unit(self, unit: bytes) -> bytes:
        """``unit`` (a NAL unit with its start code, as the model's side of the stream has
        it) as the output writes it: picture NALs renumbered, others as they are."""
        nal = nalmod.strip_start_code(unit)
        if not nalmod.is_picture_nal(nal):
            return unit
        head = parse_slice_header(nal, self.sps)
        if head.first_mb == 0:  # a new picture: its numbering in the output
            self._previous_idr_id = self.open[1] if self.open is not None else None
            if head.is_idr:
                self.offset = 0
                idr_id = head.idr_pic_id
                if idr_id == self._previous_idr_id:
                    idr_id ^= 1
                self.open = (0, idr_id)
            else:
                self.open = ((head.frame_num + self.offset) % self.max_frame_num, None)
            self.open_is_reference = bool(nal[0] & 0x60)
        elif self.open is None:  # (a picture's later slice before any first one: as is)
            return unit
        frame_num, idr_id = self.open
        if frame_num == head.frame_num and (idr_id is None or idr_id == head.idr_pic_id):
            return unit
        return unit[:len(unit) - len(nal)] + rewrite_slice(nal, self.sps, frame_num, idr_id)
