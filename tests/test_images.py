"""Scanning image sources and decoding images, on real photos written to tmp_path."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import resource
import struct
import time
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageFile
from skimage import data as skdata

from fkd.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    MAX_REASON_BYTES,
    ImageDecodeError,
    ImageSource,
    ImageSourceError,
    decode_image,
    decode_image_bytes,
    decode_or_reason,
    jpeg_exif_orientation,
    scan_source,
    short_reason,
)

HAVE_SIMPLEJPEG = importlib.util.find_spec("simplejpeg") is not None

CHELSEA = skdata.chelsea()  # 300x451 RGB
COFFEE = skdata.coffee()  # 400x600 RGB
ASTRONAUT = skdata.astronaut()  # 512x512 RGB


def save(array: NDArray[np.uint8] | Image.Image, path: Path, **options: Any) -> Path:
    """Write an array or PIL image to ``path`` (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = array if isinstance(array, Image.Image) else Image.fromarray(array)
    image.save(path, **options)
    return path


def small(array: NDArray[np.uint8], size: int = 32) -> NDArray[np.uint8]:
    """A small thumbnail of a photo, to keep folder fixtures cheap."""
    return np.asarray(Image.fromarray(array).resize((size, size)))


def jpeg_bytes(array: NDArray[np.uint8], **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def pil_rgb(path: Path) -> NDArray[np.int64]:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(np.int64)


def check_rgb(pixels: NDArray[np.uint8], height: int, width: int) -> None:
    assert pixels.dtype == np.uint8
    assert pixels.shape == (height, width, 3)
    assert pixels.flags.c_contiguous
    assert pixels.flags.writeable


# --------------------------------------------------------------------------- scanning


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """DATA/train/{cat,dog}/... plus things the scan must skip, and a val split to ignore."""
    data = tmp_path / "data"
    save(small(CHELSEA), data / "train" / "cat" / "b.jpg")
    save(small(CHELSEA), data / "train" / "cat" / "A.PNG")
    save(small(CHELSEA), data / "train" / "cat" / "nested" / "c.jpeg")
    save(small(COFFEE), data / "train" / "dog" / "x.webp")
    save(small(COFFEE), data / "train" / "dog" / ".hidden.jpg")
    save(small(COFFEE), data / "train" / ".cache" / "y.jpg")
    save(small(COFFEE), data / "train" / "dog" / ".thumbs" / "z.jpg")
    (data / "train" / "dog" / "notes.txt").write_text("not an image")
    save(small(ASTRONAUT), data / "val" / "cat" / "v.jpg")
    return data


def test_image_folder_prefers_train_and_sorts_by_path(image_folder: Path) -> None:
    source = scan_source(image_folder, hash_files=True)
    train = image_folder / "train"
    assert source.root == train
    assert source.manifest.paths == ("cat/A.PNG", "cat/b.jpg", "cat/nested/c.jpeg", "dog/x.webp")
    assert source.class_names == ("cat", "dog")
    assert source.manifest.targets.tolist() == [0, 0, 0, 1]
    sizes = [(train / p).stat().st_size for p in source.manifest.paths]
    assert source.manifest.nbytes.tolist() == sizes
    assert source.sha256 == tuple(
        hashlib.sha256((train / p).read_bytes()).hexdigest() for p in source.manifest.paths
    )
    assert source.path_of(3) == train / "dog" / "x.webp"
    assert len(source) == 4


def test_image_folder_without_train_and_without_hashes(image_folder: Path) -> None:
    source = scan_source(str(image_folder / "val"))
    assert source.root == image_folder / "val"
    assert source.manifest.paths == ("cat/v.jpg",)
    assert source.class_names == ("cat",)
    assert source.sha256 is None
    assert scan_source(image_folder) == scan_source(image_folder)  # stable


def test_flat_folder_is_unlabelled(tmp_path: Path) -> None:
    save(small(CHELSEA), tmp_path / "b.jpg")
    save(small(COFFEE), tmp_path / "a.png")
    (tmp_path / "empty_subfolder").mkdir()
    source = scan_source(tmp_path)
    assert source.manifest.paths == ("a.png", "b.jpg")
    assert source.manifest.targets.tolist() == [-1, -1]
    assert source.class_names is None


def test_images_beside_class_folders_are_refused(tmp_path: Path) -> None:
    save(small(CHELSEA), tmp_path / "cat" / "a.jpg")
    save(small(COFFEE), tmp_path / "stray.jpg")
    with pytest.raises(ImageSourceError, match=r"stray\.jpg.*move them into a class folder"):
        scan_source(tmp_path)


def test_empty_class_folder_is_refused(tmp_path: Path) -> None:
    save(small(CHELSEA), tmp_path / "cat" / "a.jpg")
    (tmp_path / "dog").mkdir()
    with pytest.raises(ImageSourceError, match=r"dog .*hold no"):
        scan_source(tmp_path)


def test_bad_data_errors_name_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ImageSourceError, match=r"nowhere does not exist; pass an image folder"):
        scan_source(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageSourceError, match=r"no images found in .*empty; looked for .*\.jpg"):
        scan_source(tmp_path / "empty")
    (tmp_path / "texts" / "cat").mkdir(parents=True)
    (tmp_path / "texts" / "cat" / "a.txt").write_text("hello")
    with pytest.raises(ImageSourceError, match="no images found"):
        scan_source(tmp_path / "texts")
    photo = save(small(CHELSEA), tmp_path / "photo.jpg")
    with pytest.raises(ImageSourceError, match="is an image, not a folder or a file list"):
        scan_source(photo)
    with pytest.raises(ImageSourceError, match="only applies to a file list"):
        scan_source(tmp_path / "texts", root=tmp_path)
    binary = tmp_path / "list.bin"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ImageSourceError, match="not UTF-8 text"):
        scan_source(binary)


