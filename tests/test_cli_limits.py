"""Sizes the CLI must refuse in one line, and the last line of defence in main(): a stray
MemoryError is one `nnframe: error:` line and exit 1, never a traceback."""

import subprocess
import sys
import textwrap

import pytest
from test_cli import nnframe_cli
from test_cli_images import assert_one_error_line

TIMEOUT = 120  # only turns a hang into a failure


@pytest.mark.parametrize("hidden, needle", [
    ("1000000000000", "--hidden size 1,000,000,000,000"),  # the report in issue 11
    ("64,1000000000000", "--hidden size 1,000,000,000,000"),  # not only the first layer
    ("20000,20000", "weights"),  # each size plausible, the product is not
])
def test_absurd_hidden_sizes_are_refused_before_building(tmp_path, hidden, needle):
    result = nnframe_cli("train", "--hidden", hidden, "--sample", "--no-plot", "--out",
                         str(tmp_path / "out"), timeout=TIMEOUT)
    assert_one_error_line(result, needle)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def run_main_with(patch, argv):
    """Run nnframe.cli.main(argv) in a fresh interpreter after ``patch`` (Python source)."""
    code = textwrap.dedent(patch) + f"\nimport sys\nfrom nnframe.cli import main\n" \
        f"sys.exit(main({argv!r}))\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT)


def test_a_memory_error_while_building_is_one_line(tmp_path):
    result = run_main_with("""
        import nnframe.network
        def explode(self, *args, **kwargs):
            raise MemoryError("Unable to allocate 2.85 TiB for an array")
        nnframe.network.NeuralNetwork.__init__ = explode
        """, ["train", "--hidden", "16", "--sample", "--out", str(tmp_path)])
    assert_one_error_line(result, "out of memory", "2.85 TiB", "--hidden")


def test_a_bare_memory_error_anywhere_in_a_command_is_one_line(tmp_path):
    # MemoryError() with no message, raised from another command (predict reading images).
    (tmp_path / "m.pkl").write_bytes(b"")
    result = run_main_with("""
        import nnframe.cli
        def explode(args):
            raise MemoryError
        nnframe.cli._cmd_predict = explode
        """, ["predict", str(tmp_path / "m.pkl"), "x.png"])
    assert_one_error_line(result, "out of memory")
