"""Large inference passes run as row blocks on all cores, with the same results as one pass.

The speed-up itself is measured by bench/bench_mlp.py; these tests prove the mechanism is
used, exact, restores the process-wide BLAS thread count, and behaves under errors.
"""

import threading
import warnings

import numpy as np
import pytest

import nnframe
from nnframe import _parallel

ROWS = 3 * _parallel.MIN_BLOCK_ROWS + 17  # three blocks with NNFRAME_NUM_THREADS=3


@pytest.fixture
def three_threads(monkeypatch):
    monkeypatch.setenv("NNFRAME_NUM_THREADS", "3")


def blas_threads() -> int:
    return _parallel.get_blas_threads()


def data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((ROWS, 12), dtype=np.float32), rng.integers(0, 4, ROWS)


def network():
    return nnframe.NeuralNetwork(4, [12, 32, 16, 4], [None, "relu", "tanh", "softmax"],
                                 "cross_entropy", seed=0)


def test_numpys_blas_lets_nnframe_limit_its_threads():
    # The wheels nnframe supports ship OpenBLAS; without this control inference would
    # silently stay on one core.
    assert _parallel.can_limit_blas_threads()


def test_large_inputs_are_split_into_blocks_in_other_threads(three_threads, monkeypatch):
    net = network()
    seen = []
    infer_rows = net._infer_rows

    def spy(a):
        seen.append((len(a), threading.current_thread().name))
        return infer_rows(a)

    monkeypatch.setattr(net, "_infer_rows", spy)
    x, _ = data()
    net.forward_pass(x[:5])  # small: not split
    net._infer(x)
    sizes = [n for n, _ in seen]
    assert len(sizes) == 3 and sum(sizes) == ROWS and max(sizes) - min(sizes) <= 1
    assert {name for _, name in seen} - {threading.current_thread().name}  # workers helped


