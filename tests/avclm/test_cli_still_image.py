"""`avclm encode photo.jpg`: a still image is named as such, with what to use instead."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from avclm.cli import main


@pytest.mark.parametrize("name", ["photo.jpg", "photo.png"])
def test_encode_a_still_image_says_so(tmp_path, capsys, name):
    src = tmp_path / name
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(src)
    assert main(["encode", str(src), "-o", str(tmp_path / "out.h264")]) == 1
    err = capsys.readouterr().err
    assert err == (f"avclm: error: {src}: a still image, not a video "
                   "(use `jpeglm encode` for images)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
