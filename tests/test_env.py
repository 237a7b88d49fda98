"""Every NNFRAME_* switch goes through one parser (nnframe._env)."""

import warnings

import pytest

import nnframe
from nnframe import _blas, _env, _parallel, plugins


@pytest.mark.parametrize("value", ["1", "true", "TRUE", " Yes ", "on", "ON"])
def test_on_values(monkeypatch, value):
    monkeypatch.setenv("NNFRAME_X", value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _env.flag("NNFRAME_X") is True


@pytest.mark.parametrize("value", ["", "0", "false", "False", "no", "OFF", "  "])
def test_off_values(monkeypatch, value):
    monkeypatch.setenv("NNFRAME_X", value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _env.flag("NNFRAME_X", default=True) is False


@pytest.mark.parametrize("value", ["2", "enable", "tru", "y\u00e9s"])
def test_unrecognised_value_warns_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("NNFRAME_X", value)
    with pytest.warns(nnframe.EnvironmentWarning, match="NNFRAME_X=.* is not understood"):
        assert _env.flag("NNFRAME_X") is False


@pytest.mark.parametrize("value", ["\u00b2", "0", "-3", "1.5", "four", "\u0663"])
def test_bad_thread_counts_warn_and_are_ignored(monkeypatch, value):
    # "²" and "٣" pass str.isdigit() but not int(): they once broke every large predict.
    monkeypatch.setenv("NNFRAME_NUM_THREADS", value)
    with pytest.warns(nnframe.EnvironmentWarning, match="NNFRAME_NUM_THREADS"):
        assert _env.positive_int("NNFRAME_NUM_THREADS") is None
    with pytest.warns(nnframe.EnvironmentWarning):
        assert _parallel.num_threads() >= 1


def test_thread_count_read(monkeypatch):
    monkeypatch.setenv("NNFRAME_NUM_THREADS", " 3 ")
    assert _env.positive_int("NNFRAME_NUM_THREADS") == 3
    assert _parallel.num_threads() == 3


def test_no_blas_accepts_any_case(monkeypatch):
    saved = dict(_blas._gemm), dict(_blas._state)
    try:
        monkeypatch.setenv("NNFRAME_NO_BLAS", "TRUE")
        _blas._gemm.clear()
        _blas._state.update(ready=False)
        assert not _blas.available()
    finally:
        _blas._gemm.clear()
        _blas._gemm.update(saved[0])
        _blas._state.update(saved[1])


@pytest.mark.parametrize("switch", [plugins.STRICT_ENV, plugins.BUILTINS_ONLY_ENV])
def test_plugin_switches_warn_on_nonsense(monkeypatch, switch):
    monkeypatch.setenv(switch, "maybe")
    with pytest.warns(nnframe.EnvironmentWarning, match=switch):
        nnframe.reload_plugins()
