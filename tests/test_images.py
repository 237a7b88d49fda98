"""nnframe.images: real-looking pictures of MNIST digits read back as MNIST would show them.

The pictures are generated: MNIST test digits drawn small and off-centre on large, noisy,
slightly tinted paper, saved as RGB PNG, greyscale PNG, transparent RGBA PNG (ink only in
alpha) and JPEG. A model trained on MNIST must classify them about as well as the clean
digits, which the old squash-and-invert reading did not.
"""

from __future__ import annotations

import io
import struct
import sys
import warnings
import zlib

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image, ImageDraw  # noqa: E402

import nnframe  # noqa: E402
from nnframe.datasets import MNISTSampleWarning, load_mnist, load_sample  # noqa: E402
from nnframe.errors import DataError, InputError, NNFrameError  # noqa: E402
from nnframe.images import read_image, to_mnist  # noqa: E402

N_DIGITS = 200  # per format
CANVASES = ((800, 600), (300, 400))  # (width, height)
FORMATS = ("rgb-png", "grey-png", "rgba-png", "jpeg")


# -- data and model, once per module ---------------------------------------------------------
@pytest.fixture(scope="module")
def mnist():
    try:
        return load_mnist(download_missing=False, fallback=False)
    except DataError:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MNISTSampleWarning)
                return load_sample()
        except DataError as exc:
            pytest.skip(f"no MNIST data: {exc}")


@pytest.fixture(scope="module")
def model(mnist):
    network = nnframe.NeuralNetwork(3, [784, 128, 10], [None, "relu", "softmax"],
                                    "cross_entropy", seed=0)
    # 30,000 rows for 2 epochs of full MNIST (about 92% on the test digits), or the whole
    # 4,000-row sample for longer: a few seconds either way.
    rows = min(len(mnist.x_train), 30_000)
    epochs = 2 if rows >= 30_000 else 15
    network.train(128, mnist.x_train[:rows], mnist.y_train[:rows], epochs, 0.3, seed=0)
    return network


