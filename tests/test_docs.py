"""The documentation's code runs, and its hooks reference covers every hook."""

import inspect
import re
import textwrap
from pathlib import Path

import pytest

import nnframe.hookspecs

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
FENCE = re.compile(r"^```python(?: [^\n]*)?\n(.*?)^```", re.S | re.M)
# A block titled with a file of the example plugin: ```python title="nnframe-extras/..."
EXCERPT = re.compile(r'^```\w+ title="(nnframe-extras/[^"]+)"\n(.*?)^```', re.S | re.M)
PLUGINS = ROOT / "plugins"
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


def test_the_home_page_code_fits_its_box():
    # The theme's code box holds about 80 characters at desktop width; longer lines scroll.
    page = ROOT / "docs" / "index.md"
    long = [line for block in re.findall(r"^```[^\n]*\n(.*?)^```", page.read_text(),
                                         re.S | re.M)
            for line in block.splitlines() if len(line) > 80]
    assert not long, f"code lines wider than 80 characters on the home page: {long}"


def test_the_plugin_tutorial_shows_the_example_package_word_for_word():
    # The tutorial is read as a file too (on a code host, in an editor), so its code is
    # inline, not included: each excerpt must still be exactly what the package holds.
    page = ROOT / "docs" / "plugins" / "tutorial.md"
    excerpts = EXCERPT.findall(page.read_text())
    shown = {path for path, _ in excerpts}
    assert {"nnframe-extras/nnframe_extras/__init__.py", "nnframe-extras/pyproject.toml",
            "nnframe-extras/tests/test_conformance.py"} <= shown
    for path, code in excerpts:
        source = (PLUGINS / path).read_text()
        assert code in source, f"{page.name} shows code that is not in plugins/{path}:\n{code}"
    module = (PLUGINS / "nnframe-extras/nnframe_extras/__init__.py").read_text()
    for name in ("class Softsign(", "class Huber(", "def register_activations(",
                 "def register_costs("):
        assert any(name in code for _, code in excerpts), f"the tutorial lost {name}"
        assert name in module


def hooks():
    return [(name, fn) for name, fn in inspect.getmembers(nnframe.hookspecs, inspect.isfunction)
            if getattr(fn, "nnframe_spec", None) is not None]


def test_there_are_hooks_to_document():
    assert {name for name, _ in hooks()} == {"register_activations", "register_costs",
                                             "register_optimizers", "register_schedules"}


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


# -- the API reference: what docs/reference.md lists renders with signatures and tables ------
ROLE = re.compile(r":(?:meth|func|class|mod|attr|exc|obj|data|const):`")


def reference_objects():
    """Every object docs/reference.md renders (a `::: path` line), with its public members:
    what mkdocstrings shows, read statically with griffe as mkdocstrings reads it."""
    griffe = pytest.importorskip("griffe")
    config = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"^\s+docstring_style: google$", config, re.M), \
        "mkdocs.yml and this test assume Google-style docstrings"
    package = griffe.load("nnframe", search_paths=[str(ROOT)], docstring_parser="google",
                          docstring_options={"warn_missing_types": False,
                                             "warn_unknown_params": True})
    listed = re.findall(r"^::: nnframe\.(\S+)$", (ROOT / "docs" / "reference.md").read_text(),
                        re.M)
    assert listed, "docs/reference.md lists nothing"
    found = {}

    def visit(obj, depth):
        obj = obj.final_target if obj.is_alias else obj
        found[obj.path] = obj
        if depth and (obj.is_module or obj.is_class):
            for name, member in obj.members.items():
                # Imported names are aliases: documented where they are defined.
                if name.startswith("_") or member.is_alias or member.is_attribute:
                    continue
                visit(member, depth - 1)

    for path in listed:
        obj = package[path]
        visit(obj, 2 if obj.is_module else 1)
    return found


@pytest.fixture(scope="module")
def reference():
    return reference_objects()


def test_the_reference_lists_what_it_should(reference):
    for path in ("nnframe.network.NeuralNetwork", "nnframe.network.NeuralNetwork.train",
                 "nnframe.base.Activation.backward", "nnframe.errors.UnknownNameError",
                 "nnframe.testing.check_cost", "nnframe.persistence.load"):
        assert path in reference


