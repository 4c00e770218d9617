"""Labelled images for `goldmine finetune classify --arch cnn`, `evaluate`, `predict` and
`compare`: read from three kinds of source into uint8 arrays of one size and one mode.

    read_images("digits")              # scikit-learn's 8x8 digits, embedded: train / test
    read_images("photos")              # photos/<label>/*.png, or photos/{train,val,test}/<label>/
    read_images("mnist")               # mnist/train-images-idx3-ubyte(.gz) + labels, t10k-* too
    read_images("mnist", size=(28, 28), mode="L")   # at a model's size and mode (evaluate)

Sources (`--data`):

- `digits`: the 1,797 8x8 handwritten digits that ship with scikit-learn (`load_digits`; values
  0-16, scaled here to 0-255), labels "0"-"9". Split once into train (80%) and test (20%),
  stratified, with scikit-learn's `train_test_split(random_state=0)`, so that every run and
  every model is scored on the same 360 test images whatever its --seed. A file or folder
  named `digits` in the working directory wins over the embedded set.
- an image folder: one sub-folder per label holding the images, found recursively (PNG, JPEG,
  BMP, GIF, TIFF, WebP: what Pillow reads; a GIF gives its first frame); or sub-folders
  train/, val/ (or valid/, validation/) and test/, each with one sub-folder per label. Hidden
  files are ignored; files of other types are skipped and counted.
- MNIST-format IDX files in a folder (or one of them named): `train-images-idx3-ubyte` with
  `train-labels-idx1-ubyte`, and `t10k-*` for the test split (`.gz` too; `train-images.idx3-ubyte`
  spellings too). MNIST, Fashion-MNIST and KMNIST ship this way. Labels are the byte values.

One size and one mode. A network takes images of one shape, so each source is brought to one:
the most common size (width x height) of the training images, or `size` when given, and the
majority mode family, grayscale (L) or colour (RGB), or `mode` when given. Images of another
size are resized (Pillow, bilinear with antialiasing) and images of another mode converted
(RGBA and P to RGB drop the alpha; RGB to L is Pillow's luminance); both are counted and
returned in `notes`, which callers print. A file that cannot be decoded is an error naming it
(when training: a model is not silently trained on less; `predict` writes such a file's row
with an error instead).

Bad sources are errors that name the file or folder: a label folder without images, images
directly in the root (they need a label folder), an IDX file with the wrong magic number, a
type other than unsigned bytes, a size that does not match its header, or images and labels
files of different counts.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from goldmine.errors import GoldmineError

DIGITS = "digits"
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
                  ".ppm", ".pbm")
SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val",
              "test": "test"}
GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")
IDX_IMAGES = re.compile(r"^(train|t10k)-images[-.]idx3-ubyte(\.gz)?$")
IDX_MAGIC = {1: 0x0801, 3: 0x0803}  # unsigned bytes, 1 dimension (labels) / 3 (images)


@dataclass
class ImageSet:
    """Images of one split: `pixels` uint8 (n, C, H, W), a label per image (None when the
    source has none) and where each came from (a file, or FILE[i] in an IDX file)."""

    pixels: np.ndarray
    labels: list[str | None]
    where: list[str]

    def __len__(self) -> int:
        return len(self.where)

    def take(self, index: list[int] | np.ndarray) -> ImageSet:
        index = np.asarray(index, dtype=np.int64)
        return ImageSet(self.pixels[index], [self.labels[i] for i in index],
                        [self.where[i] for i in index])


@dataclass
class ImageData:
    """A whole source: its splits (train, and val / test when it has them), the one size
    (height, width) and mode ("L" or "RGB") they were brought to, what was done to get there
    (`notes`, for the user) and how many files of other types were skipped."""

    source: str
    layout: str  # digits / folders / idx
    splits: dict[str, ImageSet]  # "train" holds all of a folder of label folders
    size: tuple[int, int]
    mode: str
    notes: list[str] = field(default_factory=list)
    resized: int = 0
    converted: int = 0
    skipped: Counter = field(default_factory=Counter)  # files left out, by reason
    skipped_first: dict[str, str] = field(default_factory=dict)  # reason -> the first of them
    files: list[Path] = field(default_factory=list)  # the files read
    split_files: dict[str, list[Path]] = field(default_factory=dict)  # IDX: each split's files
    named_splits: bool = True  # False: label folders without train/ val/ test/

    def messages(self) -> list[str]:
        """The notes, and the files skipped: what a command tells the user it did."""
        return self.notes + [f"{self.source}: skipped {n:,} files ({reason}; first: "
                             f"{self.skipped_first.get(reason)})"
                             for reason, n in self.skipped.items()]

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    def labels(self) -> list[str]:
        return sorted({lab for s in self.splits.values() for lab in s.labels if lab is not None})


# ---------------------------------------------------------------------------------------------
# what a --data value is
# ---------------------------------------------------------------------------------------------
def is_digits(data: str | Path) -> bool:
    return str(data) == DIGITS and not Path(DIGITS).exists()


def idx_files(folder: Path) -> dict[str, tuple[Path, Path | None]]:
    """{"train": (images, labels or None), "test": ...} of the IDX files in a folder."""
    out: dict[str, tuple[Path, Path | None]] = {}
    for f in sorted(folder.iterdir()) if folder.is_dir() else ():
        m = IDX_IMAGES.match(f.name)
        if not m or not f.is_file():
            continue
        prefix = m.group(1)
        labels = [folder / (f.name.replace("images", "labels", 1).replace("idx3", "idx1", 1))]
        labels += [p.with_suffix("") if p.suffix == ".gz" else p.with_name(p.name + ".gz")
                   for p in labels]
        found = next((p for p in labels if p.is_file()), None)
        split = "train" if prefix == "train" else "test"
        if split not in out or (found and out[split][1] is None):
            out[split] = (f, found)
    return out


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and p.suffix.lower() in IMAGE_SUFFIXES and not _hidden(p, folder))


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def is_image_source(data: str | Path | None) -> bool:
    """Whether --data names images: `digits`, a folder of IDX files (or one of them), or a
    folder whose sub-folders (or their train/ val/ test/ sub-folders) hold image files."""
    if data is None:
        return False
    if is_digits(data):
        return True
    p = Path(data)
    if p.is_file():
        return bool(IDX_IMAGES.match(p.name)) or p.suffix.lower() in IMAGE_SUFFIXES
    if not p.is_dir() or (p / "manifest.json").is_file():
        return False
    if idx_files(p):
        return True
    subs = _subdirs(p)
    split_subs = [s for s in subs if s.name in SPLIT_DIRS]
    for s in (split_subs or subs)[:50]:
        inner = _subdirs(s) if split_subs else [s]
        if any(f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() and not _hidden(f, d)
               for d in inner[:50] for f in d.rglob("*")):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# one image
# ---------------------------------------------------------------------------------------------
def mode_family(mode: str) -> str:
    """"L" for grayscale modes, "RGB" for the others (RGB, RGBA, P, CMYK, YCbCr, ...)."""
    return "L" if mode in GRAY_MODES else "RGB"


def open_image(source: Any, where: str, max_pixels: int | None = None):
    """A PIL image from a path, encoded bytes or a PIL image; a GoldmineError naming `where`
    when it cannot be decoded (or has more than `max_pixels` pixels)."""
    from PIL import Image

    if isinstance(source, Image.Image):
        return source
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray))
                         else source)
        if max_pixels is not None and img.width * img.height > max_pixels:
            raise GoldmineError(f"{where}: {img.width}x{img.height} pixels is more than "
                                f"{max_pixels:,} allowed")
        img.load()
    except GoldmineError:
        raise
    except Exception as e:  # Pillow raises OSError, ValueError, SyntaxError, DecompressionBomb...
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GoldmineError(f"{where}: not an image Pillow can read ({why})") from None
    return img


def to_array(img, size: tuple[int, int], mode: str) -> tuple[np.ndarray, bool, bool]:
    """A PIL image as uint8 (C, H, W) at `size` (height, width) and `mode` (L or RGB); and
    whether it was resized and whether its mode was converted."""
    from PIL import Image

    converted = img.mode != mode
    if converted:
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16/32-bit grayscale: scale
            a = np.asarray(img, dtype=np.float64)
            hi = a.max() if a.size and a.max() > 255 else 255.0
            img = Image.fromarray(np.clip(a * (255.0 / hi), 0, 255).astype(np.uint8), "L")
        img = img.convert(mode)
    resized = (img.height, img.width) != tuple(size)
    if resized:
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    a = np.asarray(img, dtype=np.uint8)
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (H, W) / (H, W, C) -> (C, H, W)
    return np.ascontiguousarray(a), resized, converted


# ---------------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------------
def _digits_split():
    """scikit-learn's digits and the (train, test) indices of `digits`' fixed split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    train, test = train_test_split(np.arange(len(d.target)), test_size=DIGITS_TEST_FRACTION,
                                   stratify=d.target, random_state=DIGITS_SPLIT_SEED)
    return d, np.sort(train), np.sort(test)


