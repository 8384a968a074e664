import re
import struct
import warnings
import zlib

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from kdx_engine.data import (
    ImageError,
    collect_image_paths,
    display_image,
    image_from_bytes,
    load_image,
    load_images,
    to_batch,
    to_tensor,
    transform_mask,
)
from kdx_engine.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

RED_ISH = (200, 30, 60)
WIDTH, HEIGHT = 40, 30


def uniform_rgb(colour=RED_ISH, width=WIDTH, height=HEIGHT) -> np.ndarray:
    return np.tile(np.array(colour, dtype=np.uint8), (height, width, 1))


def write_image(path, array_or_image, **save_options):
    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    image.save(path, **save_options)
    return path


def png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width``×``height``; nothing that large is ever allocated."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def assert_refused_naming(path):
    with pytest.raises(ImageError) as caught:
        load_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path.name}: ")
    assert "\n" not in message
    return message


# --- formats -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix, options, tolerance", [
    (".png", {}, 0),
    (".bmp", {}, 0),
    (".tiff", {}, 0),
    (".webp", {"lossless": True}, 0),
    (".jpg", {"quality": 95}, 4),
    (".gif", {}, 0),
])
def test_each_format_loads_with_its_size_and_colour(tmp_path, suffix, options, tolerance):
    path = write_image(tmp_path / f"colour{suffix}", uniform_rgb(), **options)
    image = load_image(path)
    assert image.rgb.dtype == np.uint8
    assert image.rgb.shape == (HEIGHT, WIDTH, 3)
    assert image.size == (WIDTH, HEIGHT)
    assert np.abs(image.rgb.astype(int) - np.array(RED_ISH)).max() <= tolerance
    assert len(image.sha256) == 64 and image.mask is None


