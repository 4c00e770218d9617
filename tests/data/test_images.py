"""goldmine.data.images: image folders, MNIST-format IDX files and scikit-learn's digits, brought
to one size and mode, and the errors bad sources get. Tiny generated images; well under a
second each."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from image_helpers import bars, image_folder
from PIL import Image

from goldmine.data.images import (
    checksum,
    evaluation_split,
    is_image_source,
    read_idx,
    read_images,
    to_array,
)
from goldmine.errors import GoldmineError


def write_idx(path: Path, array: np.ndarray, magic: int | None = None,
              extra: bytes = b"") -> Path:
    magic = magic if magic is not None else (0x0803 if array.ndim == 3 else 0x0801)
    raw = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.astype(np.uint8).tobytes() + extra
    if path.suffix == ".gz":
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def idx_folder(root: Path, n_train: int = 20, n_test: int = 10, gz: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 6, 5)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}", np.arange(n) % 3)
    return root


# ------------------------------------------------------------------------------------ folders
def test_image_folder_reads_labels_pixels_and_where(tmp_path):
    root = image_folder(tmp_path / "bars")
    data = read_images(root)
    train = data.splits["train"]
    assert (data.layout, data.size, data.mode, data.channels) == ("folders", (8, 8), "L", 1)
    assert train.pixels.shape == (12, 1, 8, 8) and train.pixels.dtype == np.uint8
    assert train.labels == ["h"] * 6 + ["v"] * 6 and data.labels() == ["h", "v"]
    assert train.where[0] == str(root / "h" / "0.png")
    assert np.array_equal(train.pixels[0, 0], np.asarray(Image.open(root / "h" / "0.png")))
    assert not data.named_splits and not data.messages()
    assert is_image_source(root) and is_image_source("digits")
    assert not is_image_source(tmp_path / "nothing") and not is_image_source(None)


def test_mixed_sizes_are_resized_to_the_most_common_and_said(tmp_path):
    root = image_folder(tmp_path / "bars")
    rng = np.random.default_rng(5)
    Image.fromarray(bars("h", 12, rng), "L").save(root / "h" / "big.png")
    Image.fromarray(np.zeros((4, 6), np.uint8), "L").save(root / "v" / "wide.png")
    data = read_images(root)
    assert data.size == (8, 8) and data.resized == 2
    assert data.splits["train"].pixels.shape == (14, 1, 8, 8)
    (note,) = data.messages()
    assert "resized 2 of 14 images to 8x8 (the most common size" in note
    assert "12x12 (1)" in note and "6x4 (1)" in note
    forced = read_images(root, size=(5, 7))  # a model's size: every image resized to it
    assert forced.splits["train"].pixels.shape == (14, 1, 5, 7) and forced.resized == 14


def test_mixed_modes_are_converted_to_the_majority_and_said(tmp_path):
    root = image_folder(tmp_path / "bars")
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8), "RGB").save(root / "h" / "rgb.png")
    Image.fromarray(np.full((8, 8, 4), 90, np.uint8), "RGBA").save(root / "v" / "rgba.png")
    data = read_images(root)
    assert data.mode == "L" and data.converted == 2
    assert "converted 2 of 14 images to L (the majority mode; they were RGB (1), RGBA (1))" \
        in data.messages()[0]
    colour = read_images(root, mode="RGB")
    assert colour.splits["train"].pixels.shape == (14, 3, 8, 8) and colour.converted == 13  # L and RGBA
    # an RGB majority turns the grayscale images to RGB
    for i in range(20):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8), "RGB").save(root / "v" / f"c{i}.png")
    assert read_images(root).mode == "RGB"


def test_to_array_scales_16_bit_grayscale():
    img = Image.fromarray(np.array([[0, 1000], [2000, 4000]], np.int32), "I")
    a, resized, converted = to_array(img, (2, 2), "L")
    assert a.shape == (1, 2, 2) and converted and not resized
    assert a[0, 1, 1] == 255 and a[0, 0, 0] == 0


def test_split_folders_and_skipped_files(tmp_path):
    for split, seed in (("train", 0), ("val", 1), ("test", 2)):
        image_folder(tmp_path / "ds" / split, per_label=3, seed=seed)
    (tmp_path / "ds" / "train" / "h" / "README.txt").write_text("not an image")
    (tmp_path / "ds" / "train" / "v" / ".DS_Store").write_bytes(b"\0")
    data = read_images(tmp_path / "ds")
    assert sorted(data.splits) == ["test", "train", "val"] and data.named_splits
    assert [len(s) for s in data.splits.values()] == [6, 6, 6]
    assert data.skipped == {"not an image file": 1}
    assert "README.txt" in data.messages()[0]
    assert evaluation_split(data, None) == ("test", None)
    only = read_images(tmp_path / "ds", splits=("train", "val"))
    assert sorted(only.splits) == ["train", "val"]


def test_bad_folders_name_the_folder_or_file(tmp_path):
    root = image_folder(tmp_path / "bars")
    (root / "empty").mkdir()
    with pytest.raises(GoldmineError, match=r"bars/empty: empty label folder"):
        read_images(root)
    (root / "empty").rmdir()
    (root / "v" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(GoldmineError, match=r"bars/v/3.png: not an image Pillow can read"):
        read_images(root)
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(loose / "a.png")
    with pytest.raises(GoldmineError, match="1 images lie directly in the folder; put them in "
                                            "one sub-folder per label"):
        read_images(loose)
    with pytest.raises(GoldmineError, match="no such file or directory"):
        read_images(tmp_path / "missing")


# ---------------------------------------------------------------------------------------- IDX
def test_idx_train_and_t10k_gz_and_plain(tmp_path):
    for gz in (True, False):
        root = idx_folder(tmp_path / f"idx-{gz}", gz=gz)
        data = read_images(root)
        assert data.layout == "idx" and sorted(data.splits) == ["test", "train"]
        assert data.splits["train"].pixels.shape == (20, 1, 6, 5) and data.size == (6, 5)
        assert data.splits["test"].labels[:4] == ["0", "1", "2", "0"]
        assert data.splits["train"].where[3].endswith("train-images-idx3-ubyte" +
                                                      (".gz" if gz else "") + "[3]")
        assert evaluation_split(data, None) == ("test", None)
        assert is_image_source(root)
    # one of the files named: its folder; checksums do not depend on the size read at
    first = read_images(tmp_path / "idx-True" / "train-images-idx3-ubyte.gz")
    assert checksum(first, "train") == checksum(read_images(tmp_path / "idx-True",
                                                            size=(9, 9)), "train")
    assert checksum(first, "train") != checksum(first, "test")


def test_idx_errors_name_the_files(tmp_path):
    root = idx_folder(tmp_path / "m", gz=False)
    write_idx(root / "train-labels-idx1-ubyte", np.arange(19) % 3)
    with pytest.raises(GoldmineError, match=r"train-images-idx3-ubyte has 20 images but "
                                            r".*train-labels-idx1-ubyte has 19 labels"):
        read_images(root)
    write_idx(root / "train-labels-idx1-ubyte", np.arange(20) % 3, magic=0x0803)
    with pytest.raises(GoldmineError, match=r"train-labels-idx1-ubyte: bad magic number "
                                            r"0x00000803; IDX labels"):
        read_images(root)
    write_idx(root / "train-labels-idx1-ubyte", np.arange(20) % 3, extra=b"\0\0")
    with pytest.raises(GoldmineError, match=r"the header says 20 = 20 bytes of data, the file "
                                            r"has 22"):
        read_idx(root / "train-labels-idx1-ubyte", 1)
    (root / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(GoldmineError, match="train-images-idx3-ubyte: no labels file beside it"):
        read_images(root)


def test_idx_without_test_split_is_not_scored_on_train(tmp_path):
    root = idx_folder(tmp_path / "m")
    for f in root.glob("t10k-*"):
        f.unlink()
    data = read_images(root)
    with pytest.raises(GoldmineError, match="training images only .* --split train"):
        evaluation_split(data, None)
    assert evaluation_split(data, "train") == ("train", None)
    with pytest.raises(GoldmineError, match="has no 'val' split"):
        evaluation_split(data, "val")


# ------------------------------------------------------------------------------------- digits
def test_digits_is_a_fixed_stratified_80_20_split():
    data = read_images("digits")
    train, test = data.splits["train"], data.splits["test"]
    assert (len(train), len(test), data.size, data.mode) == (1437, 360, (8, 8), "L")
    assert sorted(set(test.labels)) == [str(i) for i in range(10)]
    assert all(33 <= test.labels.count(str(i)) <= 38 for i in range(10))  # stratified
    assert train.pixels.max() == 255 and train.pixels.min() == 0
    assert not set(train.where) & set(test.where)
    assert read_images("digits").splits["test"].where == test.where  # the same every time
    big = read_images("digits", size=(16, 16), mode="RGB", splits=("test",))
    assert big.splits["test"].pixels.shape == (360, 3, 16, 16) and big.resized == 360
    assert checksum(big, "test") == checksum(data, "test")


def test_digits_split_for_reference_models_is_the_same_split():
    from goldmine.data.images import load_digits_split

    (X, y), (X_test, y_test) = load_digits_split()
    assert X.shape == (1437, 64) and X_test.shape == (360, 64) and X.max() == 16
    test = read_images("digits", splits=("test",)).splits["test"]
    assert [str(v) for v in y_test] == test.labels
    assert np.array_equal(np.rint(X_test.reshape(-1, 8, 8) * 255 / 16), test.pixels[:, 0])