def test_reference_docstrings_use_no_sphinx_roles(reference):
    # mkdocstrings renders :meth:`x` as raw text: cross-references are [x][nnframe.x].
    raw = [path for path, obj in reference.items()
           if obj.docstring and ROLE.search(obj.docstring.value)]
    assert not raw, f"Sphinx roles (:meth:, :func:, :class: ...) in the docstrings of {raw}"


def test_reference_docstrings_parse_cleanly_as_google_style(reference, caplog):
    # Unknown parameters in Args:, bad indentation and the like are griffe warnings, which
    # the strict site build turns into errors.
    with caplog.at_level("WARNING", logger="griffe"):
        for obj in reference.values():
            if obj.docstring:
                obj.docstring.parse("google", warn_missing_types=False, warn_unknown_params=True)
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_every_parameter_of_the_reference_is_documented(reference):
    missing = []
    for path, obj in reference.items():
        if obj.is_class:
            init = obj.members.get("__init__")
            if init is None or init.is_alias or init.parent is not obj:
                continue  # inherited: Exception's, or documented where it is defined
            function = init  # merge_init_into_class: the class docstring documents it
        elif obj.is_function:
            function = obj
        else:
            continue
        names = [p.name for p in function.parameters if p.name not in ("self", "cls")]
        if not names:
            continue
        assert obj.docstring or function.docstring, f"{path} has no docstring"
        # merge_init_into_class renders __init__'s own docstring with the class's.
        sections = [s for doc in (obj.docstring, function.docstring) if doc
                    for s in doc.parse("google", warn_missing_types=False)]
        # A dataclass's generated __init__ takes its fields, documented under Attributes:.
        kinds = {"parameters", "attributes"} if "dataclass" in obj.labels else {"parameters"}
        documented = {p.name.lstrip("*") for s in sections if s.kind.value in kinds
                      for p in s.value}
        missing += [f"{path}({name})" for name in names if name not in documented]
    assert not missing, f"parameters without an entry in an Args: section: {missing}"


def test_reference_examples_render_as_code(reference):
    # A doctest outside an Examples: section renders as a nested blockquote on one line.
    wrong = []
    for path, obj in reference.items():
        if obj.docstring and ">>>" in obj.docstring.value:
            sections = obj.docstring.parse("google", warn_missing_types=False)
            text = "".join(s.value for s in sections if s.kind.value == "text")
            if ">>>" in text:
                wrong.append(path)
    assert not wrong, f"doctests outside an Examples: section in {wrong}"


def test_reference_doctests_pass(reference):
    import doctest
    import importlib

    failed = []
    for path, obj in reference.items():
        if not (obj.docstring and ">>>" in obj.docstring.value):
            continue
        module = importlib.import_module(obj.module.path)
        live = module
        for part in path[len(obj.module.path) + 1:].split("."):
            live = getattr(live, part)
        for test in doctest.DocTestFinder(recurse=False).find(live, path,
                                                              globs=vars(module).copy()):
            result = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS).run(test)
            if result.failed:
                failed.append(path)
    assert not failed, f"the examples of {failed} do not give what they show"


def test_reference_code_examples_run(reference, tmp_path, monkeypatch):
    import nnframe
    from nnframe.testing import check_activation, check_cost

    monkeypatch.chdir(tmp_path)
    fence = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)  # indented in a section
    blocks = [(path, block) for path, obj in reference.items() if obj.docstring
              for _, block in fence.findall(obj.docstring.value)]
    assert blocks, "no fenced python examples found in the reference's docstrings"
    for path, block in blocks:
        namespace = {"nnframe": nnframe, "__name__": "__docs__",
                     "net": nnframe.NeuralNetwork(2, [2, 2], [None, "softmax"], "cross_entropy")}
        try:
            exec(compile(textwrap.dedent(block), f"{path} example", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"the example of {path} raised {type(exc).__name__}: {exc}\n{block}")
        # An example plugin class must pass the kit it is documented next to.
        for value in list(namespace.values()):
            if isinstance(value, type) and value not in (nnframe.Activation, nnframe.Cost):
                if issubclass(value, nnframe.Activation):
                    check_activation(value())
                elif issubclass(value, nnframe.Cost):
                    check_cost(value(), activations=[nnframe.get_activation("softmax")])