def test_gif_first_frame_is_used_and_noted(tmp_path):
    frames = [Image.fromarray(uniform_rgb(c)) for c in [(255, 0, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    image = load_image(path)
    assert tuple(image.rgb[0, 0]) == (255, 0, 0)
    assert "first of 2 frames" in image.notes


def test_rgb_png_has_no_notes(tmp_path):
    assert load_image(write_image(tmp_path / "plain.png", uniform_rgb())).notes == ()


# --- conversions -----------------------------------------------------------------------------------


def test_grey_becomes_rgb_with_a_note(tmp_path):
    path = write_image(tmp_path / "grey.png", np.full((HEIGHT, WIDTH), 77, np.uint8))
    image = load_image(path)
    assert image.rgb.shape == (HEIGHT, WIDTH, 3) and np.all(image.rgb == 77)
    assert "converted from grey" in image.notes


def test_palette_becomes_rgb_with_a_note(tmp_path):
    palette_image = Image.fromarray(uniform_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    image = load_image(write_image(tmp_path / "palette.png", palette_image))
    assert tuple(image.rgb[5, 5]) == RED_ISH
    assert "converted from palette" in image.notes


def test_rgba_is_composited_on_white_with_a_note(tmp_path):
    rgba = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    rgba[..., :3] = (0, 0, 255)
    rgba[:, : WIDTH // 2, 3] = 255  # left half opaque blue, right half fully transparent
    image = load_image(write_image(tmp_path / "cutout.png", rgba))
    assert tuple(image.rgb[0, 0]) == (0, 0, 255)
    assert tuple(image.rgb[0, -1]) == (255, 255, 255)
    assert any("composited on white" in note for note in image.notes)


def test_opaque_rgba_keeps_its_colours_and_notes_the_dropped_alpha(tmp_path):
    rgba = np.dstack([uniform_rgb(), np.full((HEIGHT, WIDTH), 255, np.uint8)])
    image = load_image(write_image(tmp_path / "opaque.png", rgba))
    assert tuple(image.rgb[0, 0]) == RED_ISH
    assert any("alpha dropped" in note for note in image.notes)


def test_cmyk_becomes_rgb_with_a_note(tmp_path):
    cmyk = Image.new("CMYK", (WIDTH, HEIGHT), (0, 255, 255, 0))
    image = load_image(write_image(tmp_path / "print.tiff", cmyk))
    assert tuple(image.rgb[0, 0]) == (255, 0, 0)
    assert "converted from CMYK" in image.notes


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.zeros((HEIGHT, WIDTH), np.uint16)
    values[:, :10] = 65535
    values[:, 10:20] = 257 * 100
    pil_image = Image.fromarray(values)
    assert pil_image.mode == "I;16"
    image = load_image(write_image(tmp_path / "depth.png", pil_image))
    assert tuple(image.rgb[0, 0]) == (255, 255, 255)
    assert tuple(image.rgb[0, 15]) == (100, 100, 100)
    assert tuple(image.rgb[0, 30]) == (0, 0, 0)
    assert "converted from 16-bit grey" in image.notes


def test_exif_orientation_is_applied(tmp_path):
    rgb = uniform_rgb((255, 0, 0), width=40, height=20)
    rgb[:, 20:] = (0, 0, 255)  # stored: red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    image = load_image(write_image(tmp_path / "phone.png", rgb, exif=exif))
    assert image.rgb.shape == (40, 20, 3)
    assert tuple(image.rgb[0, 0]) == (255, 0, 0) and tuple(image.rgb[-1, 0]) == (0, 0, 255)
    assert "EXIF orientation 6 applied" in image.notes


def test_image_from_bytes_names_the_pasted_image(tmp_path):
    path = write_image(tmp_path / "clip.png", uniform_rgb())
    assert load_image(path).sha256 == image_from_bytes(path.read_bytes(), "clipboard.png").sha256
    with pytest.raises(ImageError, match=r"^clipboard\.png: "):
        image_from_bytes(b"not an image", "clipboard.png")


# --- refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file_is_refused(tmp_path, suffix):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = write_image(tmp_path / f"whole{suffix}", noise).read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole[: len(whole) // 2])
    assert "truncated" in assert_refused_naming(cut)


def test_text_file_named_png_is_refused(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    assert "not an image" in assert_refused_naming(path)


def test_zero_byte_file_is_refused(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert "empty" in assert_refused_naming(path)


@pytest.mark.parametrize("side", [50000, 10000])  # over twice the limit (Pillow error) / over it (warning)
def test_decompression_bomb_header_is_refused_without_changing_the_limit(tmp_path, side):
    limit_before = Image.MAX_IMAGE_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_declared_size(side, side))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning may escape
        assert "too large" in assert_refused_naming(path)
    assert Image.MAX_IMAGE_PIXELS == limit_before


def test_missing_file_and_folder_are_refused(tmp_path):
    assert "not found" in assert_refused_naming(tmp_path / "gone.png")
    folder = tmp_path / "folder.png"
    folder.mkdir()
    assert "folder" in assert_refused_naming(folder)


def test_bad_file_in_the_middle_of_a_batch_does_not_stop_the_others(tmp_path):
    first = write_image(tmp_path / "a.png", uniform_rgb())
    bad = tmp_path / "b.png"
    bad.write_text("garbage")
    last = write_image(tmp_path / "c.png", uniform_rgb())
    images, errors = load_images([first, bad, last])
    assert [image.path for image in images] == [first, last]
    assert len(errors) == 1 and errors[0].path == bad and str(errors[0]).startswith("b.png: ")


# --- masks -------------------------------------------------------------------------------------------


def test_mask_beside_an_image_is_loaded_as_non_zero_is_object(tmp_path):
    path = write_image(tmp_path / "bird.jpg", uniform_rgb())
    mask_values = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask_values[5:15, 10:20] = 3
    write_image(tmp_path / "bird.mask.png", mask_values)
    image = load_image(path)
    assert image.mask.dtype == bool and image.mask.shape == (HEIGHT, WIDTH)
    assert image.mask.sum() == 100 and image.mask[5:15, 10:20].all()


def test_mask_of_another_size_is_refused_naming_the_mask(tmp_path):
    path = write_image(tmp_path / "bird.png", uniform_rgb())
    write_image(tmp_path / "bird.mask.png", np.zeros((HEIGHT + 1, WIDTH), np.uint8))
    with pytest.raises(ImageError, match=r"^bird\.mask\.png: ") as caught:
        load_image(path)
    assert "40×31" in str(caught.value) and "bird.png" in str(caught.value)


def test_collect_image_paths_recurses_skips_masks_and_other_files_and_sorts_naturally(tmp_path):
    for name in ["img10.png", "img2.png", "sub/img1.jpg", "img2.mask.png", "readme.txt", ".hidden.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = collect_image_paths([tmp_path, tmp_path / "img2.png"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["img2.png", "img10.png", "sub/img1.jpg"]
    assert collect_image_paths([tmp_path]) == found


# --- model inputs ------------------------------------------------------------------------------------


def test_to_tensor_of_a_uniform_image_gives_exact_normalised_values():
    colour = (255, 128, 0)
    preprocessing = Preprocessing(input_size=16, resize=20)
    tensor = to_tensor(uniform_rgb(colour, width=50, height=30), preprocessing)
    assert tensor.shape == (3, 16, 16) and tensor.dtype == torch.float32
    for channel in range(3):
        expected = (colour[channel] / 255.0 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        assert torch.allclose(tensor[channel], torch.full((16, 16), expected), atol=1e-5)


def test_to_tensor_matches_torchvision_resize_centre_crop_normalise():
    rgb = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for preprocessing in [Preprocessing(input_size=24, resize=28), Preprocessing(input_size=24, resize=None)]:
        reference = torch.from_numpy(rgb).permute(2, 0, 1).float()
        size = preprocessing.resize or [preprocessing.input_size] * 2
        reference = TF.resize(reference, size, antialias=True)
        reference = TF.center_crop(reference, [preprocessing.input_size] * 2) / 255.0
        reference = TF.normalize(reference, list(preprocessing.mean), list(preprocessing.std))
        assert torch.allclose(to_tensor(rgb, preprocessing), reference, atol=1e-5)


def test_to_batch_stacks_images_and_handles_an_empty_list():
    preprocessing = Preprocessing(input_size=8, resize=None)
    images = [uniform_rgb(), uniform_rgb((0, 0, 0), width=12, height=50),
              np.random.default_rng(0).integers(0, 256, (30, 20, 3), dtype=np.uint8)]
    batch = to_batch(images, preprocessing)
    assert batch.shape == (3, 3, 8, 8)
    for row, image in zip(batch, images):
        assert torch.equal(row, to_tensor(image, preprocessing))  # the batch's one normalisation = each image's
    rng = np.random.default_rng(1)
    for resize in (None, 8, 10):  # images already at the input size: the batch's one conversion
        at_size = Preprocessing(input_size=8, resize=resize, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
        images = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(4)]
        batch = to_batch(images, at_size)
        for row, image in zip(batch, images):
            assert torch.equal(row, to_tensor(image, at_size)), resize
        assert batch.is_contiguous()
    assert to_batch([], preprocessing).shape == (0, 3, 8, 8)


@pytest.mark.parametrize("resize", [40, None])
def test_display_image_and_transformed_mask_line_up_with_the_model_input(resize):
    rgb = uniform_rgb((0, 0, 0), width=120, height=80)
    mask = np.zeros((80, 120), bool)
    rgb[20:50, 70:100] = 255
    mask[20:50, 70:100] = True
    preprocessing = Preprocessing(input_size=32, resize=resize, mean=(0.5,) * 3, std=(0.5,) * 3)
    shown = display_image(rgb, preprocessing)
    shown_mask = transform_mask(mask, preprocessing)
    assert shown.shape == (32, 32, 3) and shown.dtype == np.uint8
    assert shown_mask.shape == (32, 32) and shown_mask.dtype == bool
    bright = shown[..., 0] > 127
    assert shown_mask.sum() > 20
    assert (bright & shown_mask).sum() / (bright | shown_mask).sum() > 0.85
    model_input = to_tensor(rgb, preprocessing)
    assert np.allclose(shown / 255.0 * 2 - 1, model_input.permute(1, 2, 0).numpy(), atol=1 / 255 + 1e-6)


@pytest.mark.parametrize("height,width", [(1, 5000), (5000, 1), (10, 600)])
def test_too_elongated_images_are_refused_before_any_resize(tmp_path, height, width, monkeypatch):
    path = tmp_path / "strip.png"
    Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(path)
    image = load_image(path)
    preset = Preprocessing(input_size=224, resize=256)
    monkeypatch.setattr(torch.nn.functional, "interpolate", lambda *a, **k: pytest.fail("resized anyway"))
    for convert in (to_tensor, display_image):
        with pytest.raises(ImageError, match=r"^strip\.png: aspect ratio .* exceeds 50:1; the resize would need "
                                             r"[\d,]+ pixels; crop or pad the image first"):
            convert(image, preset)
    with pytest.raises(ImageError, match=r"^image: aspect ratio"):
        to_tensor(image.rgb, preset)
    with pytest.raises(ImageError, match=r"^mask: aspect ratio"):
        transform_mask(np.zeros((height, width), dtype=bool), preset)


def test_a_resize_beyond_the_pixel_budget_is_refused_and_an_ordinary_one_is_not():
    rgb = np.zeros((40, 1000, 3), dtype=np.uint8)  # 25:1, within the aspect limit
    with pytest.raises(ImageError, match=r"^image: the resize of this 1000×40 image would need 104,857,600 pixels"):
        to_tensor(rgb, Preprocessing(input_size=32, resize=2048))
    assert to_tensor(rgb, Preprocessing(input_size=224, resize=256)).shape == (3, 224, 224)
    assert to_tensor(np.zeros((1, 50, 3), dtype=np.uint8), Preprocessing(input_size=32)).shape == (3, 32, 32)


def _tuple_natural_key(path):
    """The natural order written out as nested tuples (numbers before text, by value; casefolded text)."""
    parts = tuple(tuple((0, int(tok), "") if tok.isdigit() else (1, 0, tok)
                        for tok in re.split(r"(\d+)", part.casefold()) if tok)
                  for part in path.parts)
    return parts, str(path)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.text(alphabet="aAbZ09_-. 7٠١", min_size=1, max_size=6), min_size=1, max_size=3),
                min_size=2, max_size=12))
def test_natural_path_key_sorts_as_the_tuple_of_tokens(names):
    from kdx_engine.data.images import natural_path_key

    paths = [Path(*parts) for parts in names]
    assert sorted(paths, key=natural_path_key) == sorted(paths, key=_tuple_natural_key)