def test_blocked_results_equal_one_pass(three_threads, monkeypatch):
    net = network()
    x, ids = data()
    net.train(256, x, ids, 1, 0.1, seed=0)
    blocked = (net._infer(x), net.predict(None, x), net.predict_classes(x),
               net.check_accuracy(None, x, ids))
    monkeypatch.setenv("NNFRAME_NUM_THREADS", "1")
    assert _parallel.blocks_for(ROWS) == 1
    single = (net._infer(x), net.predict(None, x), net.predict_classes(x),
              net.check_accuracy(None, x, ids))
    np.testing.assert_allclose(blocked[0], single[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(blocked[1], single[1])
    np.testing.assert_array_equal(blocked[2], single[2])
    assert blocked[3] == single[3]


def test_blas_thread_count_is_restored_after_success_and_error(three_threads):
    before = blas_threads()
    x, _ = data()
    inside = []

    def fn(block):
        inside.append(blas_threads())
        if len(inside) == 3:
            raise ValueError("block failed")
        return len(block)

    with pytest.raises(ValueError, match="block failed"):
        _parallel.map_rows(fn, x)
    assert inside == [1, 1, 1]
    assert blas_threads() == before
    assert sum(_parallel.map_rows(len, x)) == ROWS
    assert blas_threads() == before


def test_concurrent_callers_leave_the_thread_count_as_it_was(three_threads):
    before = blas_threads()
    net = network()
    x, _ = data()
    expected = net.predict_classes(x)
    errors = []

    def call():
        try:
            for _ in range(5):
                np.testing.assert_array_equal(net.predict_classes(x), expected)
        except Exception as exc:  # collected: the main thread reports it
            errors.append(exc)

    callers = [threading.Thread(target=call) for _ in range(3)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert errors == []
    assert blas_threads() == before


def test_worker_blocks_run_under_the_callers_errstate(three_threads):
    x = np.full((ROWS, 3), 100.0, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="ignore"):
            results = _parallel.map_rows(lambda b: np.exp(b * np.float32(10)), x)
        with np.errstate(over="raise"), pytest.raises(FloatingPointError):
            _parallel.map_rows(lambda b: np.exp(b * np.float32(10)), x)
    assert all(np.isinf(r).all() for r in results)


def test_a_plugin_failing_in_a_worker_block_is_named(three_threads):
    class FailsOnLargeBlocks(nnframe.Activation):
        name = "fails_late"

        def forward(self, z):
            if (z > 100).any():  # only rows of the worker blocks have such values
                raise RuntimeError("boom")
            return np.tanh(z)

        def backward(self, z, a, grad):
            return grad * (1 - a * a)

    net = nnframe.NeuralNetwork(2, [3, 2], [None, FailsOnLargeBlocks()], "mean_squared",
                                seed=0)
    net.layers[0].weights_for_layer[:] = 1
    x = np.zeros((ROWS, 3), dtype=np.float32)
    x[ROWS // 3:] = 1000.0
    with pytest.raises(nnframe.PluginRuntimeError, match="fails_late"):
        net.predict(None, x)


def test_inputs_with_nan_are_still_rejected_in_any_block(three_threads):
    net = network()
    x, _ = data()
    x[-1, 3] = np.nan  # in the last block
    with pytest.raises(nnframe.InputError, match=f"row {ROWS - 1}, column 3"):
        net.predict(None, x)


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_unusable_thread_settings_fall_back_to_the_cores(monkeypatch, value):
    monkeypatch.setenv("NNFRAME_NUM_THREADS", value)
    with pytest.warns(nnframe.EnvironmentWarning, match="NNFRAME_NUM_THREADS"):
        assert 1 <= _parallel.num_threads() <= _parallel.MAX_THREADS


def test_empty_thread_setting_means_unset(monkeypatch):
    monkeypatch.setenv("NNFRAME_NUM_THREADS", "")
    assert 1 <= _parallel.num_threads() <= _parallel.MAX_THREADS


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("rows", [7, ROWS])
def test_non_finite_inputs_are_found_even_where_the_weights_ignore_them(three_threads, bad,
                                                                       rows):
    # Inference checks the first layer's output (smaller than the inputs) and the inputs
    # only when that is not finite; a feature whose weights are all zero must still count.
    net = network()
    net.layers[0].weights_for_layer[5] = 0.0
    x, ids = data()
    x = x[:rows]
    x[rows - 1, 5] = bad
    for call in (lambda: net.predict(None, x), lambda: net.predict_classes(x),
                 lambda: net.check_accuracy(None, x, ids[:rows])):
        with pytest.raises(nnframe.InputError, match=f"row {rows - 1}, column 5"):
            call()


@pytest.mark.parametrize("rows", [7, ROWS])
@pytest.mark.parametrize("hidden", ["relu", "tanh"])  # tanh saturates: the outputs stay finite
def test_finite_inputs_that_overflow_the_first_layer_are_refused(three_threads, rows, hidden):
    net = nnframe.NeuralNetwork(3, [12, 32, 4], [None, hidden, "softmax"], "cross_entropy",
                                seed=0)
    x, ids = data()
    x = x[:rows]
    x[rows - 2] = 3e38  # finite float32, but the first layer's sums overflow
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no NumPy RuntimeWarning on the way
        for call in (lambda: net.predict(None, x), lambda: net.predict_classes(x),
                     lambda: net.check_accuracy(None, x, ids[:rows]),
                     lambda: net.forward_pass(x)):
            with pytest.raises(nnframe.InputError,
                               match=f"row {rows - 2} has values too large for the network's "
                                     "float32.*[Ss]cale the data"):
                call()


def test_inputs_that_overflow_a_later_layer_are_refused(three_threads):
    net = nnframe.NeuralNetwork(3, [12, 32, 4], [None, "relu", "softmax"], "cross_entropy",
                                seed=0)
    net.layers[0].weights_for_layer[...] = 1.0
    net.layers[1].weights_for_layer[...] = 1.0
    x, _ = data()
    x[5] = 1e36  # the first layer's sums (1.2e37) fit; the second's (3.8e38) do not
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(nnframe.InputError, match="row 5 .*layer 2 overflow"):
            net.predict_classes(x)
        with pytest.raises(nnframe.InputError, match="row 5 .*layer 2 overflow"):
            net.forward_pass(x[:10])
    with pytest.raises(nnframe.InputError, match="forward pass first"):
        net.back_pass([0] * 10, 0.1)  # nothing to learn from the refused pass


def test_a_plugin_returning_nan_in_predict_is_named(three_threads):
    class NanForLargeSums(nnframe.Activation):
        name = "nan_for_large"

        def forward(self, z):
            return np.where(z > 100, np.nan, np.tanh(z)).astype(z.dtype)

        def backward(self, z, a, grad):
            return grad * (1 - a * a)

    net = nnframe.NeuralNetwork(3, [3, 4, 2], [None, NanForLargeSums(), "softmax"],
                                "cross_entropy", seed=0)
    net.layers[0].weights_for_layer[...] = 1.0
    x = np.zeros((ROWS, 3), dtype=np.float32)
    x[ROWS - 1] = 1000.0
    with pytest.raises(nnframe.PluginRuntimeError, match=f"'nan_for_large'.*row {ROWS - 1}"):
        net.predict(None, x)


def test_a_split_pass_started_inside_a_block_runs_in_place(three_threads):
    x, _ = data()
    inner = []

    def fn(block):
        inner.append(len(_parallel.map_rows(len, x)))  # would deadlock if it queued
        return len(block)

    assert sum(_parallel.map_rows(fn, x)) == ROWS
    assert inner == [1, 1, 1]  # each nested pass ran as one block, in its own thread


def test_by_default_it_uses_no_more_threads_than_numpys_blas_may(monkeypatch):
    monkeypatch.delenv("NNFRAME_NUM_THREADS", raising=False)
    previous = _parallel.set_blas_threads(1)  # as with OPENBLAS_NUM_THREADS=1 or threadpoolctl
    try:
        assert _parallel.num_threads() == 1
        assert _parallel.blocks_for(ROWS) == 1
    finally:
        _parallel.set_blas_threads(previous)
    monkeypatch.setenv("NNFRAME_NUM_THREADS", "3")  # an explicit setting wins
    assert _parallel.blocks_for(ROWS) == 3


def _classes_in_child(net, x, queue):
    queue.put(net.predict_classes(x).tolist())


def test_a_forked_child_gets_its_own_workers(three_threads):
    import multiprocessing

    net = network()
    x, _ = data()
    expected = net.predict_classes(x).tolist()  # the parent's pool now exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_classes_in_child, args=(net, x, queue))
    child.start()
    try:
        assert queue.get(timeout=60) == expected  # would hang on the parent's dead workers
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0


def _blas_state_in_child(queue):
    queue.put((blas_threads(), _parallel._blas_limit["depth"]))


def test_a_child_forked_during_a_split_pass_gets_its_blas_threads_back():
    import multiprocessing

    original = _parallel.set_blas_threads(3)  # a count the child can only get back by restoring it
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    try:
        with _parallel._one_blas_thread():  # as if another thread were mid-predict
            assert blas_threads() == 1
            child = context.Process(target=_blas_state_in_child, args=(queue,))
            child.start()
        assert queue.get(timeout=60) == (3, 0)
        child.join(timeout=10)
        assert blas_threads() == 3
    finally:
        _parallel.set_blas_threads(original)


@pytest.fixture
def fresh_pool(monkeypatch):
    monkeypatch.setattr(_parallel, "_pool", {"executor": None, "size": 0})


def test_a_pool_handed_out_stays_usable_when_a_larger_one_replaces_it(fresh_pool):
    import gc

    small = _parallel._executor(1)
    large = _parallel._executor(7)  # a second caller wants more workers
    assert large is not small and _parallel._executor(3) is large
    assert small.submit(len, [1, 2]).result() == 2  # was: cannot schedule after shutdown
    workers = list(small._threads)
    del small
    gc.collect()
    for worker in workers:  # once nobody holds the old pool, its idle threads exit
        worker.join(timeout=60)
        assert not worker.is_alive()


def test_concurrent_first_passes_wanting_different_worker_counts(fresh_pool, monkeypatch):
    wanted = threading.local()
    monkeypatch.setattr(_parallel, "num_threads", lambda: wanted.count)
    x = np.zeros((_parallel.MAX_THREADS * _parallel.MIN_BLOCK_ROWS, 1), dtype=np.float32)
    counts = list(range(2, _parallel.MAX_THREADS + 1))
    errors = []

    def call(count, barrier):
        wanted.count = count
        try:
            barrier.wait()
            for _ in range(3):
                assert sum(_parallel.map_rows(len, x)) == len(x)
        except Exception as exc:  # collected: the main thread reports it
            errors.append(exc)

    for _ in range(20):  # each round starts with no pool, so each round grows it
        _parallel._pool.update(executor=None, size=0)
        barrier = threading.Barrier(len(counts))
        callers = [threading.Thread(target=call, args=(count, barrier)) for count in counts]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
    assert errors == []
