import importlib
import os
import subprocess
import sys
import textwrap
import uuid

import pytest

import nnframe.registry


@pytest.fixture
def make_plugin(tmp_path, monkeypatch):
    """Install a throwaway distribution (dist-info + module) on sys.path.

    ``make_plugin(dist, source)`` writes ``source`` as a uniquely named module, declares it
    under the ``nnframe`` entry-point group and returns the module name. Entry points are
    found by importlib.metadata exactly as for a pip-installed package.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    created = []

    def make(dist="nnframe-throwaway", source="", *, version="1.0", entry_points=None,
             module=None):
        module = module or f"throwaway_{uuid.uuid4().hex[:10]}"
        if source is not None:
            (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        eps = entry_points or {module: module}
        with open(info / "entry_points.txt", "a") as f:
            f.write("[nnframe]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
        importlib.invalidate_caches()
        created.append(module)
        return module

    make.site = site
    yield make
    for module in created:
        sys.modules.pop(module, None)
    nnframe.registry._registry = None


@pytest.fixture(autouse=True)
def _fresh_registry():
    """Each test sees plugins loaded under its own environment switches."""
    nnframe.registry._registry = None
    yield
    nnframe.registry._registry = None


def run_python(code, env=None, **kwargs):
    """Run ``code`` in a fresh interpreter (the real entry-point path, nothing cached)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=120, **kwargs)


@pytest.fixture(scope="session")
def torch():
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        try:
            import torch
        except ImportError:  # pragma: no cover - CI installs it
            pytest.fail("torch is not installed, but CI must compare with it")
        return torch
    return pytest.importorskip("torch")
