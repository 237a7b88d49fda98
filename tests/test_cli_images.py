"""`nnframe predict` on hostile image paths: FIFOs, devices, oversized files, decompression
bombs. Each must end at once with one `nnframe: error:` line naming the file, never hang,
never exhaust memory and never print a traceback."""

import os
import struct
import zlib

import pytest
from test_cli import nnframe_cli

from nnframe.network import NeuralNetwork

TIMEOUT = 60  # only turns a hang into a failure; a good run takes a second or two


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pkl"
    NeuralNetwork(3, [784, 8, 10], [None, "relu", "softmax"], "cross_entropy",
                  seed=0).save(path)
    return path


def predict(model, *images):
    return nnframe_cli("predict", str(model), *map(str, images), timeout=TIMEOUT)


def assert_one_error_line(result, *needles):
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nnframe: error:")
    for needle in needles:
        assert needle in lines[0], lines[0]


def png(width, height, *, data=True):
    """A valid PNG whose IHDR declares ``width`` x ``height`` grayscale pixels."""
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1)) if data else b""  # one row: enough to open
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def test_a_fifo_named_like_an_image_is_refused_without_blocking(model, tmp_path):
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    result = predict(model, fifo)  # before the fix: blocks until the timeout
    assert_one_error_line(result, str(fifo), "FIFO")


def test_a_fifo_with_a_writer_is_refused_too(model, tmp_path):
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    # A writer holding the pipe open (non-blocking open of the read side first).
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(fifo, os.O_WRONLY)
    try:
        os.write(writer, png(28, 28))
        result = predict(model, fifo)
    finally:
        os.close(writer)
        os.close(reader)
    assert_one_error_line(result, str(fifo), "FIFO")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_symlink_to_an_endless_device_is_refused_at_once(model, tmp_path, device):
    link = tmp_path / "digit.png"
    link.symlink_to(device)
    result = predict(model, link)  # before the fix: reads until memory runs out
    assert_one_error_line(result, str(link), "character device")


def test_a_directory_named_like_an_image_is_refused(model, tmp_path):
    (tmp_path / "d.png").mkdir()
    assert_one_error_line(predict(model, tmp_path / "d.png"), "d.png", "directory")


def test_an_image_file_over_the_size_cap_is_refused_unread(model, tmp_path):
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(65 * 2**20)  # sparse: no disk used
    assert_one_error_line(predict(model, big), "big.png", "bytes")


@pytest.mark.parametrize("width, height", [(20000, 20000), (10000, 10000), (8000, 8000)])
def test_a_decompression_bomb_is_one_line_naming_the_file(model, tmp_path, width, height):
    # 20000x20000: PIL raises DecompressionBombError at open; 10000x10000 is past PIL's
    # warning threshold only (DecompressionBombWarning); 8000x8000 is below both but past
    # nnframe's own cap (nnframe.images.PIXELS_LIMIT), and would decode 64 MB for a 28x28
    # digit. All three are refused in one place, nnframe.images.read_image.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png(width, height))
    result = predict(model, bomb)
    assert_one_error_line(result, str(bomb), "decompression bomb")


def test_an_image_under_the_cap_still_predicts(model, tmp_path):
    from PIL import Image, ImageDraw

    good = tmp_path / "ok.png"
    image = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(image).line([(14, 4), (14, 23)], fill=255, width=3)  # a "1"
    image.save(good)
    result = predict(model, good)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{good}: ")
