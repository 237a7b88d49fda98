"""Turn any picture of one handwritten digit into the 28x28 input an MNIST model expects.

A model trained on MNIST has only ever seen digits preprocessed the way MNIST's authors did
it (LeCun, Cortes and Burges, http://yann.lecun.com/exdb/mnist/): "The original black and
white (bilevel) images from NIST were size normalized to fit in a 20x20 pixel box while
preserving their aspect ratio. The resulting images contain grey levels as a result of the
anti-aliasing technique used by the normalization algorithm. The images were centered in a
28x28 image by computing the center of mass of the pixels, and translating the image so as
to position this point at the center of the 28x28 field." Squashing a whole 800x600 canvas
to 28x28 instead leaves a small off-centre digit as a faint smudge in a corner, which the
model has never seen, so `to_mnist` repeats MNIST's steps:

1. Transparency is composited over white, from the alpha channel (or a palette's
   transparency). When the border is transparent the picture is ink on a transparent
   sheet, as drawing apps export it, and the digit is read from alpha alone: the colour
   channels there are meaningless (all black, white for a dark theme, or junk).
2. The picture becomes greyscale. The background level is the median of the outer ring of
   pixels (robust to ink touching the edge); when the ink is darker than the background
   the picture is inverted, so the digit is light on dark like MNIST's.
3. The background level is removed, and ink below a threshold is dropped (see
   `_ink`), so paper texture, sensor noise, JPEG ringing and a grey or tinted
   background do not count as ink; the rest is scaled so the stroke core is 1.0.
4. The picture is cropped to the ink's bounding box.
5. The longer side is scaled to 20 pixels keeping the aspect ratio, with an area-averaging
   (anti-aliasing) filter. NIST's digits were scanned pen strokes that are about a tenth of
   the digit's height thick, so MNIST's strokes are 2-3 pixels wide. A digit drawn with a
   3-pixel pen on a large canvas would shrink to a faint hairline, so strokes thinner than
   MNIST's are first thickened to MNIST's proportion (see `_normalise_strokes`).
6. The 20x20 box is pasted into 28x28 at the whole-pixel offset that puts the ink's centre
   of mass at (14, 14), as measured on MNIST itself, clamped so nothing of the box is cut.

Only NumPy and Pillow are used. `read_image` opens image bytes safely (Pillow's
decompression-bomb checks are errors) and reports every failure as an
`nnframe.errors.InputError` naming the file.
"""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError, NNFrameError

if TYPE_CHECKING:
    from PIL.Image import Image

SIZE = 28  # MNIST's image side
BOX = 20  # the longer side of the digit in MNIST
CENTRE = 14.0  # where MNIST's centre of mass lies (pixel indices 0..27; measured on MNIST)
# Stroke width / longer side of the ink box, as in MNIST: the median of the estimator in
# _stroke_width over MNIST test digits enlarged to 40-400 pixels is 0.10-0.11 (10% of them
# are below 0.07-0.08, 10% above 0.15-0.16); 0.10 is 2 pixels of the 20-pixel box.
STROKE_RATIO = 0.10
WORK = 80  # side of the intermediate grid on which strokes are measured and thickened
MIN_CONTRAST = 0.05  # ink must differ from the background by 5% of the full range
NOISE_SIGMAS = 6.0  # and by six standard deviations of the border's noise
PEAK_FRACTION = 0.25  # and by a quarter of the stroke core's level
PIXELS_LIMIT = 50_000_000  # decoded pixels; below Pillow's own bomb warning (89,478,485)


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise NNFrameError("reading images needs Pillow: pip install 'nnframe[images]'") \
            from None
    return Image


def read_image(data: bytes, name: str) -> Image:
    """Open image bytes (PNG, JPEG, ... anything Pillow reads) and load them fully.

    Every failure is an `InputError` naming ``name``: bytes that are not an image, a
    damaged or truncated file, and an image so large it could exhaust memory (Pillow's
    decompression-bomb warning is treated as an error too, and an image declaring more than
    ``PIXELS_LIMIT`` pixels is refused before it is decoded).
    """
    pil = _pil()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pil.DecompressionBombWarning)
            image = pil.open(io.BytesIO(data))
            width, height = image.size
            if width * height > PIXELS_LIMIT:
                raise InputError(f"{name!r} declares {width:,}x{height:,} pixels, more than "
                                 f"{PIXELS_LIMIT:,}; it looks like a decompression bomb and "
                                 "was not decoded. Scale the image down (a digit needs no "
                                 "more than a few hundred pixels).")
            image.load()
    except (pil.DecompressionBombError, pil.DecompressionBombWarning) as exc:
        raise InputError(f"{name!r} is too large to read safely: it looks like a "
                         f"decompression bomb ({exc}). Scale the image down (a digit needs no "
                         "more than a few hundred pixels).") from None
    except InputError:
        raise
    except pil.UnidentifiedImageError:
        raise InputError(f"{name!r} is not an image Pillow can read; give a PNG or JPEG "
                         "file.") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error) as exc:
        raise InputError(f"{name!r} is a damaged or truncated image ({exc}); export it "
                         "again as PNG or JPEG.") from None
    return image


