"""The canonical JPEG codec through real decoders (Pillow/libjpeg-turbo and PyAV/FFmpeg)."""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from codeclm.errors import DecodeError, InputError, ProfileError
from codeclm.profile import profile_from_dict, profile_to_dict
from jpeglm import codec, scancheck
from jpeglm.modality import JpegModality
from jpeglm.profile import PROFILES, JpegProfile


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


def marker_list(data: bytes) -> list[int]:
    segs, _ = scancheck.segments(data)
    return [m for m, _, _ in segs]


def entropy_ends(data: bytes) -> list[int]:
    """Offset just past MCU i's entropy bytes (before its RST/EOI), from split_mcus."""
    hdr, units, _ = codec.split_mcus(data)
    ends, pos = [], len(hdr)
    for i, u in enumerate(units):
        pos += len(u)
        ends.append(pos - 2 if i < len(units) - 1 else pos)
    return ends


# ------------------------------------------------------------------ profile
def test_profiles_geometry(paper, tiny):
    assert paper.modality == tiny.modality == "jpeg"
    assert (paper.width, paper.height, paper.mcu_count, paper.mcus_per_row) == (256, 256, 256, 16)
    assert (tiny.width, tiny.height, tiny.mcu_count, tiny.mcus_per_row) == (64, 64, 16, 4)
    assert paper.pixel_values == 256 * 256 * 3
    assert {f.name for f in dataclasses.fields(JpegProfile)} >= {"name", "quality", "subsampling"}
    assert "modality" not in dataclasses.asdict(paper)
    for p in (paper, tiny):
        d = profile_to_dict(p)
        assert d["modality"] == "jpeg"
        assert profile_from_dict(d) == p


def test_profile_rejects_bad_settings():
    with pytest.raises(ProfileError):
        JpegProfile(name="x", width=250)
    with pytest.raises(ProfileError):
        JpegProfile(name="x", quality=0)
    with pytest.raises(ProfileError):
        JpegProfile(name="x", subsampling="4:1:1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROFILES["paper"].quality = 90


# ------------------------------------------------------------------ header and tables
def test_header_layout(paper, tiny):
    h = codec.header(paper)
    assert len(h) == 59
    assert marker_list(h) == [0xE0, 0xC0, 0xDD, 0xDA]  # APP0 SOF0 DRI SOS after SOI
    i = h.index(b"\xff\xc0")
    assert h[i + 4] == 8  # 8-bit precision
    assert struct.unpack(">HH", h[i + 5:i + 9]) == (256, 256)
    assert h[i + 9] == 3  # YCbCr
    assert h[i + 11] == 0x22  # luma sampled 2x2 -> 4:2:0
    assert codec.header(tiny) != h and len(codec.header(tiny)) == 59
    d = h.index(b"\xff\xdd")
    assert h[d + 4:d + 6] == b"\x00\x01"  # restart interval: 1 MCU


def test_header_constant_over_many_images(varied_images, paper, tiny):
    for name, src in varied_images:
        for prof in (paper, tiny):
            data = codec.encode_image(src, prof)
            assert data.startswith(codec.header(prof)), name
            assert not any(m in (0xDB, 0xC4, 0xFE, 0xE1, 0xE2) for m in marker_list(data)), name
            img = codec.decode(data, prof)
            assert img.size == prof.size and img.mode == "RGB", name


def test_standard_huffman_tables_not_optimized(paper, samples):
    tab = codec.tables(paper)
    segs, _ = scancheck.segments(b"\xff\xd8" + tab + b"\xff\xd9")
    assert [m for m, _, _ in segs] == [0xDB, 0xDB, 0xC4, 0xC4, 0xC4, 0xC4]
    # Annex K.3: luminance DC and AC code-length counts
    body = b"\xff\xd8" + tab
    dht = [body[s + 4:e] for m, s, e in segs if m == 0xC4]
    assert dht[0][0] == 0x00 and list(dht[0][1:17]) == [0, 1, 5, 1, 1, 1, 1, 1, 1] + [0] * 7
    assert dht[1][0] == 0x10 and list(dht[1][1:17]) == [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4,
                                                        0, 0, 1, 0x7D]
    # tables do not depend on the image (an optimized encoder's would)
    full = [codec.to_jpeg(codec.encode_image(p, paper), paper) for p in samples[:3]]
    for f in full:
        assert codec.tables(paper)[-len(dht[3]):] in f


def test_standalone_jpeg_is_pillows_ordinary_output(samples, paper, tiny):
    for prof in (paper, tiny):
        for p in samples:
            img = codec.prepare(p, prof)
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=25, subsampling="4:2:0", restart_marker_blocks=1)
            assert codec.to_jpeg(codec.encode_image(p, prof), prof) == buf.getvalue()
            tbuf = io.BytesIO()
            img.save(tbuf, "JPEG", quality=25, subsampling="4:2:0", streamtype=1)
            assert tbuf.getvalue() == b"\xff\xd8" + codec.tables(prof) + b"\xff\xd9"