def test_broken_symlink_is_named(tmp_path: Path) -> None:
    save(small(CHELSEA), tmp_path / "cat" / "a.jpg")
    (tmp_path / "cat" / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    with pytest.raises(ImageSourceError, match=r"gone\.jpg is a broken symlink"):
        scan_source(tmp_path)


@pytest.fixture
def listed_images(tmp_path: Path) -> Path:
    """Images under tmp_path/images for the file-list tests."""
    for name, photo in [("b.jpg", CHELSEA), ("a.png", COFFEE), ("sub/c.jpg", ASTRONAUT)]:
        save(small(photo), tmp_path / "images" / name)
    save(small(COFFEE), tmp_path / "images" / "my photo.jpg")
    return tmp_path / "images"


def test_csv_list_with_class_names(listed_images: Path) -> None:
    listing = listed_images / "train.csv"
    listing.write_text("path,label\n# a comment\n\nb.jpg,dog\n./sub//c.jpg,cat\na.png, dog\n")
    source = scan_source(listing, hash_files=True)
    assert source.root == listed_images
    assert source.manifest.paths == ("a.png", "b.jpg", "sub/c.jpg")
    assert source.class_names == ("cat", "dog")
    assert source.manifest.targets.tolist() == [1, 1, 0]
    assert source.manifest.nbytes.tolist() == [
        (listed_images / p).stat().st_size for p in source.manifest.paths
    ]
    assert source.sha256 is not None and len(source.sha256) == 3


def test_whitespace_list_with_integer_labels_and_root(listed_images: Path, tmp_path: Path) -> None:
    listing = tmp_path / "lists" / "train.txt"
    listing.parent.mkdir()
    listing.write_text("sub/c.jpg 7\nb.jpg   -1\n  a.png\t3\n".replace("\t", " "))
    source = scan_source(listing, root=listed_images)
    assert source.root == listed_images
    assert source.manifest.paths == ("a.png", "b.jpg", "sub/c.jpg")
    assert source.manifest.targets.tolist() == [3, -1, 7]
    assert source.class_names is None


def test_tab_list_and_unlabelled_paths_with_spaces(listed_images: Path) -> None:
    tabbed = listed_images / "tabbed.tsv"
    tabbed.write_text("my photo.jpg\t0\nb.jpg\t1\n")
    assert scan_source(tabbed).manifest.targets.tolist() == [1, 0]
    plain = listed_images / "plain.txt"
    plain.write_text("path\nmy photo.jpg\nb.jpg\n")
    source = scan_source(plain)
    assert source.manifest.paths == ("b.jpg", "my photo.jpg")
    assert source.manifest.targets.tolist() == [-1, -1]


def test_list_naming_missing_files_names_the_first_few(listed_images: Path) -> None:
    listing = listed_images / "list.txt"
    listing.write_text("a.png\n" + "".join(f"gone{i}.jpg\n" for i in range(7)) + "sub\n")
    with pytest.raises(ImageSourceError) as caught:
        scan_source(listing)
    message = str(caught.value)
    assert "names 8 file(s) missing under" in message
    assert "gone0.jpg, gone1.jpg, gone2.jpg, gone3.jpg, gone4.jpg and 3 more" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("../a.png\n", r"line 1: path '\.\./a\.png' climbs out with '\.\.'"),
        ("/etc/passwd\n", r"line 1: path '/etc/passwd' is absolute"),
        ("sub\\c.jpg\n", "holds a backslash; use forward slashes"),
        ("a.png\nb.jpg\n./a.png\n", r"names 'a\.png' twice \(lines 1 and 3\)"),
        ("a.png,1\nb.jpg\n", "line 2 has no label but other lines do"),
        ("a.png,1,2\n", "line 1 has 3 fields"),
        ("a.png 99999999999\n", "label 99999999999 is out of range"),
        ("# only a comment\npath,label\n", "names no images"),
    ],
)
def test_bad_file_lists(listed_images: Path, text: str, pattern: str) -> None:
    listing = listed_images / "list.txt"
    listing.write_text(text)
    with pytest.raises(ImageSourceError, match=pattern):
        scan_source(listing)


