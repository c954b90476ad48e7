"""Rendering without a server: pictures checked pixel by pixel against what the
standard's formulas give for the values pydicom decodes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ct_dataset
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

from pacsnode.archive.rendering import (
    InvalidOption,
    NoSuchFrame,
    NotRenderable,
    Region,
    RenderOptions,
    open_image,
    render,
    thumbnail,
)


def sample(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"{name} is not in pydicom's test data"
    return Path(path)


def read(name: str) -> Dataset:
    return dcmread(sample(name))


def decoded(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)))


def png(dataset: Dataset, frame: int | None = None, **options: Any) -> np.ndarray:
    return decoded(render(dataset, frame, RenderOptions("image/png", **options)))


def modality(dataset: Dataset, pixels: np.ndarray) -> np.ndarray:
    slope = float(dataset.get("RescaleSlope", 1))
    intercept = float(dataset.get("RescaleIntercept", 0))
    return pixels.astype(np.float64) * slope + intercept


def linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 onto 0-255, rounded half to even."""
    low = center - 0.5 - (width - 1) / 2
    high = center - 0.5 + (width - 1) / 2
    levels = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255
    levels = np.where(values <= low, 0, np.where(values > high, 255, levels))
    return np.rint(levels).astype(np.uint8)


def test_requested_linear_window_on_ct_is_the_standard_formula() -> None:
    ds = read("CT_small.dcm")
    picture = png(ds, window=(40.0, 400.0, "linear"))
    expected = linear(modality(ds, ds.pixel_array), 40, 400)
    assert picture.shape == (128, 128)
    assert np.array_equal(picture, expected)
    assert np.mean((expected > 0) & (expected < 255)) > 0.2  # the window shows detail


def test_linear_exact_and_sigmoid_windows() -> None:
    ds = read("CT_small.dcm")
    values = modality(ds, ds.pixel_array)
    exact = np.clip(((values - 40) / 400 + 0.5) * 255, 0, 255)
    sigmoid = 255 / (1 + np.exp(-4 * (values - 40) / 400))
    assert np.array_equal(png(ds, window=(40.0, 400.0, "linear_exact")), np.rint(exact))
    assert np.array_equal(png(ds, window=(40.0, 400.0, "sigmoid")), np.rint(sigmoid))


def test_the_objects_window_then_the_frames_range() -> None:
    ds = read("CT_small.dcm")
    values = modality(ds, ds.pixel_array)
    full_range = (values - values.min()) / (values.max() - values.min()) * 255
    assert np.abs(png(ds).astype(int) - np.rint(full_range)).max() <= 1
    ds.WindowCenter, ds.WindowWidth = ["300", "40"], ["600", "400"]
    assert np.array_equal(png(ds), linear(values, 300, 600))
    assert np.array_equal(png(ds, window=(40.0, 400.0, "linear")), linear(values, 40, 400))


def test_monochrome1_is_inverted() -> None:
    ds = read("RG3_J2KR.dcm")  # a real MONOCHROME1 radiograph, JPEG 2000 lossless
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    expected = 255 - linear(ds.pixel_array.astype(np.float64), 550, 1024)
    assert np.array_equal(png(ds), expected)
    ct = read("CT_small.dcm")
    normal = png(ct, window=(40.0, 400.0, "linear"))
    ct.PhotometricInterpretation = "MONOCHROME1"
    assert np.array_equal(png(ct, window=(40.0, 400.0, "linear")), 255 - normal)


def test_signed_pixels_with_fewer_bits_stored_than_allocated() -> None:
    """12 of 16 bits, signed: the 4 bits above are noise that must not show."""
    values = np.linspace(-2048, 2047, 16 * 16).astype(np.int16).reshape(16, 16)
    stored = (values.astype(np.uint16) & 0x0FFF) | 0xA000
    ds = ct_dataset(PixelData=stored.tobytes(), PixelRepresentation=1, RescaleSlope=2)
    ds.RescaleIntercept = -10
    expected = linear(values * 2.0 - 10, 0, 4000)
    assert np.array_equal(png(ds, window=(0.0, 4000.0, "linear")), expected)


def test_voi_lut_sequence() -> None:
    ds = read("vlut_04.dcm")
    lut = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float64)
    expected = np.rint(lut[ds.pixel_array] * 255 / 65535)
    assert np.array_equal(png(ds), expected)


def test_window_of_an_enhanced_object_comes_from_its_functional_groups() -> None:
    ds = read("eCT_Supplemental.dcm")  # window 49/102, intercept -1024, shared groups only
    assert "WindowCenter" not in ds and "RescaleIntercept" not in ds
    values = ds.pixel_array[1].astype(np.float64) - 1024
    assert np.array_equal(png(ds, 2), linear(values, 49, 102))


def test_palette_color_becomes_rgb() -> None:
    ds = read("OBXXXX1A.dcm")
    first = ds.RedPaletteColorLookupTableDescriptor[1]
    index = np.clip(ds.pixel_array.astype(int) - first, 0, 255)
    channels = [
        np.frombuffer(ds[f"{color}PaletteColorLookupTableData"].value, "<u2")[index] >> 8
        for color in ("Red", "Green", "Blue")
    ]
    assert np.array_equal(png(ds), np.stack(channels, axis=-1))