# ------------------------------------------------------------------ round trip
def test_round_trip_pillow_and_pyav(encoded_paper, paper):
    import av

    sizes = []
    for p, data in encoded_paper.items():
        ref = np.asarray(codec.prepare(p, paper))
        out = np.asarray(codec.decode(data, paper))
        assert out.shape == (256, 256, 3)
        assert psnr(ref, out) > 20, p.name
        sizes.append(len(data))
        # an independent decoder reads the standalone file the same way
        jpg = codec.to_jpeg(data, paper)
        with av.open(io.BytesIO(jpg), format="jpeg_pipe") as c:
            frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
        assert frame.shape == out.shape
        assert np.abs(frame.astype(int) - out).mean() < 3, p.name
        assert codec.decode(jpg, paper) == codec.decode(data, paper)
    # ~4 KB of modeled bytes per 256x256 image, far fewer than 196608 raw values
    assert 1500 < np.mean(sizes) < 12000


def test_resize_is_short_side_then_center_crop(paper):
    # left third red, middle green, right third blue, 3:1 aspect: only green survives
    a = np.zeros((100, 300, 3), np.uint8)
    a[:, :100, 0] = 255
    a[:, 100:200, 1] = 255
    a[:, 200:, 2] = 255
    out = np.asarray(codec.prepare(Image.fromarray(a), paper))
    assert out.shape == (256, 256, 3)
    assert out[:, 8:-8, 1].min() > 240 and out[:, 8:-8, [0, 2]].max() < 15


def test_alpha_composited_over_background(paper):
    clear = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    out = np.asarray(codec.decode(codec.encode_image(clear, paper), paper))
    assert out.min() > 245  # white, not the black hidden under alpha 0


def test_exif_orientation_applied(paper):
    a = np.zeros((60, 120, 3), np.uint8)
    a[:, :60] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise when displayed: left half -> top half
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG", exif=exif.tobytes())
    out = np.asarray(codec.prepare(buf.getvalue(), paper).convert("L"))
    assert out[:100].mean() > 200 and out[-100:].mean() < 50


# ------------------------------------------------------------------ units
@pytest.mark.parametrize("name", ["paper", "tiny"])
def test_mcu_units_and_restart_markers(name, encoded_paper, encoded_tiny):
    prof = PROFILES[name]
    enc = encoded_paper if name == "paper" else encoded_tiny
    for data in enc.values():
        hdr, units, trailer = codec.split_mcus(data)
        assert hdr == codec.header(prof)
        assert len(units) == prof.mcu_count
        assert trailer == b"\xff\xd9"
        assert hdr + b"".join(units) + trailer == data
        for i, u in enumerate(units[:-1]):
            assert u[-2:] == bytes((0xFF, 0xD0 + i % 8))
            assert b"\xff" not in u[:-2].replace(b"\xff\x00", b"")
        assert b"\xff" not in units[-1].replace(b"\xff\x00", b"")
        mod = JpegModality(prof)
        assert mod.split_units(data) == (hdr, units)
        import re

        from codeclm.modality import record

        assert len(re.findall(record(mod.name).unit_marker, data)) == prof.mcu_count - 1


def test_split_of_cut_stream_gives_whole_units(encoded_tiny, tiny):
    data = next(iter(encoded_tiny.values()))
    hdr, units, _ = codec.split_mcus(data)
    for k in range(tiny.mcu_count):
        h2, u2, t2 = codec.split_mcus(hdr + b"".join(units[:k]))
        assert (h2, u2, t2) == (hdr, units[:k], b"")