def test_image_source_is_frozen(listed_images: Path) -> None:
    (listed_images / "list.txt").write_text("a.png\n")
    source = scan_source(listed_images / "list.txt")
    assert isinstance(source, ImageSource)
    with pytest.raises(AttributeError):
        source.root = Path("/")  # type: ignore[misc]
    assert ".jpg" in IMAGE_EXTENSIONS and ".ppm" in IMAGE_EXTENSIONS


# --------------------------------------------------------------------------- decoding


def test_jpeg_matches_pil_decode(tmp_path: Path) -> None:
    path = tmp_path / "chelsea.jpg"
    path.write_bytes(jpeg_bytes(CHELSEA))
    pixels = decode_image(path)
    check_rgb(pixels, 300, 451)
    assert np.abs(pixels.astype(np.int64) - pil_rgb(path)).mean() < 2
    assert np.abs(pixels.astype(np.int64) - CHELSEA).mean() < 5


def test_jpeg_is_found_by_magic_bytes_not_extension(tmp_path: Path) -> None:
    path = tmp_path / "really_a_jpeg.png"
    path.write_bytes(jpeg_bytes(COFFEE))
    check_rgb(decode_image(path), 400, 600)


def test_png_is_exact(tmp_path: Path) -> None:
    pixels = decode_image(save(COFFEE, tmp_path / "coffee.png"))
    check_rgb(pixels, 400, 600)
    np.testing.assert_array_equal(pixels, COFFEE)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_grayscale_gives_three_equal_channels(tmp_path: Path, suffix: str) -> None:
    gray = np.asarray(Image.fromarray(ASTRONAUT).convert("L"))
    path = save(gray, tmp_path / f"gray{suffix}")
    pixels = decode_image(path)
    check_rgb(pixels, 512, 512)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    if suffix == ".png":
        np.testing.assert_array_equal(pixels[..., 0], gray)
    else:
        assert np.abs(pixels[..., 0].astype(np.int64) - pil_rgb(path)[..., 0]).mean() < 2