@pytest.mark.parametrize(
    ("name", "mean_difference"),
    [("SC_ybr_full_uncompressed.dcm", 1), ("SC_rgb_dcmtk_+eb+cy+np.dcm", 4)],
)
def test_ybr_becomes_the_rgb_it_was_made_from(name: str, mean_difference: float) -> None:
    """The YBR_FULL file and the JPEG (YBR_FULL_422) one are made from the RGB test
    pattern of ten colour bands; YBR rounding and chroma subsampling cost a little."""
    original = read("SC_rgb.dcm").pixel_array.astype(int)
    picture = png(read(name)).astype(int)
    assert picture.shape == original.shape == (100, 100, 3)
    assert np.abs(picture - original).mean() <= mean_difference
    band_centres = (slice(5, 100, 10), 50)
    assert np.abs(picture[band_centres] - original[band_centres]).max() <= 6


def test_a_frame_of_a_multiframe_object() -> None:
    path = sample("emri_small_jpeg_2k_lossless.dcm")
    ds = dcmread(path)
    frames = ds.pixel_array.astype(np.float64)
    options = {"window": (600.0, 1200.0, "linear")}
    seventh = png(ds, 7, **options)
    assert np.array_equal(seventh, linear(frames[6], 600, 1200))
    assert not np.array_equal(seventh, png(ds, 1, **options))
    assert np.array_equal(png(ds, None, **options), png(ds, 1, **options))
    with pytest.raises(NoSuchFrame):
        png(ds, 11)
    with pytest.raises(NoSuchFrame):
        png(ds, 0)


@pytest.mark.parametrize(
    "name", ["emri_small_jpeg_2k_lossless.dcm", "emri_small_big_endian.dcm", "rtdose.dcm"]
)
def test_pixel_data_left_in_the_file_renders_the_same(name: str) -> None:
    path = sample(name)
    in_memory = dcmread(path)
    from_file = open_image(path, in_memory.file_meta.TransferSyntaxUID)
    assert from_file.get_item(0x7FE00010, keep_deferred=True).value is None
    options = RenderOptions("image/png")
    assert render(from_file, 3, options) == render(in_memory, 3, options)


def test_viewport_fits_the_image_keeping_its_aspect_ratio() -> None:
    ds = read("OBXXXX1A.dcm")  # 800 x 600
    assert png(ds, viewport=(200, 200)).shape == (150, 200, 3)
    assert png(ds, viewport=(1600, 2000)).shape == (1200, 1600, 3)
    assert png(ds, viewport=(None, 60)).shape == (60, 80, 3)


def test_source_region_is_cut_then_scaled_and_flipped_when_negative() -> None:
    ds = read("CT_small.dcm")
    window = (40.0, 400.0, "linear")
    whole = png(ds, window=window)
    region = png(ds, window=window, viewport=(50, 40), region=Region(10, 20, 50, 40))
    assert np.array_equal(region, whole[20:60, 10:60])
    flipped = png(ds, window=window, viewport=(50, 40), region=Region(60, 20, -50, 40))
    assert np.array_equal(flipped, whole[20:60, 10:60][:, ::-1])
    assert png(ds, window=window, viewport=(100, 100), region=Region(10, 20, 50, 40)).shape == (
        80,
        100,
    )
    with pytest.raises(InvalidOption) as error:
        png(ds, viewport=(10, 10), region=Region(500, 500, 10, 10))
    assert error.value.parameter == "region"


def test_jpeg_quality_and_gif() -> None:
    ds = read("CT_small.dcm")
    low = render(ds, None, RenderOptions("image/jpeg", quality=10))
    high = render(ds, None, RenderOptions("image/jpeg", quality=95))
    assert low[:2] == high[:2] == b"\xff\xd8"
    assert len(low) < len(high)
    assert np.abs(decoded(high).astype(int) - png(ds).astype(int)).mean() < 2
    gif = Image.open(io.BytesIO(render(ds, None, RenderOptions("image/gif"))))
    assert gif.format == "GIF"
    assert np.array_equal(np.asarray(gif.convert("L")), png(ds))


def test_thumbnail_is_a_small_jpeg_of_the_middle_frame() -> None:
    ds = read("emri_small_jpeg_2k_lossless.dcm")  # 10 frames of 64 x 64
    small = Image.open(io.BytesIO(thumbnail(ds)))
    assert small.format == "JPEG" and small.size == (128, 128)
    middle = RenderOptions("image/png", viewport=(32, 32))
    assert thumbnail(ds, middle) == render(ds, 6, middle)
    assert thumbnail(ds, middle, frame=2) == render(ds, 2, middle)


def test_what_cannot_be_rendered() -> None:
    no_pixels = ct_dataset()
    del no_pixels.PixelData
    with pytest.raises(NotRenderable):
        render(no_pixels, None, RenderOptions())
    odd = ct_dataset(SamplesPerPixel=3, PhotometricInterpretation="HSV", PlanarConfiguration=0)
    odd.BitsAllocated = odd.BitsStored = 8
    odd.HighBit = 7
    odd.PixelData = bytes(16 * 16 * 3)
    odd.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    with pytest.raises(NotRenderable):
        render(odd, None, RenderOptions())


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"window": (40.0, 0.5, "linear")}, "window"),
        ({"window": (40.0, 0.0, "sigmoid")}, "window"),
        ({"window": (40.0, 10.0, "cubic")}, "window"),
        ({"quality": 0}, "quality"),
        ({"quality": 101}, "quality"),
        ({"viewport": (0, 10)}, "viewport"),
    ],
)
def test_options_that_make_no_sense(options: dict[str, Any], parameter: str) -> None:
    with pytest.raises(InvalidOption) as error:
        RenderOptions(**options)
    assert error.value.parameter == parameter