def to_mnist(image: Image) -> np.ndarray:
    """The digit in ``image`` as MNIST shows digits: float32 (28, 28) in [0, 1], white on black.

    ``image`` is a ``PIL.Image.Image`` of any mode. Raises `InputError` when the
    image holds no digit (it is all one colour, or only noise).
    """
    if not callable(getattr(image, "getbands", None)):
        raise InputError(f"to_mnist takes a PIL.Image.Image, not {type(image).__name__}; "
                         "open the file with nnframe.images.read_image.")
    if image.width == 0 or image.height == 0:
        raise InputError("no digit was found in the image: it has no pixels.")
    grey = _greyscale(image)
    ink = _ink(grey)
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    box = _to_box(_normalise_strokes(ink))
    return _centre(box)


# -- 1 and 2: greyscale over white, light digit on dark --------------------------------------
def _greyscale(image: Image) -> np.ndarray:
    """Float32 greyscale in [0, 1] with transparency composited over white."""
    _pil()
    from PIL import ImageOps

    # Phone photos: upright as the user saw them; with unreadable EXIF, the pixels as stored.
    with contextlib.suppress(ValueError, TypeError, KeyError, OSError, SyntaxError,
                             struct.error):
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    has_alpha = "A" in image.getbands() or "a" in image.getbands() or (
        mode in ("P", "L", "RGB", "1") and "transparency" in image.info)
    if has_alpha:
        if mode == "La":  # premultiplied grey: Pillow converts it only to LA
            image = image.convert("LA")
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / np.float32(255)
        alpha = rgba[..., 3]
        if np.median(_ring(alpha)) < 0.5:
            # Ink on a transparent sheet, as drawing apps export it: the digit is where the
            # sheet is opaque, whatever the colour there (often black, or white for a dark
            # theme, or left undefined), so it is read from alpha alone, as dark on white.
            return 1.0 - alpha
        # An opaque picture (perhaps with transparent corners): composite over white.
        luma = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return luma * alpha + (1.0 - alpha)
    if mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float32) / np.float32(65535)
    if mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        top = 1.0 if mode == "F" else 255.0
        if values.max(initial=0.0) > top:
            top = 65535.0 if values.max() <= 65535 else float(values.max())
        return np.clip(values / top, 0.0, 1.0).astype(np.float32)
    if mode != "L":
        try:
            image = image.convert("L")
        except ValueError:  # a mode with no direct route to L (e.g. HSV, LAB)
            image = image.convert("RGB").convert("L")
    return np.asarray(image, dtype=np.float32) / np.float32(255)


def _ring(values: np.ndarray) -> np.ndarray:
    return np.concatenate([values[0], values[-1], values[1:-1, 0], values[1:-1, -1]])


# -- 3: ink above the background -------------------------------------------------------------
def _ink(grey: np.ndarray) -> np.ndarray:
    """Ink strength in [0, 1] (1 is the stroke core), zero wherever there is no ink.

    The threshold is the largest of three levels, each guarding against one kind of
    false ink:
    - ``MIN_CONTRAST`` of the full range: a flat image, or one with a few levels of
      dithering or compression noise, holds no digit;
    - ``NOISE_SIGMAS`` times the noise of the border (its median absolute deviation, a
      robust standard deviation): on a canvas of a million noisy pixels the largest noise
      value is about 5 sigmas, so 6 keeps paper texture and sensor noise out of the
      bounding box, which a single stray pixel would otherwise stretch;
    - ``PEAK_FRACTION`` of the stroke core's level: faint smudges, JPEG ringing and a light
      pencil guideline are much weaker than the strokes, whatever the contrast.
    Ink below the threshold is set to 0; the rest is divided by the stroke core's level
    (the 90th percentile of the strong ink, not the single brightest pixel, which may be
    noise) and capped at 1. Dividing rather than stretching from the threshold keeps a
    half-covered edge pixel at 0.5, so the strokes keep their weight: the same digit
    saved bilevel or anti-aliased reads nearly the same.
    """
    ring = _ring(grey)
    background = float(np.median(ring))
    # Ink is whichever side of the background reaches further (noise reaches both sides
    # about equally): dark ink on light or mid-grey paper is inverted to MNIST's light on
    # dark. A mid-grey background with lighter ink is left as it is.
    if background - float(grey.min()) > float(grey.max()) - background:
        ink = np.subtract(np.float32(background), grey, dtype=np.float32)
        ring = background - ring
    else:
        ink = np.subtract(grey, np.float32(background), dtype=np.float32)
        ring = ring - background
    noise = 1.4826 * float(np.median(np.abs(ring)))
    peak = float(ink.max(initial=0.0))
    floor = max(MIN_CONTRAST, NOISE_SIGMAS * noise)
    if peak <= floor:
        raise InputError("no digit was found in the image: it is all one colour (or only "
                         "noise). Give a picture of one digit, dark on light or light on "
                         "dark.")
    core = float(np.percentile(ink[ink > 0.5 * peak], 90))
    threshold = max(floor, PEAK_FRACTION * core)
    ink[ink < threshold] = 0.0
    ink *= np.float32(1.0 / core)
    return np.clip(ink, 0.0, 1.0, out=ink)


