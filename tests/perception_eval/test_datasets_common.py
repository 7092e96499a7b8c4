"""Index-mask PNG I/O and the DatasetError checks of perception_eval.datasets.common."""

import numpy as np
import pytest
from PIL import Image

from perception_eval.datasets.common import (
    DatasetError,
    davis_palette,
    read_index_mask,
    require_dir,
    require_file,
    write_index_mask,
)


def test_palette_matches_voc_colour_map():
    palette = davis_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    # Hand-derived from the VOC bit rule: 1 -> bit0 -> R bit 7; 2 -> G bit 7; 3 -> R+G; 8 -> R bit 6.
    assert palette[0].tolist() == [0, 0, 0]
    assert palette[1].tolist() == [128, 0, 0]
    assert palette[2].tolist() == [0, 128, 0]
    assert palette[3].tolist() == [128, 128, 0]
    assert palette[4].tolist() == [0, 0, 128]
    assert palette[8].tolist() == [64, 0, 0]
    assert palette[255].tolist() == [224, 224, 192]  # DAVIS void colour


def test_write_then_read_keeps_ids_and_is_palette_png(tmp_path):
    ids = np.array([[0, 1, 2], [255, 3, 0]], dtype=np.uint8)
    path = write_index_mask(tmp_path / "a" / "b" / "00000.png", ids)
    assert path.is_file()
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette()[3:6] == [128, 0, 0]
    back = read_index_mask(path)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, ids)


def test_write_bool_mask_gives_ids_0_1(tmp_path):
    mask = np.zeros((4, 5), bool)
    mask[0, 0] = True
    back = read_index_mask(write_index_mask(tmp_path / "m.png", mask))
    assert back.sum() == 1 and back[0, 0] == 1


def test_write_refuses_bad_arrays(tmp_path):
    with pytest.raises(ValueError):
        write_index_mask(tmp_path / "x.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError):
        write_index_mask(tmp_path / "x.png", np.full((2, 2), 256, np.int32))


def test_read_grey_png_gives_grey_values(tmp_path):
    grey = np.array([[0, 255], [255, 0]], np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")  # mode "L", AVSBench style 0/255
    np.testing.assert_array_equal(read_index_mask(tmp_path / "g.png"), grey)


def test_read_grey_saved_as_rgb_is_accepted_but_colour_refused(tmp_path):
    grey = np.array([[0, 255], [255, 0]], np.uint8)
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb_grey.png")
    np.testing.assert_array_equal(read_index_mask(tmp_path / "rgb_grey.png"), grey)
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[0, 0] = (128, 0, 0)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(DatasetError, match="colour.png"):
        read_index_mask(tmp_path / "colour.png")


def test_missing_and_unreadable_files_name_the_path(tmp_path):
    with pytest.raises(DatasetError, match="nothere.png") as info:
        read_index_mask(tmp_path / "nothere.png")
    assert info.value.path == tmp_path / "nothere.png"
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="broken.png"):
        read_index_mask(tmp_path / "broken.png")


def test_require_file_and_dir(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    assert require_file(tmp_path / "f.txt") == tmp_path / "f.txt"
    assert require_dir(tmp_path) == tmp_path
    with pytest.raises(DatasetError, match="is a folder"):
        require_file(tmp_path)
    with pytest.raises(DatasetError, match="is a file"):
        require_dir(tmp_path / "f.txt")
    with pytest.raises(DatasetError, match="missing_dir"):
        require_dir(tmp_path / "missing_dir")