def load_digits_split() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((X_train, y_train), (X_test, y_test)): digits as scikit-learn gives them (64 features
    of 0-16 per image, integer labels) on the train / test split that `digits` uses, for
    reference models (bench/baselines.py's SVC)."""
    d, train, test = _digits_split()
    return (d.data[train], d.target[train]), (d.data[test], d.target[test])


def load_digits_images() -> dict[str, ImageSet]:
    """scikit-learn's digits as train / test ImageSets (see the module docstring)."""
    d, train, test = _digits_split()
    pixels = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    sets = {}
    for name, idx in (("train", train), ("test", test)):
        sets[name] = ImageSet(pixels[idx], [str(int(d.target[i])) for i in idx],
                              [f"digits[{i}]" for i in idx])
    return sets


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as e:
        raise GoldmineError(f"{path}: cannot read ({e})") from None


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with `ndim` dimensions (1: labels, 3: images)."""
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise GoldmineError(f"{path}: not an IDX file ({len(raw)} bytes)")
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != IDX_MAGIC[ndim]:
        kind = "labels (idx1)" if ndim == 1 else "images (idx3)"
        raise GoldmineError(f"{path}: bad magic number 0x{magic:08x}; IDX {kind} of unsigned "
                            f"bytes start with 0x{IDX_MAGIC[ndim]:08x}")
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise GoldmineError(f"{path}: the header is cut short ({len(raw)} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:head])
    need = int(np.prod(dims, dtype=np.int64))
    if len(raw) - head != need:
        raise GoldmineError(f"{path}: the header says {' x '.join(map(str, dims))} = {need:,} "
                            f"bytes of data, the file has {len(raw) - head:,}")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)


def load_idx_images(folder: Path) -> tuple[dict[str, ImageSet], dict[str, list[Path]]]:
    """The IDX splits of a folder, and each split's (images, labels) files."""
    found = idx_files(folder)
    if "train" not in found and "test" not in found:
        raise GoldmineError(f"{folder}: no IDX files (train-images-idx3-ubyte[.gz] with "
                            "train-labels-idx1-ubyte[.gz])")
    sets, files = {}, {}
    for split, (images_file, labels_file) in found.items():
        if labels_file is None:
            raise GoldmineError(f"{images_file}: no labels file beside it (expected "
                                f"{images_file.name.split('-')[0]}-labels-idx1-ubyte[.gz])")
        pixels = read_idx(images_file, 3)
        labels = read_idx(labels_file, 1)
        if len(pixels) != len(labels):
            raise GoldmineError(f"{images_file} has {len(pixels):,} images but {labels_file} "
                                f"has {len(labels):,} labels; they must match one to one")
        sets[split] = ImageSet(pixels[:, None], [str(int(v)) for v in labels],
                               [f"{images_file.name}[{i}]" for i in range(len(pixels))])
        files[split] = [images_file, labels_file]
    return sets, files


def folder_files(root: Path) -> tuple[dict[str, list[tuple[Path, str]]], Counter, Path | None,
                                      bool]:
    """{split: [(file, label), ...]} of an image folder, how many non-image files were skipped,
    the first of them, and whether the folder has train/ val/ test/ sub-folders."""
    subs = _subdirs(root)
    if not subs:
        loose = _image_files(root)
        if loose:
            raise GoldmineError(f"{root}: {len(loose):,} images lie directly in the folder; "
                                f"put them in one sub-folder per label ({root}/LABEL/"
                                f"{loose[0].name})")
        raise GoldmineError(f"{root}: no label folders (expected {root}/LABEL/IMAGE.png, or "
                            "train/ val/ test/ folders of them)")
    split_dirs = {SPLIT_DIRS[s.name]: s for s in subs if s.name in SPLIT_DIRS}
    named = bool(split_dirs) and len(split_dirs) == len(subs)
    if not named:  # label folders (not all of them split names)
        split_dirs = {"train": root}
    out: dict[str, list[tuple[Path, str]]] = {}
    skipped: Counter = Counter()
    first_skipped = None
    for split, d in split_dirs.items():
        labels = _subdirs(d)
        if not labels:
            raise GoldmineError(f"{d}: no label folders (expected {d}/LABEL/IMAGE.png)")
        rows = []
        for label_dir in labels:
            files = _image_files(label_dir)
            others = [p for p in label_dir.rglob("*") if p.is_file() and
                      p.suffix.lower() not in IMAGE_SUFFIXES and not _hidden(p, label_dir)]
            if others:
                skipped["not an image file"] += len(others)
                first_skipped = first_skipped or others[0]
            if not files:
                raise GoldmineError(f"{label_dir}: empty label folder (no "
                                    f"{'/'.join(s[1:] for s in IMAGE_SUFFIXES[:5])} images); "
                                    "remove it or add images")
            rows += [(f, label_dir.name) for f in files]
        out[split] = rows
    return out, skipped, first_skipped, named


def _most_common_size(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The most common (height, width); ties go to the larger image."""
    counts = Counter(sizes)
    return max(counts, key=lambda s: (counts[s], s[0] * s[1], s))


def _bring_to(data: ImageData, size: tuple[int, int] | None, mode: str | None,
              what: str) -> None:
    """IDX and digits arrays (all L, one size per split) to `size`/`mode` when they differ."""
    from PIL import Image

    target_size = size or data.size
    target_mode = mode or data.mode
    for s in data.splits.values():
        h, w = s.pixels.shape[2:]
        if (h, w) == target_size and target_mode == "L":
            continue
        out = np.empty((len(s), 1 if target_mode == "L" else 3, *target_size), np.uint8)
        for i, a in enumerate(s.pixels):
            out[i], resized, converted = to_array(Image.fromarray(a[0], "L"), target_size,
                                                  target_mode)
            data.resized += resized
            data.converted += converted
        s.pixels = out
    data.size, data.mode = target_size, target_mode
    if data.resized:
        data.notes.append(f"{what}: resized {data.resized:,} images to {target_size[1]}x"
                          f"{target_size[0]}")
    if data.converted:
        data.notes.append(f"{what}: converted {data.converted:,} grayscale images to "
                          f"{target_mode}")


def read_images(data: str | Path, size: tuple[int, int] | None = None,
                mode: str | None = None, splits: tuple[str, ...] | None = None,
                progress: bool = True) -> ImageData:
    """Read an image source (see the module docstring) into arrays of one size and mode:
    `size` (height, width) and `mode` ("L"/"RGB") when given (a model's), else decided from
    the training images. `splits`: read only these (default: all). `progress`: a progress bar
    while image files are decoded (off inside another one)."""
    from goldmine.progress import progress_bar

    if mode is not None and mode not in ("L", "RGB"):
        raise ValueError(f"mode {mode!r}")
    if is_digits(data):
        sets = load_digits_images()
        sets = {k: v for k, v in sets.items() if splits is None or k in splits}
        out = ImageData(DIGITS, "digits", sets, (8, 8), "L")
        _bring_to(out, size, mode, DIGITS)
        return out
    path = Path(data)
    if not path.exists():
        raise GoldmineError(f"data {path}: no such file or directory")
    if path.is_file() and IDX_IMAGES.match(path.name):
        path = path.parent
    if path.is_file():
        raise GoldmineError(f"data {path}: a single file; training and evaluating on images "
                            "take a folder with one sub-folder per label, MNIST-format IDX "
                            "files or `digits`")
    if idx_files(path):
        sets, files = load_idx_images(path)
        have = list(sets)
        sets = {k: v for k, v in sets.items() if splits is None or k in splits}
        if not sets:
            raise GoldmineError(f"data {path}: no {' or '.join(splits)} IDX files (it has "
                                f"{', '.join(have)}: train-* are the training images)")
        first = next(iter(sets.values()))
        out = ImageData(str(path), "idx", sets, tuple(first.pixels.shape[2:]), "L",
                        files=[f for k in sets for f in files[k]],
                        split_files={k: files[k] for k in sets})
        sizes = {tuple(s.pixels.shape[2:]) for s in sets.values()}
        if len(sizes) > 1 and size is None:  # train and t10k of different sizes
            size = tuple(sets["train"].pixels.shape[2:]) if "train" in sets else None
        _bring_to(out, size, mode, str(path))
        return out

    by_split, skipped, first_skipped, named = folder_files(path)
    have = list(by_split)
    by_split = {k: v for k, v in by_split.items() if splits is None or k in splits}
    if not by_split:
        raise GoldmineError(f"data {path}: no {' or '.join(splits)} folder (it has "
                            f"{', '.join(have)})")
    headers: dict[Path, tuple[tuple[int, int], str]] = {}
    from PIL import Image

    for rows in by_split.values():
        for f, _ in rows:
            try:
                with Image.open(f) as img:
                    headers[f] = ((img.height, img.width), img.mode)
            except Exception:  # noqa: BLE001 - named below, when it is decoded
                headers[f] = ((0, 0), "?")
    decide = by_split.get("train") or next(iter(by_split.values()))
    readable = [headers[f] for f, _ in decide if headers[f][1] != "?"] or [((8, 8), "L")]
    target_size = tuple(size) if size else _most_common_size([h[0] for h in readable])
    families = Counter(mode_family(h[1]) for h in readable)
    target_mode = mode or max(("L", "RGB"), key=lambda m: (families[m], m == "RGB"))
    out = ImageData(str(path), "folders", {}, target_size, target_mode, skipped=skipped,
                    named_splits=named)
    resized_from: Counter = Counter()
    converted_from: Counter = Counter()
    total = sum(len(v) for v in by_split.values())
    with progress_bar(transient=True) if progress else _Quiet() as bar:
        task = bar.add_task("images", total=total, stats="")
        for split, rows in by_split.items():
            pixels = np.empty((len(rows), 1 if target_mode == "L" else 3, *target_size),
                              np.uint8)
            for i, (f, _) in enumerate(rows):
                img = open_image(f, str(f))
                before = (f"{img.width}x{img.height}", img.mode)
                pixels[i], resized, converted = to_array(img, target_size, target_mode)
                if resized:
                    resized_from[before[0]] += 1
                if converted:
                    converted_from[before[1]] += 1
                bar.advance(task)
            out.splits[split] = ImageSet(pixels, [lab for _, lab in rows],
                                         [str(f) for f, _ in rows])
            out.files += [f for f, _ in rows]
    out.resized, out.converted = sum(resized_from.values()), sum(converted_from.values())
    where = "given" if size else "the most common"
    if out.resized:
        shown = ", ".join(f"{s} ({n:,})" for s, n in resized_from.most_common(3))
        out.notes.append(f"{path}: resized {out.resized:,} of {total:,} images to "
                         f"{target_size[1]}x{target_size[0]} ({where} size; they were "
                         f"{shown}{', ...' if len(resized_from) > 3 else ''})")
    if out.converted:
        shown = ", ".join(f"{m} ({n:,})" for m, n in converted_from.most_common())
        out.notes.append(f"{path}: converted {out.converted:,} of {total:,} images to "
                         f"{target_mode} ({'given' if mode else 'the majority'} mode; they "
                         f"were {shown})")
    if skipped:
        out.skipped_first = {reason: str(first_skipped) for reason in skipped}
    return out


class _Quiet:
    """A stand-in for a progress bar that shows nothing."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def advance(self, *args, **kwargs) -> None:
        pass


def checksum(data: ImageData, split: str) -> str:
    """sha256 of one split as it is stored, whatever size and mode it was read at: the files
    (IDX: their decompressed bytes; folders: each image's path under the folder, label and
    bytes) or, for digits, which images and labels. What evaluate and compare record to tell
    whether two runs scored the same images."""
    s = data.splits[split]
    h = hashlib.sha256(f"{data.layout}\n{split}\n".encode())
    if data.layout == "idx":
        for f in data.split_files.get(split, []):
            h.update(_read_bytes(f))
    elif data.layout == "folders":
        root = Path(data.source)
        for where, label in zip(s.where, s.labels):
            f = Path(where)
            h.update(f"{f.relative_to(root).as_posix()}\t{label}\n".encode())
            h.update(f.read_bytes())
    else:
        h.update("\n".join(f"{w}\t{lab}" for w, lab in zip(s.where, s.labels)).encode())
    return h.hexdigest()


def evaluation_split(data: ImageData, split: str | None) -> tuple[str, str | None]:
    """Which split evaluate and compare score on: `split` when given, else test, else val,
    else the whole source when it has no named splits (an image folder of label folders). An
    IDX folder or `digits` without held-out images is an error (scoring on training images
    would flatter the model). Returns (split, a note for the user or None)."""
    names = list(data.splits)
    if split is not None:
        if split not in data.splits:
            raise GoldmineError(f"split: {data.source} has no {split!r} split (it has "
                                f"{', '.join(names)})")
        return split, None
    for name in ("test", "val"):
        if name in data.splits:
            return name, None
    if not data.named_splits:
        return "train", None  # label folders without splits: all of it is the data given
    raise GoldmineError(f"data: {data.source} has training images only (no test or val "
                        "split); give held-out images, or --split train to score on these")