def test_prompt_prefix(encoded_paper, paper):
    data = next(iter(encoded_paper.values()))
    hdr, units, _ = codec.split_mcus(data)
    for r, k in [(0.25, 64), (0.5, 128), (0.75, 192), (0.375, 96), (0.4375, 112),
                 (0.3, 76), (0.0, 0), (1.0, 256)]:
        pre = codec.prompt_prefix(data, r, paper)
        assert pre == hdr + b"".join(units[:k])
        assert codec.intact_units(pre, paper) == k
        if 0 < k < 256:
            assert pre[-2:] == bytes((0xFF, 0xD0 + (k - 1) % 8))
    assert codec.prompt_prefix(codec.to_jpeg(data, paper), 0.5, paper) == \
        codec.prompt_prefix(data, 0.5, paper)
    for bad in (-0.1, 1.5):
        with pytest.raises(InputError):
            codec.prompt_prefix(data, bad, paper)


def test_mcus_are_independent(encoded_tiny, tiny):
    """A prompt of the top two MCU rows decodes to the same top pixels; the rest is grey."""
    data = next(iter(encoded_tiny.values()))
    full = np.asarray(codec.decode(data, tiny)).astype(int)
    img, n = codec.decode_tolerant(codec.prompt_prefix(data, 0.5, tiny), tiny)
    part = np.asarray(img).astype(int)
    assert n == 8
    # chroma upsampling blends across one MCU edge: compare away from it
    assert np.array_equal(part[:30], full[:30])
    assert np.abs(part[34:] - 128).max() <= 1


# ------------------------------------------------------------------ strict decode
def _rebuild(hdr, units, trailer=b"\xff\xd9", renumber=True):
    """Join units, optionally renumbering their RST markers 0..7 in order."""
    out = []
    for i, u in enumerate(units):
        body = u[:-2] if len(u) >= 2 and 0xD0 <= u[-1] <= 0xD7 and u[-2] == 0xFF else u
        out.append(body + (bytes((0xFF, 0xD0 + i % 8)) if i < len(units) - 1 and renumber
                           else b""))
    return hdr + b"".join(out) + trailer


