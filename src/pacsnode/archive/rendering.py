"""Turning a stored image into a picture a browser can show: the rendered and thumbnail
resources of DICOMweb and WADO-URI share this, and it knows nothing of HTTP.

One frame goes through the grayscale pipeline of PS3.4 N.2 (Modality LUT, VOI LUT,
MONOCHROME1 inversion) or is made RGB (palette; pydicom's decoders already turn YBR
into RGB), is cut to the requested source
region and scaled into the viewport (PS3.18 §8.3.5.1.3), then encoded by Pillow.
pydicom does the pixel work; only the last step to 8 bits is ours.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import DataElement, Dataset, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    apply_windowing,
    as_pixel_options,
    get_decoder,
)
from pydicom.pixels.decoders.base import Decoder
from pydicom.uid import UID

MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif")
"""What :func:`render` writes, the default first."""
WINDOW_FUNCTIONS = ("linear", "linear_exact", "sigmoid")
THUMBNAIL_SIZE = (128, 128)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PIXEL_DATA = 0x7FE00010
_LEFT_IN_FILE = 4096
"""Values larger than this stay in the file until used (see :func:`open_image`)."""
_FRAME_TRANSFORMS = ("PixelValueTransformationSequence", "FrameVOILUTSequence")
"""Functional groups that hold an enhanced multi-frame object's rescale and window."""
_PILLOW_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF"}


class RenderError(ValueError):
    """Why an object, frame or option cannot be rendered; the subclass says whose fault."""


class NotRenderable(RenderError):
    """The object has no picture to give: no pixel data, or pixels that cannot be
    decoded or shown (a photometric interpretation or compression not handled)."""


class NoSuchFrame(RenderError):
    """The object has fewer frames than the one asked for."""


class InvalidOption(RenderError):
    """A rendering option makes no sense, alone or for this image."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        """``"window"``, ``"viewport"``, ``"region"`` or ``"quality"``: each door names
        its own query parameter from it."""


@dataclass(frozen=True)
class Region:
    """A source region in pixels (PS3.18 §8.3.5.1.3 ``sx,sy,sw,sh``).

    ``None`` takes the default: the left or top edge for ``x``/``y``, up to the right or
    bottom edge for the sizes. A negative size takes the pixels left of (above) ``x``
    (``y``) and mirrors them, which is how PS3.18 asks for a flipped image.
    """

    x: int | None = None
    y: int | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class RenderOptions:
    media_type: str = "image/jpeg"
    window: tuple[float, float, str] | None = None
    """Center, width and function (one of :data:`WINDOW_FUNCTIONS`), in the units the
    Modality LUT gives (Hounsfield units for CT); overrides the object's own window."""
    viewport: tuple[int | None, int | None] | None = None
    """Width and height the image is scaled to fit, keeping its aspect ratio; ``None``
    for one of them (WADO-URI ``rows`` or ``columns`` alone) leaves it free."""
    region: Region | None = None
    quality: int = 90
    """JPEG quality, 1 to 100; PNG and GIF are lossless and ignore it."""

    def __post_init__(self) -> None:
        if self.media_type not in MEDIA_TYPES:
            raise ValueError(f"cannot write {self.media_type}")
        if not 1 <= self.quality <= 100:
            raise InvalidOption("quality", "quality must be from 1 to 100")
        if self.window is not None:
            _check_window(*self.window)
        if self.viewport is not None and any(
            size is not None and size < 1 for size in self.viewport
        ):
            raise InvalidOption("viewport", "the viewport's width and height must be positive")


def _check_window(center: float, width: float, function: str) -> None:
    """PS3.3 C.11.2.1.2: LINEAR needs a width of at least 1, the others more than 0."""
    if function not in WINDOW_FUNCTIONS:
        raise InvalidOption("window", f"the window function must be one of {WINDOW_FUNCTIONS}")
    if not (np.isfinite(center) and np.isfinite(width)):
        raise InvalidOption("window", "the window center and width must be numbers")
    if width < 1 if function == "linear" else width <= 0:
        limit = "at least 1" if function == "linear" else "more than 0"
        raise InvalidOption("window", f"a {function} window's width must be {limit}")


def frame_count(dataset: Dataset) -> int:
    try:
        return int(dataset.get("NumberOfFrames") or 1)
    except (TypeError, ValueError) as exc:
        raise NotRenderable(f"Number of Frames {dataset.NumberOfFrames!r} is not a number") from exc


