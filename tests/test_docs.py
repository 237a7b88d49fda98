"""The documentation's code runs, and its hooks reference covers every hook."""

import inspect
import re
from pathlib import Path

import pytest

import nnframe.hookspecs

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SNIPPET = re.compile(r'^--8<-- "(.+)"$', re.M)


def python_blocks(page: Path) -> list[str]:
    return [block for block in FENCE.findall(page.read_text())
            if not SNIPPET.search(block)]  # included files are tested where they live


@pytest.mark.filterwarnings("ignore::nnframe.datasets.MNISTSampleWarning")
@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_python_code_in_the_docs_runs(page, tmp_path, monkeypatch):
    # Offline and fast: no data directory, an empty cache, an unreachable mirror, so MNIST
    # examples run on the embedded sample.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NNFRAME_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("NNFRAME_MNIST_MIRRORS", "http://127.0.0.1:9/")
    namespace: dict = {"__name__": "__docs__"}
    for number, block in enumerate(python_blocks(page), start=1):
        try:
            exec(compile(block, f"{page.name}, python block {number}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{page.relative_to(ROOT)}, python block {number} raised "
                        f"{type(exc).__name__}: {exc}\n---\n{block}")


def test_included_snippets_exist():
    for page in PAGES:
        for path in SNIPPET.findall(page.read_text()):
            assert (ROOT / path).is_file(), f"{page.name} includes missing {path}"


def hooks():
    return [(name, fn) for name, fn in inspect.getmembers(nnframe.hookspecs, inspect.isfunction)
            if getattr(fn, "nnframe_spec", None) is not None]


def test_there_are_hooks_to_document():
    assert {name for name, _ in hooks()} == {"register_activations", "register_costs"}


@pytest.mark.parametrize("name, fn", hooks())
def test_every_hook_has_a_section_headed_by_its_signature(name, fn):
    params = ", ".join(inspect.signature(fn).parameters)
    heading = f"## {name}({params})"
    reference = (ROOT / "docs" / "plugins" / "hooks.md").read_text().splitlines()
    assert heading in reference, f"docs/plugins/hooks.md lacks the heading {heading!r}"


@pytest.mark.parametrize("name, fn", hooks())
def test_every_hook_has_a_docstring_and_a_test(name, fn):
    assert fn.__doc__ and "register(" in fn.__doc__
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    assert f"def {name}(register)" in tests, f"no test plugin implements {name}"


def test_the_site_config_lists_every_page():
    config = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").rglob("*.md"):
        assert str(page.relative_to(ROOT / "docs")) in config, f"{page} is not in the nav"


@pytest.mark.filterwarnings("ignore::nnframe.datasets.MNISTSampleWarning")
def test_the_readme_python_example_predicts_real_digits(tmp_path, monkeypatch):
    # It once printed three zeros: the sample it fell back to was sorted by digit.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NNFRAME_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("NNFRAME_MNIST_MIRRORS", "http://127.0.0.1:9/")
    namespace: dict = {"__name__": "__docs__"}
    block = next(b for b in python_blocks(ROOT / "README.md") if "argmax" in b)
    exec(compile(block, "README.md", "exec"), namespace)
    truth = namespace["data"].y_test[:5]
    assert truth.tolist() == [7, 2, 1, 0, 4]  # what the comment in the README shows
    assert (namespace["rows"].argmax(axis=1) == truth).sum() >= 4