def corruptions(data: bytes):
    """(kind, bytes) pairs, each a damaged version of ``data``."""
    hdr, units, trailer = codec.split_mcus(data)
    n = len(units)
    mid = n // 2
    yield "missing EOI", data[:-2]
    yield "extra after EOI", data + b"\x00"
    yield "cut in header", data[:30]
    yield "header only", hdr
    for cut in (len(hdr) + 3, len(data) // 2, len(data) - 5):
        yield f"truncated at {cut}", data[:cut]
    yield "one MCU dropped", _rebuild(hdr, units[:mid] + units[mid + 1:])
    yield "one MCU duplicated", _rebuild(hdr, units[:mid] + [units[mid]] + units[mid:])
    wrong = list(units)
    wrong[mid] = wrong[mid][:-1] + bytes(((wrong[mid][-1] - 0xD0 + 3) % 8 + 0xD0,))
    yield "wrong RST number", hdr + b"".join(wrong) + trailer
    garbage = list(units)
    garbage[mid] = garbage[mid][:-2] + b"\x12\x34" + b"\xff\x00" * 6 + b"\x56" + garbage[mid][-2:]
    yield "garbage bytes in scan", hdr + b"".join(garbage) + trailer
    badcode = list(units)
    badcode[mid] = b"\xff\x00\xff\x00" + badcode[mid][4:]
    yield "bad Huffman code", hdr + b"".join(badcode) + trailer
    other = list(units)
    other[mid] = other[mid][:-2] + b"\xff\xc4" + other[mid][-2:]
    yield "foreign marker in scan", hdr + b"".join(other) + trailer
    yield "not a jpeg", b"hello world" * 10
    yield "empty", b""


def test_strict_rejects_every_corruption(encoded_paper, paper):
    data = next(iter(encoded_paper.values()))
    codec.check(data, paper)
    for kind, bad in corruptions(data):
        with pytest.raises(DecodeError):
            codec.decode(bad, paper)
            pytest.fail(f"strict decode accepted: {kind}")
        with pytest.raises(DecodeError):
            codec.decode(codec.to_jpeg(bad, paper) if bad.startswith(b"\xff\xd8\xff\xe0")
                         and len(bad) > 59 else bad, paper)


def test_strict_rejects_other_profile(encoded_tiny, paper):
    with pytest.raises(DecodeError, match="canonical header"):
        codec.decode(next(iter(encoded_tiny.values())), paper)


def test_strict_rejects_damaged_restart_markers(encoded_tiny, tiny):
    """Deleting a whole marker, half of it, or renumbering it is always caught.

    (A prefix code cannot catch every change: deleting bytes *inside* an MCU's
    data often leaves a grammatical stream that libjpeg decodes without a word,
    so strict decoding promises a well-formed canonical stream, not the original.)
    """
    data = next(iter(encoded_tiny.values()))
    hdr, units, trailer = codec.split_mcus(data)
    for i in range(len(units) - 1):
        for damaged in (units[i][:-2], units[i][:-2] + units[i][-1:], units[i][:-1],
                        units[i][:-1] + bytes(((units[i][-1] - 0xCF) % 8 + 0xD0,))):
            bad = hdr + b"".join(units[:i]) + damaged + b"".join(units[i + 1:]) + trailer
            with pytest.raises(DecodeError):
                codec.decode(bad, tiny)


def test_scan_checker_accepts_all_samples(encoded_paper, encoded_tiny, paper, tiny):
    for prof, enc in ((paper, encoded_paper), (tiny, encoded_tiny)):
        for data in enc.values():
            codec.check(data, prof)
            codec.check(codec.to_jpeg(data, prof), prof)
            assert codec.intact_units(data, prof) == prof.mcu_count


# ------------------------------------------------------------------ tolerant decode
@pytest.mark.parametrize("name", ["paper", "tiny"])
def test_tolerant_truncation_counts_intact_mcus(name, encoded_paper, encoded_tiny):
    prof = PROFILES[name]
    data = next(iter((encoded_paper if name == "paper" else encoded_tiny).values()))
    ends = entropy_ends(data)
    full = np.asarray(codec.decode(data, prof))
    step = 1 if name == "tiny" else 97
    for cut in list(range(0, len(data) + 1, step)) + [len(data) - 1, len(data) - 2]:
        img, n = codec.decode_tolerant(data[:cut], prof)
        assert img.size == prof.size and img.mode == "RGB"
        assert n == sum(e <= cut for e in ends), cut
    img, n = codec.decode_tolerant(data, prof)
    assert n == prof.mcu_count and np.array_equal(np.asarray(img), full)


def test_tolerant_stops_at_first_damage(encoded_paper, paper):
    data = next(iter(encoded_paper.values()))
    units = codec.split_mcus(data)[1]
    mid = len(units) // 2
    expected = {
        "wrong RST number": mid + 1,      # MCU mid itself is fine, its marker is not
        "garbage bytes in scan": mid,
        "bad Huffman code": mid,
        "one MCU dropped": 255,           # all in place, but EOI where RST6 belongs
        "one MCU duplicated": 256,        # 256 good MCUs, then RST instead of EOI
        "extra after EOI": 256,
        "missing EOI": 256,
        "cut in header": 0,
        "not a jpeg": 0,
        "empty": 0,
    }
    seen = set()
    for kind, bad in corruptions(data):
        img, n = codec.decode_tolerant(bad, paper)
        assert img.size == (256, 256)
        if kind in expected:
            assert n == expected[kind], kind
            seen.add(kind)
    assert seen == set(expected)


def test_decode_non_strict_is_tolerant(encoded_tiny, tiny):
    data = next(iter(encoded_tiny.values()))
    img = codec.decode(data[: len(data) // 2], tiny, strict=False)
    assert img.size == (64, 64)
    frames = JpegModality(tiny).decode_tolerant(b"\x00garbage")
    assert len(frames) == 1 and frames[0].shape == (64, 64, 3) and frames[0].dtype == np.uint8
    assert np.abs(frames[0].astype(int) - 128).max() <= 1


def test_blank_unit_is_a_valid_grey_mcu(tiny):
    blank = codec.blank_unit(tiny)
    data = codec.header(tiny) + b"".join(
        blank + bytes((0xFF, 0xD0 + i % 8)) for i in range(15)) + blank + b"\xff\xd9"
    out = np.asarray(codec.decode(data, tiny)).astype(int)
    assert np.abs(out - 128).max() <= 1


# ------------------------------------------------------------------ bad input
def _png_claiming(w: int, h: int) -> bytes:
    """A PNG whose IHDR claims w x h pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))


def test_bad_inputs_raise_input_error(tmp_path, samples, paper):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all\n")
    half_png = tmp_path / "half.png"
    half_png.write_bytes((samples[1]).read_bytes()[:600])
    jpg = next(p for p in samples if p.suffix == ".jpg")
    half_jpg = tmp_path / "half.jpg"
    half_jpg.write_bytes(jpg.read_bytes()[: jpg.stat().st_size // 2])
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(60000, 60000))
    bigger_than_pillow = tmp_path / "bomb2.png"
    bigger_than_pillow.write_bytes(_png_claiming(10000, 10000))
    for src in (tmp_path / "missing.png", empty, text, half_png, half_jpg, bomb,
                bigger_than_pillow, tmp_path, b"", b"\x89PNG\r\n\x1a\n"):
        with pytest.raises(InputError):
            codec.encode_image(src, paper)
    with pytest.raises(InputError, match="limit"):
        codec.encode_image(samples[0], paper, max_pixels=1000)
    with pytest.raises(InputError):
        codec.encode_image(Image.new("RGB", (5000, 5000)), paper, max_pixels=10**6)


def test_caller_encoder_settings_cannot_leak(paper):
    """Pillow lets ``im.encoderinfo`` override save() arguments; encode_image ignores it."""
    im = codec.prepare(Image.effect_mandelbrot((300, 200), (-2, -1.5, 1, 1.5), 60), paper)
    clean = codec.encode_image(im, paper)
    im.encoderinfo = {"quality": 95, "subsampling": 0, "comment": b"leak"}
    assert codec.encode_image(im, paper) == clean


# ------------------------------------------------------------------ robustness (property)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_tolerant_never_raises_on_mutations(data, encoded_tiny, tiny):
    """Random byte edits, insertions, deletions and cuts: tolerant decoding always gives
    a 64x64 image and an intact count no larger than the untouched leading units; strict
    decoding either raises DecodeError or agrees with the tolerant image."""
    src = data.draw(st.sampled_from(sorted(encoded_tiny)))
    clean = encoded_tiny[src]
    b = bytearray(clean)
    first = len(b)
    for _ in range(data.draw(st.integers(1, 4))):
        if len(b) <= 60:
            break
        i = data.draw(st.integers(59, len(b) - 1))
        first = min(first, i)
        op = data.draw(st.sampled_from(["set", "insert", "delete", "cut"]))
        if op == "set":
            b[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            b[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del b[i:i + data.draw(st.integers(1, 8))]
        else:
            del b[i:]
    damaged = bytes(b)
    img, n = codec.decode_tolerant(damaged, tiny)
    assert img.size == (64, 64) and 0 <= n <= tiny.mcu_count
    untouched = sum(e <= first for e in entropy_ends(clean))
    assert n >= untouched - 1 or damaged == clean  # units before the first edit survive
    try:
        strict = codec.decode(damaged, tiny)
    except DecodeError:
        return
    assert n == tiny.mcu_count and strict == img


def test_modality_interface(tmp_path, samples, tiny):
    from codeclm.modality import modality_for, record
    from codeclm.profile import load_profile, save_profile

    mod = modality_for(tiny)
    assert isinstance(mod, JpegModality) and mod.name == "jpeg"
    assert record(mod.name).marker_side == "after"
    data = mod.encode_path(str(samples[0]))
    assert data == codec.encode_image(samples[0], tiny)
    hdr, units = mod.split_units(data)
    assert hdr + b"".join(units) + b"\xff\xd9" == data
    (frame,) = mod.decode_tolerant(data)
    assert np.array_equal(frame, np.asarray(codec.decode(data, tiny)))
    assert mod.pixels_per_sample() == 64 * 64 * 3
    save_profile(tiny, tmp_path)
    assert load_profile(tmp_path) == tiny