def _picked(mnist) -> np.ndarray:
    """N_DIGITS test digits spread over the test set (the sample's is sorted by digit)."""
    return np.arange(N_DIGITS) * (len(mnist.x_test) // N_DIGITS)


def _accuracy(model, rows: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(model.predict_classes(rows.astype(np.float32)) == labels))


# -- drawing ---------------------------------------------------------------------------------
def _coverage(digit: np.ndarray, size: int) -> np.ndarray:
    """An MNIST digit (28x28 in [0, 1]) enlarged to ``size`` pixels: ink coverage in [0, 1]."""
    image = Image.fromarray(np.round(digit * 255).astype(np.uint8))
    big = image.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(big, dtype=np.float64) / 255.0


class Painter:
    """Draws digits on light, slightly tinted, noisy paper.

    A few sheets of paper per canvas size are made once; each picture pastes the digit
    into a copy of one, which keeps generating 800 pictures to a few seconds.
    """

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.sheets = {c: [self._sheet(c) for _ in range(3)] for c in CANVASES}

    def _sheet(self, canvas: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(paper as RGB uint8, ink colour in [0, 1]^3): tinted paper, Gaussian noise."""
        width, height = canvas
        paper = self.rng.uniform(0.82, 0.97) + self.rng.uniform(-0.03, 0.03, 3)
        ink = self.rng.uniform(0.05, 0.25) + self.rng.uniform(-0.03, 0.03, 3)
        noisy = paper + self.rng.normal(0.0, self.rng.uniform(0.01, 0.03), (height, width, 3))
        return np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8), ink

    def place(self, coverage: np.ndarray, canvas: tuple[int, int]) -> np.ndarray:
        """``coverage`` pasted at a random off-centre spot of a blank (h, w) canvas."""
        width, height = canvas
        alpha = np.zeros((height, width))
        size = coverage.shape[0]
        top = int(self.rng.integers(0, height - size + 1))
        left = int(self.rng.integers(0, width - size + 1))
        alpha[top:top + size, left:left + size] = np.clip(coverage, 0.0, 1.0)
        return alpha

    def paper(self, alpha: np.ndarray) -> np.ndarray:
        """RGB uint8: dark ink of strength ``alpha`` on one of the sheets of paper."""
        height, width = alpha.shape
        sheets = self.sheets[(width, height)]
        sheet, ink = sheets[int(self.rng.integers(len(sheets)))]
        rgb = sheet.copy()
        rows, cols = np.flatnonzero(alpha.any(1)), np.flatnonzero(alpha.any(0))
        region = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        a = alpha[region][..., None]
        mixed = rgb[region] / 255.0 * (1 - a) + ink * a
        rgb[region] = np.round(np.clip(mixed, 0, 1) * 255).astype(np.uint8)
        return rgb

    def picture(self, digit: np.ndarray, canvas: tuple[int, int], fmt: str) -> bytes:
        size = int(self.rng.integers(60, 151))
        alpha = self.place(_coverage(digit, size), canvas)
        if fmt == "rgba-png":  # a drawing app's export: ink in alpha, colour channels black
            rgba = np.zeros((*alpha.shape, 4), dtype=np.uint8)
            rgba[..., 3] = np.round(alpha * 255).astype(np.uint8)
            return _encode(Image.fromarray(rgba), "PNG")
        rgb = Image.fromarray(self.paper(alpha))
        if fmt == "grey-png":
            return _encode(rgb.convert("L"), "PNG")
        if fmt == "jpeg":
            return _encode(rgb, "JPEG")
        return _encode(rgb, "PNG")


def _encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "PNG":
        image.save(out, "PNG", compress_level=0)  # stored: noise does not compress
    else:
        image.save(out, fmt, quality=85)
    return out.getvalue()


def _squash(image: Image.Image) -> np.ndarray:
    """The old reading (cli.read_digit before nnframe.images): squash the canvas to 28x28."""
    grey = image.convert("L").resize((28, 28), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float32) / 255.0
    return 1.0 - pixels if pixels.mean() > 0.5 else pixels


@pytest.fixture(scope="module")
def readings(mnist):
    """{format: (new rows, old rows)} for the picked test digits in each format."""
    painter = Painter(seed=1)
    digits = mnist.x_test[_picked(mnist)].reshape(-1, 28, 28)
    result = {}
    for fmt in FORMATS:
        new, old = [], []
        for i, digit in enumerate(digits):
            data = painter.picture(digit, CANVASES[i % len(CANVASES)], fmt)
            image = read_image(data, f"digit{i}.{fmt}")
            new.append(to_mnist(image).reshape(784))
            old.append(_squash(image).reshape(784))
        result[fmt] = np.array(new), np.array(old)
    return result


# -- the model's view: generated pictures read as well as clean digits -------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_generated_pictures_classify_like_clean_digits(model, mnist, readings, fmt):
    labels = mnist.y_test[_picked(mnist)]
    clean = _accuracy(model, mnist.x_test[_picked(mnist)], labels)
    new_rows, old_rows = readings[fmt]
    new = _accuracy(model, new_rows, labels)
    old = _accuracy(model, old_rows, labels)
    print(f"{fmt}: clean {clean:.1%}, to_mnist {new:.1%}, squash-and-invert {old:.1%}")
    assert new >= clean - 0.05, (fmt, clean, new)
    assert old < clean - 0.3, (fmt, clean, old)  # the bug this module fixes


def test_output_is_mnist_shaped(readings):
    rows = np.concatenate([new for new, _ in readings.values()])
    images = rows.reshape(-1, 28, 28)
    assert images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    ys, xs = np.mgrid[:28, :28]
    for image in images:
        mass = image.sum()
        cy, cx = (image * ys).sum() / mass, (image * xs).sum() / mass
        assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1, (cy, cx)
        rows_, cols_ = np.flatnonzero(image.any(1)), np.flatnonzero(image.any(0))
        assert max(rows_[-1] - rows_[0], cols_[-1] - cols_[0]) + 1 == 20
        assert image.max() > 0.9  # the stroke core is full strength, as in MNIST


def test_clean_mnist_digit_comes_back_nearly_unchanged(mnist):
    """MNIST's own digits are already preprocessed: at most a pixel's shift, fainter edges."""
    digits = mnist.x_test[:50].reshape(-1, 28, 28)
    for digit in digits:
        out = to_mnist(Image.fromarray(np.round(digit * 255).astype(np.uint8)))
        shifted = (np.abs(np.roll(out, (dy, dx), (0, 1)) - digit).mean()
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1))
        assert min(shifted) < 0.04


# -- polarity, transparency, modes -----------------------------------------------------------
@pytest.fixture(scope="module")
def one_digit(mnist):
    painter = Painter(seed=2)
    alpha = painter.place(_coverage(mnist.x_test[0].reshape(28, 28), 120), (400, 300))
    return alpha


def _grey(alpha: np.ndarray, paper: float = 1.0, ink: float = 0.0) -> Image.Image:
    values = paper * (1 - alpha) + ink * alpha
    return Image.fromarray(np.round(values * 255).astype(np.uint8))


def test_light_on_dark_equals_dark_on_light(one_digit):
    dark_on_light = to_mnist(_grey(one_digit, paper=0.95, ink=0.1))
    light_on_dark = to_mnist(_grey(one_digit, paper=0.1, ink=0.95))
    difference = np.abs(dark_on_light - light_on_dark)
    # Rounding to 8 bits differs between the two, so a source pixel at the threshold may
    # fall on either side: at most one of the 16 or so averaged into an output pixel.
    assert difference.max() < 0.1 and difference.mean() < 0.002


def test_grey_background_and_faint_ink_are_normalised(one_digit):
    reference = to_mnist(_grey(one_digit))
    faint = to_mnist(_grey(one_digit, paper=0.6, ink=0.4))
    assert np.abs(reference - faint).mean() < 0.02


@pytest.mark.parametrize("ink", [0.2, 0.8], ids=["darker", "lighter"])
def test_mid_grey_background_either_polarity(one_digit, ink):
    reference = to_mnist(_grey(one_digit))
    assert np.abs(to_mnist(_grey(one_digit, paper=0.5, ink=ink)) - reference).mean() < 0.02


def test_rgba_reads_the_alpha_channel(one_digit):
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (*one_digit.shape, 4)).astype(np.uint8)  # garbage colour
    rgba[..., 3] = np.round(one_digit * 255).astype(np.uint8)
    out = to_mnist(Image.fromarray(rgba))
    assert np.abs(out - to_mnist(_grey(one_digit))).mean() < 0.01


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255)], ids=["black", "white"])
def test_opaque_rgba_is_read_from_colour_and_transparent_rgba_from_alpha(one_digit, colour):
    reference = to_mnist(_grey(one_digit))
    opaque = np.full((*one_digit.shape, 4), 255, dtype=np.uint8)
    opaque[..., :3] = np.asarray(_grey(one_digit))[..., None]  # a photo that has alpha
    assert np.abs(to_mnist(Image.fromarray(opaque)) - reference).mean() < 0.01
    sheet = np.zeros((*one_digit.shape, 4), dtype=np.uint8)
    sheet[..., :3] = colour  # a white pen on a transparent sheet reads as well as a black one
    sheet[..., 3] = np.round(one_digit * 255).astype(np.uint8)
    assert np.abs(to_mnist(Image.fromarray(sheet)) - reference).mean() < 0.01


def test_palette_transparency_is_composited_over_white(one_digit):
    mask = one_digit > 0.5
    p = Image.fromarray(np.where(mask, 1, 0).astype(np.uint8), mode="P")
    p.putpalette([255, 0, 0, 0, 0, 255])  # 0: red background, 1: blue ink ...
    p.info["transparency"] = 0  # ... and the red is transparent
    expected = to_mnist(_grey(mask.astype(float)))
    assert np.abs(to_mnist(p) - expected).mean() < 0.01


@pytest.mark.parametrize("mode", ["RGB", "LA", "La", "RGBa", "PA", "1", "I;16", "I", "F",
                                  "CMYK", "YCbCr", "P"])
def test_every_mode_reads_the_same_digit(one_digit, mode):
    grey = _grey(one_digit)
    if mode == "I;16":
        image = Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257)
        assert image.mode == "I;16"
    elif mode == "F":
        image = Image.fromarray(np.asarray(grey, dtype=np.float32) / 255)
    elif mode in ("La", "RGBa", "PA"):  # reached from RGBA only
        image = grey.convert("RGBA").convert(mode)
    elif mode == "1":  # a bilevel scan, like NIST's own digits
        image = grey.convert("1", dither=Image.Dither.NONE)
    else:
        image = grey.convert(mode)
    out, reference = to_mnist(image), to_mnist(grey)
    if mode == "1":  # no anti-aliased edge to lose: bolder, but the same shape
        a, b = out > 0.3, reference > 0.3
        assert np.count_nonzero(a & b) / np.count_nonzero(a | b) > 0.75
    else:
        assert np.abs(out - reference).mean() < 0.01


def test_round_trip_through_read_image_png(one_digit):
    data = _encode(_grey(one_digit), "PNG")
    assert np.array_equal(to_mnist(read_image(data, "x.png")), to_mnist(_grey(one_digit)))


def test_exif_orientation_is_applied(one_digit):
    """A phone stores pixels as the sensor saw them and the rotation in EXIF."""
    upright = _grey(one_digit)
    exif = Image.Exif()
    exif[0x0112] = 3  # Orientation: rotate 180 degrees to display
    out = io.BytesIO()
    upright.rotate(180).save(out, "PNG", exif=exif)
    image = read_image(out.getvalue(), "photo.png")
    assert np.abs(to_mnist(image) - to_mnist(upright)).mean() < 0.01


# -- thin strokes on a large canvas -----------------------------------------------------------
SEVEN = [(0.1, 0.05), (0.9, 0.05), (0.45, 0.95)]
FOUR = [(0.7, 0.95), (0.7, 0.05), (0.05, 0.65), (0.95, 0.65)]


def _pen(points, pen: int, size: int, canvas=(800, 600), at=(120, 90)) -> Image.Image:
    image = Image.new("L", canvas, 255)
    xy = [(at[0] + x * size * 0.7, at[1] + y * size) for x, y in points]
    ImageDraw.Draw(image).line(xy, fill=0, width=pen, joint="curve")
    return image


@pytest.mark.parametrize("points", [SEVEN, FOUR], ids=["seven", "four"])
def test_thin_pen_strokes_survive_the_downscale(points):
    thin = to_mnist(_pen(points, pen=3, size=450))
    bold = to_mnist(_pen(points, pen=45, size=450))  # 10% of the height, like NIST's pens
    assert thin.max() > 0.9
    # As much ink as MNIST digits carry for such a shape, not a faint hairline.
    assert thin.sum() > 0.6 * bold.sum()
    assert np.abs(thin - bold).mean() < 0.06


# -- no digit --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["white", "black", "grey-noise", "transparent", "no-pixels"])
def test_empty_image_is_an_input_error(kind):
    rng = np.random.default_rng(4)
    if kind == "white":
        image = Image.new("RGB", (300, 200), (255, 255, 255))
    elif kind == "black":
        image = Image.new("L", (300, 200), 0)
    elif kind == "grey-noise":
        values = np.clip(0.8 + 0.02 * rng.normal(size=(200, 300)), 0, 1)
        image = Image.fromarray(np.round(values * 255).astype(np.uint8))
    elif kind == "transparent":
        image = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    else:
        image = Image.new("L", (0, 0))
    with pytest.raises(InputError, match="no digit was found"):
        to_mnist(image)


def test_not_an_image_is_an_input_error():
    with pytest.raises(InputError, match="takes a PIL.Image.Image, not ndarray"):
        to_mnist(np.zeros((28, 28)))


# -- read_image: bad bytes -------------------------------------------------------------------
def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def test_decompression_bomb_is_an_input_error():
    """A PNG whose header declares 20000x20000 pixels (a valid CRC) is refused unread."""
    small = _encode(Image.new("L", (8, 8), 255), "PNG")
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    forged = small[:8] + _png_chunk(b"IHDR", ihdr) + small[8 + 25:]
    with pytest.raises(InputError, match=r"'bomb\.png' is too large"):
        read_image(forged, "bomb.png")


def test_decompression_bomb_warning_is_an_error_too(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # warns above 1000, fails above 2000
    data = _encode(Image.new("L", (40, 40), 255), "PNG")
    with pytest.raises(InputError, match=r"'big\.png' is too large"):
        read_image(data, "big.png")


def test_non_image_bytes_are_an_input_error_naming_the_file():
    with pytest.raises(InputError, match=r"'notes\.txt' is not an image"):
        read_image(b"these are not the pixels you are looking for\n" * 10, "notes.txt")


def test_truncated_image_is_an_input_error_naming_the_file(one_digit):
    data = _encode(_grey(one_digit), "PNG")
    with pytest.raises(InputError, match=r"'cut\.png' is a damaged or truncated image"):
        read_image(data[:len(data) // 2], "cut.png")


def test_missing_pillow_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(NNFrameError, match=r"pip install 'nnframe\[images\]'"):
        read_image(b"", "x.png")
