"""The nnframe pytest plugin, registered through the ``pytest11`` entry point.

It parametrizes any test made by `nnframe.testing.conformance_test` (or any test that
takes an ``nnframe_case`` argument and sets ``nnframe_plugin`` on itself or its module) with
one case per registered object and contract check.
"""

from __future__ import annotations


def pytest_generate_tests(metafunc) -> None:
    if "nnframe_case" not in metafunc.fixturenames:
        return
    from .testing import conformance_cases

    plugin = getattr(metafunc.function, "nnframe_plugin", None)
    if plugin is None:
        plugin = getattr(metafunc.module, "nnframe_plugin", None)
    cases = conformance_cases(plugin)
    metafunc.parametrize("nnframe_case", cases, ids=[case.id for case in cases])
