import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

SCRIPTS = Path(sysconfig.get_path("scripts"))


def nnframe_cli(*args, env=None, **kwargs):
    """Run the installed `nnframe` console script (the real entry point)."""
    exe = SCRIPTS / "nnframe"
    assert exe.exists(), f"the nnframe console script is not installed at {exe}"
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=full_env,
                          timeout=600, **kwargs)


def test_plugins_lists_every_name_with_its_distribution():
    result = nnframe_cli("plugins")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ")}
    assert "nnframe 0.1.0" in lines["relu"]
    assert "nnframe-extras" in lines["gelu"]
    assert "nnframe" in lines["cross_entropy"]


def test_python_dash_m_works_too():
    result = subprocess.run([sys.executable, "-m", "nnframe", "plugins"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "softmax" in result.stdout


def test_plugins_shows_failed_plugins(tmp_path):
    site = tmp_path / "site"
    info = site / "nnframe_broken-0.9.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nnframe-broken\nVersion: 0.9\n")
    (info / "entry_points.txt").write_text("[nnframe]\nbroken = nnframe_broken_mod\n")
    (site / "nnframe_broken_mod.py").write_text("raise ImportError('needs scipy')\n")
    result = nnframe_cli("plugins", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0
    assert "Failed to load:" in result.stdout
    assert "nnframe-broken 0.9" in result.stdout and "needs scipy" in result.stdout


def test_bad_option_is_one_line_without_traceback():
    result = nnframe_cli("plugins", "--no-such-option")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["--help"], ["plugins", "--help"]])
def test_help(args):
    result = nnframe_cli(*args)
    assert result.returncode == 0 and "usage:" in result.stdout