def open_image(path: Path, transfer_syntax: str) -> Dataset:
    """The stored object with its pixel data left in the file, so that rendering
    frame 900 of a cine reads that frame and not the whole pixel data."""
    dataset = dcmread(path, force=True, defer_size=_LEFT_IN_FILE)
    dataset.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    return dataset


def render(dataset: Dataset, frame: int | None, options: RenderOptions) -> bytes:
    """One frame (1-based; ``None`` is the first) as an encoded 8-bit image."""
    index = 0 if frame is None else frame - 1
    return _encoded(_picture(dataset, index, options), options)


def thumbnail(
    dataset: Dataset, options: RenderOptions | None = None, frame: int | None = None
) -> bytes:
    """A small picture of the object; without a frame, the middle one, which shows a
    cine loop or an enhanced volume better than its first."""
    options = options or RenderOptions()
    if options.viewport is None:
        options = replace(options, viewport=THUMBNAIL_SIZE)
    index = frame_count(dataset) // 2 if frame is None else frame - 1
    return _encoded(_picture(dataset, index, options), options)


def _picture(dataset: Dataset, index: int, options: RenderOptions) -> Image.Image:
    pixels, photometric = _decoded_frame(dataset, index)
    view = _frame_view(dataset, index)
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        image = _grayscale(pixels, view, photometric, options.window)
    else:
        image = _color(pixels, view, photometric)
    image = _cropped(image, options.region)
    return _scaled(Image.fromarray(image), options.viewport)


def _decoded_frame(dataset: Dataset, index: int) -> tuple[np.ndarray, str]:
    """Only the frame asked for is decoded, so frame 900 of a cine costs one frame.

    The photometric interpretation is the decoder's: pydicom hands YBR_FULL,
    YBR_FULL_422 (native or JPEG) and JPEG 2000's YBR_ICT/YBR_RCT back as RGB.
    """
    if not any(keyword in dataset for keyword in _PIXEL_KEYWORDS):
        raise NotRenderable("the object has no pixel data")
    frames = frame_count(dataset)
    if not 0 <= index < frames:
        raise NoSuchFrame(f"frame {index + 1} asked for, the object has {frames}")
    try:
        decoder = get_decoder(dataset.file_meta.TransferSyntaxUID)
        element = dataset.get_item(_PIXEL_DATA, keep_deferred=True)
        if isinstance(element, RawDataElement) and element.value is None and dataset.filename:
            pixels, meta = _frame_from_file(dataset, element, decoder, index)
        else:
            pixels, meta = decoder.as_array(dataset, index=index)
    except (AttributeError, KeyError, NotImplementedError, RuntimeError, ValueError) as exc:
        raise NotRenderable(f"cannot decode the pixel data: {exc}") from exc
    return pixels, str(meta["photometric_interpretation"])


def _frame_from_file(
    dataset: Dataset, element: RawDataElement, decoder: Decoder, index: int
) -> tuple[np.ndarray, dict[str, str | int]]:
    """Decode from the file, positioned at the pixel data value: pydicom then reads
    that frame's bytes (or fragments) alone."""
    options = as_pixel_options(
        dataset,
        transfer_syntax_uid=dataset.file_meta.TransferSyntaxUID,
        pixel_keyword="PixelData",
        pixel_vr=element.VR,
    )
    with open(dataset.filename, "rb") as source:
        source.seek(element.value_tell)
        return decoder.as_array(source, index=index, **options)


def _frame_view(dataset: Dataset, index: int) -> Dataset:
    """The attributes that transform this frame's values: the Image Pixel, Modality LUT
    and VOI LUT attributes, with those an enhanced object keeps in its shared and then
    per-frame functional groups laid over them."""
    view = dataset.group_dataset(0x0028)
    groups = [*dataset.get("SharedFunctionalGroupsSequence", [])[:1]]
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence", [])
    if index < len(per_frame):
        groups.append(per_frame[index])
    for group in groups:
        for keyword in _FRAME_TRANSFORMS:
            if items := group.get(keyword):
                view.update(items[0])
    return view


def _grayscale(
    pixels: np.ndarray, view: Dataset, photometric: str, window: tuple[float, float, str] | None
) -> np.ndarray:
    values = apply_modality_lut(pixels, view)
    levels = _voi(values, view, window)
    if photometric == "MONOCHROME1":
        levels = 255.0 - levels
    return _bytes(levels)