def test_palette_with_transparency_drops_alpha_without_warnings(tmp_path: Path) -> None:
    palette = Image.fromarray(CHELSEA).quantize(64)
    alpha = bytes([0] * 8 + [128] * 8 + [255] * 48)
    path = save(palette, tmp_path / "palette.png", transparency=alpha)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pixels = decode_image(path)
    colours = np.asarray(palette.getpalette(), dtype=np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(pixels, colours[np.asarray(palette)])


def test_rgba_and_la_drop_alpha(tmp_path: Path) -> None:
    alpha = np.linspace(0, 255, CHELSEA.shape[1], dtype=np.uint8)[None, :].repeat(300, 0)
    rgba = np.dstack([CHELSEA, alpha])
    np.testing.assert_array_equal(decode_image(save(rgba, tmp_path / "rgba.png")), CHELSEA)
    gray = CHELSEA[..., 1]
    la = Image.fromarray(np.dstack([gray, alpha]), mode="LA")
    np.testing.assert_array_equal(decode_image(save(la, tmp_path / "la.png"))[..., 2], gray)


def test_cmyk_jpeg_matches_pil_convert(tmp_path: Path) -> None:
    path = save(Image.fromarray(CHELSEA).convert("CMYK"), tmp_path / "cmyk.jpg", quality=90)
    with Image.open(path) as image:
        assert image.mode == "CMYK"
    pixels = decode_image(path)
    check_rgb(pixels, 300, 451)
    np.testing.assert_array_equal(pixels, pil_rgb(path))


def test_16_bit_png_keeps_the_high_byte(tmp_path: Path) -> None:
    gradient = (np.arange(64 * 300, dtype=np.uint32).reshape(64, 300) * 3 % 65536).astype(np.uint16)
    image = Image.fromarray(gradient)
    assert image.mode == "I;16"
    pixels = decode_image(save(image, tmp_path / "deep.png"))
    check_rgb(pixels, 64, 300)
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], gradient >> 8)


def test_16_bit_ppm_opens_as_mode_i_and_keeps_the_high_byte(tmp_path: Path) -> None:
    gradient = np.array([[0, 255, 256, 30000, 65535]], dtype=np.uint16)
    path = save(Image.fromarray(gradient), tmp_path / "deep.ppm")
    with Image.open(path) as image:
        assert image.mode == "I"
    np.testing.assert_array_equal(decode_image(path)[0, :, 0], [0, 0, 1, 117, 255])


def test_bilevel_and_float_modes(tmp_path: Path) -> None:
    bilevel = Image.fromarray(CHELSEA).convert("1")
    pixels = decode_image(save(bilevel, tmp_path / "bilevel.png"))
    assert set(np.unique(pixels).tolist()) <= {0, 255}
    values = np.array([[-3.0, 0.4, 127.6, 300.0, np.nan]], dtype=np.float32)
    floats = decode_image(save(Image.fromarray(values), tmp_path / "float.tif"))
    np.testing.assert_array_equal(floats[0, :, 0], [0, 0, 128, 255, 0])


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_is_applied(tmp_path: Path, suffix: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    rotated = save(CHELSEA, tmp_path / f"rotated{suffix}", exif=exif)
    upright = save(CHELSEA, tmp_path / f"upright{suffix}")
    if suffix == ".jpg":
        assert jpeg_exif_orientation(rotated.read_bytes()) == 6
        assert jpeg_exif_orientation(upright.read_bytes()) == 1
    pixels = decode_image(rotated)
    check_rgb(pixels, 451, 300)
    expected = np.rot90(decode_image(upright), k=-1).astype(np.int64)
    assert np.abs(pixels.astype(np.int64) - expected).mean() < 2


def test_animated_gif_gives_the_first_frame(tmp_path: Path) -> None:
    frames = [Image.fromarray(small(photo, 64)) for photo in (CHELSEA, COFFEE, ASTRONAUT)]
    path = tmp_path / "animated.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    pixels = decode_image(path)
    check_rgb(pixels, 64, 64)
    np.testing.assert_array_equal(pixels, pil_rgb(path))
    with Image.open(path) as image:
        assert getattr(image, "n_frames", 1) == 3
        image.seek(1)
        second = np.asarray(image.convert("RGB"))
    assert np.abs(pixels.astype(np.int64) - second).mean() > 10


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".gif", ".bmp"])
def test_1x1_image_decodes(tmp_path: Path, suffix: str) -> None:
    pixels = decode_image(save(CHELSEA[:1, :1], tmp_path / f"dot{suffix}"))
    check_rgb(pixels, 1, 1)