# -- 5: strokes as thick as MNIST's, then 20 pixels on the longer side -----------------------
def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary image: twice the area over the perimeter.

    A stroke of width w and length l has area w*l and perimeter about 2*l. The perimeter
    is counted as pixel edges between ink and background, which overcounts a curve's
    length by 4/pi on average over directions, hence the correction.
    """
    padded = np.pad(mask, 1)
    edges = (np.count_nonzero(padded[1:] != padded[:-1])
             + np.count_nonzero(padded[:, 1:] != padded[:, :-1]))
    if edges == 0:
        return 0.0
    return 2.0 * np.count_nonzero(mask) / (edges * np.pi / 4)


def _max_pool(values: np.ndarray, k: int) -> np.ndarray:
    """Shrink by ``k`` keeping each block's strongest ink, so no stroke can vanish."""
    h, w = values.shape
    padded = np.pad(values, ((0, -h % k), (0, -w % k)))
    return padded.reshape(padded.shape[0] // k, k, padded.shape[1] // k, k).max(axis=(1, 3))


def _dilate(values: np.ndarray, steps: int) -> np.ndarray:
    """Grey dilation by a near-disc of radius ``steps``: 3x3 squares and crosses in turn."""
    out = np.pad(values, steps)
    for step in range(steps):
        grown = out.copy()
        np.maximum(grown[1:], out[:-1], out=grown[1:])
        np.maximum(grown[:-1], out[1:], out=grown[:-1])
        np.maximum(grown[:, 1:], out[:, :-1], out=grown[:, 1:])
        np.maximum(grown[:, :-1], out[:, 1:], out=grown[:, :-1])
        if step % 2 == 0:  # the diagonals too: a square; alternating with the cross above
            np.maximum(grown[1:, 1:], out[:-1, :-1], out=grown[1:, 1:])
            np.maximum(grown[1:, :-1], out[:-1, 1:], out=grown[1:, :-1])
            np.maximum(grown[:-1, 1:], out[1:, :-1], out=grown[:-1, 1:])
            np.maximum(grown[:-1, :-1], out[1:, 1:], out=grown[:-1, :-1])
        out = grown
    return out


def _normalise_strokes(ink: np.ndarray) -> np.ndarray:
    """The cropped ink on a grid of about ``WORK`` pixels, strokes at least MNIST-thick.

    A large digit is first shrunk by max-pooling, which keeps a hairline at full strength
    (averaging would fade it to nothing). Its stroke width is then measured relative to
    the digit's size and, when thinner than MNIST's ``STROKE_RATIO``, the strokes are
    dilated to that width: like a thicker pen, which is what NIST's writers used. Thicker
    strokes than MNIST's are left alone: MNIST itself has bold digits.
    """
    k = max(1, -(-max(ink.shape) // WORK))
    work = _max_pool(ink, k) if k > 1 else ink
    width = _stroke_width(work >= 0.5)
    target = STROKE_RATIO * max(work.shape)
    steps = round((target - width) / 2)
    if steps > 0:
        work = _dilate(work, steps)
    return work


def _to_box(work: np.ndarray) -> np.ndarray:
    """Scale so the longer side is ``BOX`` pixels, keeping the aspect ratio, anti-aliased."""
    pil = _pil()
    h, w = work.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # BOX averages the source pixels each target pixel covers: the anti-aliasing MNIST's
    # bilevel digits got. Enlarging a tiny digit needs interpolation instead.
    resample = pil.Resampling.BOX if scale < 1 else pil.Resampling.BILINEAR
    image = pil.fromarray(np.ascontiguousarray(work, dtype=np.float32))  # mode F
    box = np.asarray(image.resize(size, resample), dtype=np.float32)
    return np.clip(box, 0.0, 1.0)


# -- 6: centre of mass at the centre ---------------------------------------------------------
def _centre(box: np.ndarray) -> np.ndarray:
    h, w = box.shape
    mass = float(box.sum())
    if mass <= 0.0:
        raise InputError("no digit was found in the image: its ink vanished when scaled "
                         "down. Give a picture of one digit, dark on light or light on dark.")
    rows, cols = np.arange(h), np.arange(w)
    cy = float(box.sum(axis=1) @ rows) / mass
    cx = float(box.sum(axis=0) @ cols) / mass
    top = min(max(round(CENTRE - cy), 0), SIZE - h)
    left = min(max(round(CENTRE - cx), 0), SIZE - w)
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    out[top:top + h, left:left + w] = box
    return out