def _voi(values: np.ndarray, view: Dataset, window: tuple[float, float, str] | None) -> np.ndarray:
    """Values to 0-255: the asked window, else the object's first window, else its VOI
    LUT, else the frame's own range, so that something is always visible."""
    if window is not None:
        return _windowed(values, *window)
    stored = _stored_window(view)
    if stored is not None:
        return _windowed(values, *stored)
    if "VOILUTSequence" in view:
        bits = int(view.VOILUTSequence[0].LUTDescriptor[2])
        return apply_voi(values, view).astype(np.float64) * (255 / (2**bits - 1))
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape)
    return _windowed(values, (low + high) / 2, high - low, "linear_exact")


def _stored_window(view: Dataset) -> tuple[float, float, str] | None:
    """The object's first window; one that the standard forbids counts as none."""
    if "WindowCenter" not in view or "WindowWidth" not in view:
        return None
    function = str(view.get("VOILUTFunction") or "LINEAR").lower()
    try:
        window = (_first(view["WindowCenter"]), _first(view["WindowWidth"]), function)
        _check_window(*window)
    except (InvalidOption, TypeError, ValueError):
        return None
    return window


def _first(element: DataElement) -> float:
    return float(element.value[0] if element.VM > 1 else element.value)


def _windowed(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """pydicom's PS3.3 C.11.2.1.2 windowing, told the output is 8 bits unsigned."""
    window = Dataset()
    window.PhotometricInterpretation = "MONOCHROME2"
    window.BitsStored = 8
    window.PixelRepresentation = 0
    window.WindowCenter = center
    window.WindowWidth = width
    window.VOILUTFunction = function.upper()
    return apply_windowing(values.astype(np.float64), window)


def _color(pixels: np.ndarray, view: Dataset, photometric: str) -> np.ndarray:
    if photometric == "PALETTE COLOR":
        try:
            rgb = apply_color_lut(pixels, view)
        except (AttributeError, ValueError) as exc:
            raise NotRenderable(f"cannot apply the palette: {exc}") from exc
        return _bytes_of(rgb, 8 * rgb.dtype.itemsize)
    if photometric != "RGB":
        raise NotRenderable(f"cannot render {photometric} pixel data")
    return _bytes_of(pixels, int(view.get("BitsStored") or 8 * pixels.dtype.itemsize))


def _bytes_of(samples: np.ndarray, bits: int) -> np.ndarray:
    """Color samples of more than 8 bits keep their top 8."""
    if bits > 8:
        samples = samples >> (bits - 8)
    return samples.astype(np.uint8)


def _bytes(levels: np.ndarray) -> np.ndarray:
    """Round half to even, the numpy way, so that a test can redo it exactly."""
    return np.clip(np.rint(levels), 0, 255).astype(np.uint8)


def _cropped(image: np.ndarray, region: Region | None) -> np.ndarray:
    if region is None:
        return image
    rows, columns = image.shape[:2]
    xs = _span(region.x, region.width, columns)
    ys = _span(region.y, region.height, rows)
    if xs.stop - xs.start < 1 or ys.stop - ys.start < 1:
        raise InvalidOption("region", "the source region lies outside the image")
    cropped = image[ys.start : ys.stop, xs.start : xs.stop]
    if region.width is not None and region.width < 0:
        cropped = cropped[:, ::-1]
    if region.height is not None and region.height < 0:
        cropped = cropped[::-1]
    return cropped


def _span(start: int | None, size: int | None, length: int) -> range:
    """The pixels a region takes along one axis, clipped to the image."""
    begin = start or 0
    if size is None:
        end = length
    elif size < 0:
        begin, end = begin + size, begin
    else:
        end = begin + size
    return range(max(begin, 0), min(end, length))


def _scaled(image: Image.Image, viewport: tuple[int | None, int | None] | None) -> Image.Image:
    """Fit into the viewport, keeping the aspect ratio: the image may come out smaller
    than the viewport along one side, and is enlarged when the viewport is larger."""
    if viewport is None or viewport == (None, None):
        return image
    width, height = viewport
    scale = min(
        width / image.width if width else np.inf, height / image.height if height else np.inf
    )
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS)


def _encoded(image: Image.Image, options: RenderOptions) -> bytes:
    buffer = io.BytesIO()
    if options.media_type == "image/jpeg":
        image.save(buffer, "JPEG", quality=options.quality)
    else:
        image.save(buffer, _PILLOW_FORMATS[options.media_type])
    return buffer.getvalue()