def test_decode_or_reason(tmp_path: Path) -> None:
    pixels, reason = decode_or_reason(save(small(CHELSEA), tmp_path / "ok.png"))
    assert pixels is not None and reason == ""
    assert decode_or_reason(tmp_path / "gone.jpg") == (None, "file missing")


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="^zero-byte file$"):
        decode_image(path)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_image(tmp_path: Path, suffix: str) -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    whole = save(CHELSEA, tmp_path / f"whole{suffix}").read_bytes()
    path = tmp_path / f"half{suffix}"
    path.write_bytes(whole[: len(whole) // 2])
    pixels, reason = decode_or_reason(path)
    assert pixels is None
    assert reason.startswith("truncated image"), reason


@pytest.mark.parametrize(
    "content",
    [b"just some text, not a picture\n", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\n"],
)
def test_not_an_image(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.jpg"
    path.write_bytes(content)
    assert decode_or_reason(path) == (None, "not an image (unrecognised format)")


def test_corrupt_jpeg_body(tmp_path: Path) -> None:
    data = bytearray(jpeg_bytes(CHELSEA))
    data[600:4000] = b"\x00" * 3400  # inside the entropy-coded scan
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(bytes(data))
    pixels, reason = decode_or_reason(path)
    # libjpeg may recover garbage from zeros; either way nothing raw escapes.
    assert (pixels is None and reason) or (pixels is not None and reason == "")


def png_with_size(width: int, height: int) -> bytes:
    """A tiny real PNG whose IHDR is patched to claim ``width`` x ``height`` (CRC fixed)."""
    buffer = io.BytesIO()
    Image.new("1", (8, 8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def jpeg_with_size(width: int, height: int) -> bytes:
    """A small real JPEG whose baseline SOF0 is patched to claim ``width`` x ``height``."""
    data = bytearray(jpeg_bytes(small(CHELSEA, 16)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.mark.parametrize(
    ("make", "max_pixels", "reason"),
    [
        (lambda: png_with_size(100_000, 100_000), DEFAULT_MAX_PIXELS,
         "too large: 10000000000 pixels > cap 178956970"),
        (lambda: png_with_size(10_000, 10_000), 1_000_000,
         "too large: 10000x10000 pixels > cap 1000000"),
        (lambda: png_with_size(30_000, 30_000), 500_000_000,
         "too large: 900000000 pixels > cap 178956970"),
        (lambda: jpeg_with_size(60_000, 60_000), 10**9,
         "too large: 60000x60000 pixels > cap 1000000000" if HAVE_SIMPLEJPEG
         else "too large: 3600000000 pixels > cap 178956970"),
    ],
)  # fmt: skip
def test_decompression_bomb_is_refused_from_the_header(
    tmp_path: Path, make: object, max_pixels: int, reason: str
) -> None:
    path = tmp_path / "bomb.img"
    path.write_bytes(make())  # type: ignore[operator]
    before = peak_rss_bytes()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not escape
        assert decode_or_reason(path, max_pixels) == (None, reason)
    assert time.perf_counter() - start < 1.0
    assert peak_rss_bytes() - before < 64 * 2**20
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS // 2  # nothing global was changed


def test_pixel_cap_counts_width_times_height(tmp_path: Path) -> None:
    path = save(small(CHELSEA, 10), tmp_path / "ten.jpg")
    check_rgb(decode_image(path, max_pixels=100), 10, 10)
    with pytest.raises(ImageDecodeError, match=r"^too large: 10x10 pixels > cap 99$"):
        decode_image(path, max_pixels=99)
    with pytest.raises(ValueError, match="max_pixels must be a positive integer"):
        decode_image(path, max_pixels=0)


def test_reasons_are_short_single_lines() -> None:
    reason = short_reason("é" * 200 + "\nsecond line")
    assert len(reason.encode("utf-8")) <= MAX_REASON_BYTES
    assert reason.endswith("...") and "\n" not in reason
    assert short_reason("fine\nreason") == "fine reason"
    assert ImageDecodeError("x" * 500).reason == short_reason("x" * 500)


def test_decode_image_bytes_matches_decode_image(tmp_path: Path) -> None:
    data = jpeg_bytes(ASTRONAUT)
    path = tmp_path / "astronaut.jpg"
    path.write_bytes(data)
    np.testing.assert_array_equal(decode_image_bytes(data), decode_image(path))
