"""The conformance kit catches real mistakes, each with a message that says what is wrong."""

import os
import threading
import weakref

import numpy as np
import pytest
from conftest import run_python

import nnframe
from nnframe.builtins.optimizers import BUILTIN_OPTIMIZERS
from nnframe.testing import (
    ACTIVATION_CHECKS,
    COST_CHECKS,
    OPTIMIZER_CHECKS,
    check_activation,
    check_cost,
    check_optimizer,
    conformance_cases,
)


class Tanh(nnframe.Activation):
    name = "my_tanh"

    def forward(self, z):
        return np.tanh(z)

    def backward(self, z, a, grad):
        return grad * (1 - a * a)


class WrongDerivative(Tanh):
    def backward(self, z, a, grad):
        return grad * (1 - a)


class ChangesShape(Tanh):
    def forward(self, z):
        return np.tanh(z)[:, :-1]


class InPlace(Tanh):
    def forward(self, z):
        np.tanh(z, out=z)
        return z


class InPlaceGrad(Tanh):
    def backward(self, z, a, grad):
        grad *= 1 - a * a
        return grad


class Overflowing(Tanh):
    name = "naive_sigmoid"

    def forward(self, z):
        return 1 / (1 + np.exp(-z))

    def backward(self, z, a, grad):
        return grad * a * (1 - a)


class Upcasts(Tanh):
    def forward(self, z):
        return np.tanh(z) * np.float64(1.0)


class MixesRows(Tanh):
    def forward(self, z):
        return np.tanh(z - z.mean(axis=0))

    def backward(self, z, a, grad):
        return grad * (1 - a * a)


class Unpicklable(Tanh):
    def __init__(self):
        self.state = (i for i in range(3))  # generators cannot be pickled, even by dill


class WrongInplace(Tanh):
    def forward_inplace(self, z):
        return np.tanh(z, out=z) * 0.5


class KeepsBuffer(Tanh):
    """Reuses one output array across calls: breaks parallel row blocks."""

    def forward(self, z):
        out = getattr(self, "out", None)
        if out is None or out.shape != z.shape or out.dtype != z.dtype:
            self.out = np.empty_like(z)
        return np.tanh(z, out=self.out)


class BadName(Tanh):
    name = "My Tanh"


# -- state kept between calls: each passed the kit before the `stateless` check ------------
class StoresOutput(Tanh):
    """Issue 12: keeps its forward output for backward. Two layers sharing the object
    overwrite each other's output, so the first layer's backward uses the second's."""

    def forward(self, z):
        self.out = np.tanh(z)
        return self.out

    def backward(self, z, a, grad):
        return grad * (1 - self.out * self.out)


class CachesByShape(Tanh):
    """Keeps the derivative for backward, one per input shape: same-shape batches clash."""

    def __init__(self):
        self._slope = {}

    def forward(self, z):
        a = np.tanh(z)
        self._slope[z.shape] = 1 - a * a
        return a

    def backward(self, z, a, grad):
        return grad * self._slope[z.shape]


class KeepsOutputInASlot(Tanh):
    __slots__ = ("_out",)

    def forward(self, z):
        self._out = np.tanh(z)
        return self._out

    def backward(self, z, a, grad):
        return grad * (1 - self._out * self._out)


class KeepsOutputOnTheClass(Tanh):
    def forward(self, z):
        type(self).last_output = np.tanh(z)
        return type(self).last_output

    def backward(self, z, a, grad):
        return grad * (1 - self.last_output ** 2)


class KeepsOutputPerThread(Tanh):
    """Thread-local storage survives parallel row blocks, not two layers sharing the object."""

    def __init__(self):
        self._local = threading.local()

    def forward(self, z):
        self._local.out = np.tanh(z)
        return self._local.out

    def backward(self, z, a, grad):
        return grad * (1 - self._local.out ** 2)


_HIDDEN = {}  # state outside the object, where no attribute watch can see it


class KeepsOutputElsewhere(Tanh):
    def forward(self, z):
        _HIDDEN[id(self)] = a = np.tanh(z)
        return a

    def backward(self, z, a, grad):
        return grad * (1 - _HIDDEN[id(self)] ** 2)


class ReusesBufferElsewhere(Tanh):
    """Returns one module-level buffer per shape: a later call overwrites an earlier result."""

    def forward(self, z):
        out = _HIDDEN.setdefault((id(self), z.shape, z.dtype), np.empty_like(z))
        return np.tanh(z, out=out)


class Squared(nnframe.Cost):
    name = "squared"

    def loss(self, a, y):
        return float(0.5 * ((a - y) ** 2).sum() / len(a))

    def gradient(self, a, y):
        return (a - y) / len(a)


class GradientOffByFactor(Squared):
    def gradient(self, a, y):
        return 2 * (a - y) / len(a)


class SumNotMean(Squared):
    def loss(self, a, y):
        return float(0.5 * ((a - y) ** 2).sum())

    def gradient(self, a, y):
        return a - y


class LogOfZero(Squared):
    name = "naive_log"

    def loss(self, a, y):
        return float(-(y * np.log(a)).sum() / len(a))

    def gradient(self, a, y):
        return -y / a / len(a)


class ArrayLoss(Squared):
    def loss(self, a, y):
        return 0.5 * ((a - y) ** 2).sum(axis=1)


class KeepsLastPrediction(Squared):
    """Keeps the last prediction seen by loss and differentiates that one in gradient."""

    def loss(self, a, y):
        self.last = a.copy()
        return super().loss(a, y)

    def gradient(self, a, y):
        return (self.last - y) / len(a)


class KeepsLastPredictionElsewhere(Squared):
    def loss(self, a, y):
        _HIDDEN[id(self)] = a.copy()
        return super().loss(a, y)

    def gradient(self, a, y):
        return (_HIDDEN[id(self)] - y) / len(a)


class WrongFusedDelta(Squared):
    def fused_delta(self, activation):
        if activation.name == "sigmoid":
            return lambda a, y: (a - y) / len(a)  # not the chain rule for squared error
        return None


def test_correct_objects_pass():
    check_activation(Tanh())
    check_cost(Squared())


@pytest.mark.parametrize("obj, needles", [
    (WrongDerivative(), ["backward does not match central finite differences",
                         "check the derivative"]),
    (ChangesShape(), ["returned (3, 3) for input of shape (3, 4)"]),
    (InPlace(), ["modified its argument 'z' in place"]),
    (InPlaceGrad(), ["modified its argument 'grad' in place"]),
    (Overflowing(), ["numerically unsafe", "overflow", "exp(-abs(z))"]),
    (Upcasts(), ["dtype float64 for float32 input"]),
    (MixesRows(), ["row 0 alone differs"]),
    (Unpicklable(), ["dill round trip"]),
    (WrongInplace(), ["forward_inplace(z) differs from forward(z)"]),
    (KeepsBuffer(), ["a later forward call changed the array an earlier call returned"]),
    (StoresOutput(), ["StoresOutput (name='my_tanh')", "forward(z1) replaced self.out",
                      "keep no state between calls", "backward receives z and a = forward(z)"]),
    (CachesByShape(), ["forward(z1) changed the contents of self._slope (a dict)",
                       "keep no state between calls"]),
    (KeepsOutputInASlot(), ["forward(z1) replaced self._out", "keep no state"]),
    (KeepsOutputOnTheClass(), ["forward(z1) replaced KeepsOutputOnTheClass.last_output"]),
    (KeepsOutputPerThread(), ["forward(z1) changed the contents of self._local"]),
    (KeepsOutputElsewhere(), ["when calls on different batches are interleaved",
                              "forward(z1), forward(z2), forward(z3), backward(z1, a1, g1)",
                              "z1 and z3 are 7 x 3, z2 is 4 x 3", "keeps state between calls",
                              "backward receives z and a = forward(z)"]),
    (BadName(), ["lowercase snake_case"]),
    (object(), ["not a subclass instance of nnframe.Activation"]),
])
def test_broken_activations_are_rejected_with_the_reason(obj, needles):
    with pytest.raises(AssertionError) as info:
        check_activation(obj)
    for needle in needles:
        assert needle in str(info.value)


@pytest.mark.parametrize("obj, needles", [
    (GradientOffByFactor(), ["gradient does not match", "2 times the true gradient"]),
    (SumNotMean(), ["not a mean over the batch", "divide"]),
    (LogOfZero(), ["numerically unsafe"]),
    (ArrayLoss(), ["one float"]),
    (WrongFusedDelta(), ["fused_delta('sigmoid') differs"]),
    (KeepsLastPrediction(), ["KeepsLastPrediction (name='squared')",
                             "loss(a1, y1) replaced self.last", "keep no state between calls",
                             "gradient receives a and y"]),
    (KeepsLastPredictionElsewhere(), ["gradient(a1, y1) differs when calls on different "
                                      "batches are interleaved", "loss(a1, y1), loss(a2, y2)",
                                      "keeps state between calls"]),
])
def test_broken_costs_are_rejected_with_the_reason(obj, needles):
    with pytest.raises(AssertionError) as info:
        check_cost(obj)
    for needle in needles:
        assert needle in str(info.value)


def test_each_check_runs_on_its_own():
    names = [c.name for c in ACTIVATION_CHECKS]
    assert len(names) == len(set(names)) and "backward_matches_finite_differences" in names
    failing = [c.name for c in ACTIVATION_CHECKS if _fails(c, WrongDerivative())]
    assert failing == ["backward_matches_finite_differences"]
    failing = [c.name for c in COST_CHECKS if _fails(c, GradientOffByFactor())]
    assert failing == ["gradient_matches_finite_differences"]


@pytest.mark.parametrize("obj", [
    StoresOutput(), CachesByShape(), KeepsOutputInASlot(), KeepsOutputOnTheClass(),
    KeepsOutputPerThread(), KeepsOutputElsewhere(), ReusesBufferElsewhere(),
    KeepsLastPrediction(), KeepsLastPredictionElsewhere(),
], ids=type)
def test_state_between_calls_fails_the_stateless_check_alone(obj):
    checks = COST_CHECKS if isinstance(obj, nnframe.Cost) else ACTIVATION_CHECKS
    (stateless,) = [c for c in checks if c.name == "stateless"]
    with pytest.raises(AssertionError, match="keep no state between calls"):
        stateless.run(obj)
    with pytest.raises(AssertionError, match="keep no state between calls"):
        stateless.run(type(obj)())  # a fresh object fails too, not only one used before


def test_every_builtin_and_extras_object_passes_every_check():
    cases = conformance_cases("nnframe") + conformance_cases("nnframe-extras")
    assert {c.check.name for c in cases} >= {"stateless", "thread_safe"}
    assert {c.label for c in cases} >= {"tanh", "softmax", "gelu", "cost:cross_entropy",
                                        "optimizer:sgd", "optimizer:adam", "optimizer:lion"}
    for case in cases:
        case()


def test_a_stateful_tanh_shared_by_two_layers_trains_differently_and_the_kit_flags_it():
    # Issue 12: one registered object serves both hidden layers; the first layer's backward
    # then reads the output the second layer's forward left on the object.
    x = np.random.default_rng(0).standard_normal((256, 6)).astype(np.float32)
    labels = (x[:, 0] * x[:, 1] + x[:, 2] > 0).astype(int)

    def final_loss(activation):
        net = nnframe.NeuralNetwork(4, [6, 12, 12, 2], [None, activation, activation, "softmax"],
                                    "cross_entropy", seed=3)
        return net.train(32, x, labels, 8, 0.3, seed=4)["loss"][-1]

    builtin = final_loss("tanh")
    assert final_loss(Tanh()) == pytest.approx(builtin, rel=1e-5)  # sharing itself is fine
    stateful = StoresOutput()
    assert final_loss(stateful) != pytest.approx(builtin, rel=0.02)
    with pytest.raises(AssertionError, match=r"StoresOutput .* replaced self\.out"):
        check_activation(stateful)


def _fails(check, obj):
    try:
        check.run(obj)
    except AssertionError:
        return True
    return False


def test_cases_cover_every_object_and_check_of_a_plugin():
    cases = conformance_cases("nnframe-extras")
    labels = {case.label for case in cases}
    assert labels == {"leaky_relu", "softplus", "silu", "gelu", "softsign", "cost:huber",
                      "optimizer:lion"}
    assert len(cases) == 5 * len(ACTIVATION_CHECKS) + len(COST_CHECKS) + len(OPTIMIZER_CHECKS)
    for case in cases:
        case()
    builtin = conformance_cases("nnframe")
    assert {c.label for c in builtin} >= {"relu", "cost:cross_entropy", "optimizer:adam"}
    sgd = [c for c in builtin if c.label == "optimizer:sgd"]
    assert [c.check.name for c in sgd] == [c.name for c in OPTIMIZER_CHECKS]
    assert sgd[0].id == "optimizer:sgd::contract" and sgd[0].obj is BUILTIN_OPTIMIZERS[0]


def test_an_unknown_plugin_gives_one_failing_case():
    (case,) = conformance_cases("nnframe-nothing")
    with pytest.raises(AssertionError, match="no installed plugin matches 'nnframe-nothing'"):
        case()


BROKEN_PLUGIN = '''
import numpy as np
import nnframe

class Bad(nnframe.Activation):
    name = "bad_tanh"
    def forward(self, z):
        return np.tanh(z)
    def backward(self, z, a, grad):
        return grad * (1 - a)

@nnframe.hookimpl
def register_activations(register):
    register(Bad())
'''


BROKEN_OPTIMIZER = '''
import numpy as np
import nnframe

class Bad(nnframe.Optimizer):
    name = "bad_momentum"

    def __init__(self, beta=0.9):
        super().__init__(beta=beta)

    def init_state(self, param):
        return {"m": np.zeros_like(param)}

    def update(self, param, grad, state, learning_rate, step):
        grad *= learning_rate  # modifies the caller's gradient
        param -= grad

@nnframe.hookimpl
def register_optimizers(register):
    register(Bad)
'''


def _with_site(make_plugin):
    """PYTHONPATH for a child process: the throwaway plugin, then the code under test (a
    PYTHONPATH already set, such as a checkout's), not only the installed nnframe."""
    return os.pathsep.join(p for p in (str(make_plugin.site), os.environ.get("PYTHONPATH"))
                           if p)


def test_the_pytest_plugin_reports_each_check_as_an_item(make_plugin, tmp_path):
    make_plugin("nnframe-badtanh", BROKEN_PLUGIN)
    tests = tmp_path / "pkg_tests"
    tests.mkdir()
    (tests / "test_conformance.py").write_text(
        "from nnframe.testing import conformance_test\n"
        "test_conformance = conformance_test('nnframe-badtanh')\n")
    import sys

    env = {**os.environ, "PYTHONPATH": _with_site(make_plugin)}
    result = run_python("import sys, pytest; sys.exit(pytest.main(['-q', '-p', "
                        f"'no:cacheprovider', {str(tests)!r}]))", env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"1 failed, {len(ACTIVATION_CHECKS) - 1} passed" in result.stdout
    assert "test_conformance[bad_tanh::backward_matches_finite_differences]" in result.stdout
    assert sys.executable


def test_plugins_check_command(make_plugin):
    from test_cli import nnframe_cli

    result = nnframe_cli("plugins", "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gelu" in result.stdout and "all checks passed" in result.stdout
    make_plugin("nnframe-badtanh", BROKEN_PLUGIN)
    result = nnframe_cli("plugins", "--check", env={"PYTHONPATH": _with_site(make_plugin)})
    assert result.returncode == 1
    line = next(x for x in result.stdout.splitlines() if "bad_tanh" in x)
    assert "FAIL" in line and "backward_matches_finite_differences" in line
    assert "nnframe-badtanh" in line


def test_plugins_check_command_runs_the_optimizer_checks(make_plugin):
    make_plugin("nnframe-badmomentum", BROKEN_OPTIMIZER, version="0.3")
    from test_cli import nnframe_cli

    result = nnframe_cli("plugins", "--check", env={"PYTHONPATH": _with_site(make_plugin)})
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(x.startswith("ok   optimizer:adam ") for x in lines), result.stdout
    line = next(x for x in lines if "optimizer:bad_momentum" in x)
    assert line.startswith("FAIL") and "nnframe-badmomentum 0.3" in line
    assert "grad_untouched: optimizer 'bad_momentum' (Bad): update modified grad" in line


# -- optimizers ----------------------------------------------------------------------------
class Momentum(nnframe.Optimizer):
    """A correct heavy-ball rule; each broken variant below makes one mistake."""

    name = "my_momentum"

    def __init__(self, beta=0.9):
        super().__init__(beta=beta)

    def init_state(self, param):
        return {"m": np.zeros_like(param)}

    def update(self, param, grad, state, learning_rate, step):
        m = state["m"]
        m *= self.beta
        m += grad
        param -= learning_rate * m


class ModifiesGrad(Momentum):
    def update(self, param, grad, state, learning_rate, step):
        grad *= learning_rate
        param -= grad


class ModifiesGradAndPutsItBack(Momentum):
    """Leaves grad as it found it, so only a read-only gradient shows the write."""

    def update(self, param, grad, state, learning_rate, step):
        grad *= 2
        param -= learning_rate / 2 * grad
        grad /= 2


class Rebinds(Momentum):
    def update(self, param, grad, state, learning_rate, step):
        m = state["m"]
        m *= self.beta
        m += grad
        param = param - learning_rate * m  # the mistake under test: rebinds the name


class ReturnsTheStep(Momentum):
    def update(self, param, grad, state, learning_rate, step):
        return param - learning_rate * grad


class ReplacesState(Momentum):
    def update(self, param, grad, state, learning_rate, step):
        state["m"] = self.beta * state["m"] + grad
        param -= learning_rate * state["m"]


_BUFFER = np.zeros(64, dtype=np.float32)


class SharesOneBuffer(Momentum):
    """Every parameter's momentum is a view of one module-level buffer (zeroed by init_state,
    so each run alone starts clean)."""

    def init_state(self, param):
        _BUFFER[:] = 0
        return {"m": _BUFFER[:param.size].reshape(param.shape)}


class KeepsMomentumOnSelf(Momentum):
    def __init__(self, beta=0.9):
        super().__init__(beta=beta)
        self._momenta = {}

    def init_state(self, param):
        return {}

    def update(self, param, grad, state, learning_rate, step):
        m = self._momenta.setdefault(param.shape, np.zeros_like(param))
        m *= self.beta
        m += grad
        param -= learning_rate * m


_MOMENTA = {}


class KeepsMomentumByIdentity(Momentum):
    """Per-parameter momentum outside the state, keyed by the parameter array: right within
    one run, lost by a save and load (the loaded model has new arrays)."""

    def init_state(self, param):
        return {}

    def update(self, param, grad, state, learning_rate, step):
        key = id(param)
        if key not in _MOMENTA:
            _MOMENTA[key] = np.zeros_like(param)
            weakref.finalize(param, _MOMENTA.pop, key, None)
        m = _MOMENTA[key]
        m *= self.beta
        m += grad
        param -= learning_rate * m


class Ascends(Momentum):
    def update(self, param, grad, state, learning_rate, step):
        m = state["m"]
        m *= self.beta
        m += grad
        param += learning_rate * m


class Random(Momentum):
    def update(self, param, grad, state, learning_rate, step):
        super().update(param, grad, state, learning_rate * np.random.uniform(0.5, 1.5), step)


class KeepsItsOwnGenerator(Momentum):
    """Seeded, so two fresh instances agree; the same instance run again does not."""

    def __init__(self, beta=0.9):
        super().__init__(beta=beta)
        self._rng = np.random.default_rng(0)

    def update(self, param, grad, state, learning_rate, step):
        super().update(param, grad, state, learning_rate * self._rng.uniform(0.5, 1.5), step)


class RemembersTheLastStep(Momentum):
    """Halves its rate when training "restarts", using a step it keeps where no attribute
    watch looks (inside a bytearray): one run is right, a second run is not."""

    def __init__(self, beta=0.9):
        super().__init__(beta=beta)
        self._last = bytearray(1)

    def update(self, param, grad, state, learning_rate, step):
        if step < self._last[0]:
            learning_rate /= 2
        self._last[0] = max(self._last[0], min(step, 255))
        super().update(param, grad, state, learning_rate, step)


class Promotes(Momentum):
    def init_state(self, param):
        return {"m": np.zeros(param.shape)}  # float64 whatever the parameter


class ListState(Momentum):
    def init_state(self, param):
        return [np.zeros_like(param)]


class StateIsTheParameter(Momentum):
    def init_state(self, param):
        return {"m": param}


class AddsStateLater(Momentum):
    def init_state(self, param):
        return {}

    def update(self, param, grad, state, learning_rate, step):
        m = state.setdefault("m", np.zeros_like(param))
        m *= self.beta
        m += grad
        param -= learning_rate * m


class NoDefault(Momentum):
    def __init__(self, beta):
        super().__init__(beta=beta)


class ForgetsSuper(Momentum):
    def __init__(self, beta=0.9):
        self.beta = beta


class FlipsItsSetting(Momentum):
    def __init__(self, beta=0.1):
        super().__init__(beta=1 - beta)  # records 0.9, which builds a 0.1


class DividesByZero(Momentum):
    def update(self, param, grad, state, learning_rate, step):
        m = state["m"]
        m *= self.beta
        m += grad * grad
        param -= learning_rate * grad / np.sqrt(m)  # no eps


def _lion():
    from nnframe_extras import Lion

    return Lion


@pytest.mark.parametrize("cls", [*BUILTIN_OPTIMIZERS, Momentum, "lion"],
                         ids=lambda c: c if isinstance(c, str) else c.name)
def test_builtin_and_correct_optimizers_pass(cls):
    check_optimizer(_lion() if cls == "lion" else cls)


# Each broken rule fails the named check first, with a message that names the optimizer and
# says what it did: removing the check makes the test fail (no error, or another message).
@pytest.mark.parametrize("cls, check, needles", [
    (NoDefault, "contract", ["with its default hyperparameters raised InputError",
                             "needs the hyperparameter(s) beta"]),
    (ForgetsSuper, "contract", ["did not call super().__init__(**hyperparameters)"]),
    (FlipsItsSetting, "contract", ["built again with its recorded hyperparameters {'beta': 0.9}"]),
    (ListState, "init_state", ["init_state returned [array(", "must return a dict of NumPy"]),
    (StateIsTheParameter, "init_state", ["share memory (the parameter and state['m']"]),
    (Rebinds, "updates_in_place", ["left parameter 0 unchanged", "only rebinds a local name"]),
    (ReturnsTheStep, "updates_in_place", ["update returned array(", "return None"]),
    (ReplacesState, "updates_in_place", ["update replaced state['m'] of parameter 0"]),
    (AddsStateLater, "updates_in_place", ["changed the keys of the state of parameter 0 from "
                                          "[] to ['m']"]),
    (ModifiesGrad, "grad_untouched", ["update modified grad (parameter 0, step 1)"]),
    (ModifiesGradAndPutsItBack, "grad_untouched", ["update writes into grad",
                                                   "read-only"]),
    (Random, "deterministic", ["is not deterministic: two fresh instances",
                               "no random numbers"]),
    (SharesOneBuffer, "state_per_parameter", ["state['m'] of parameter 0 and state['m'] of "
                                              "parameter 1 share memory after init_state"]),
    (KeepsMomentumOnSelf, "state_per_parameter", ["update(parameter 0, step 1) changed the "
                                                  "contents of self._momenta (a dict)",
                                                  "never on self"]),
    (KeepsItsOwnGenerator, "state_per_parameter", ["parameter 0 ends elsewhere when one "
                                                   "instance updates three parameters in turn",
                                                   "perhaps outside the object"]),
    (RemembersTheLastStep, "state_per_parameter", ["the same instance, run again from fresh",
                                                   "keeps something between runs"]),
    (Promotes, "keeps_dtype", ["init_state made state['m'] of dtype float64 for a float32 "
                               "parameter", "np.zeros_like(param)"]),
    (DividesByZero, "finite_on_zero_gradient", ["where gradients are zero (float32) is "
                                                "numerically unsafe: invalid value"]),
    (Ascends, "descends", ["does not descend on a convex quadratic", "it goes uphill"]),
    (KeepsMomentumByIdentity, "save_and_load", ["3 steps, a save and load, then 4 more steps "
                                                "end with different parameters"]),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_broken_optimizers_fail_the_check_that_catches_them(cls, check, needles):
    with pytest.raises(AssertionError) as info:
        check_optimizer(cls)
    message = str(info.value)
    assert message.startswith(f"optimizer 'my_momentum' ({cls.__name__}): "), message
    for needle in needles:
        assert needle in message
    (alone,) = [c for c in OPTIMIZER_CHECKS if c.name == check]
    with pytest.raises(AssertionError) as info:
        alone.run(cls)
    assert all(needle in str(info.value) for needle in needles)
    earlier = OPTIMIZER_CHECKS[:OPTIMIZER_CHECKS.index(alone)]
    assert not [c.name for c in earlier if _fails(c, cls)]


def test_state_kept_on_self_is_also_lost_by_a_save_and_load():
    (save_and_load,) = [c for c in OPTIMIZER_CHECKS if c.name == "save_and_load"]
    with pytest.raises(AssertionError, match=r"KeepsMomentumOnSelf\): 3 steps, a save and "
                                             r"load, then 4 more steps end with different"):
        save_and_load.run(KeepsMomentumOnSelf)


def test_each_optimizer_check_has_its_own_name_and_kind():
    names = [c.name for c in OPTIMIZER_CHECKS]
    assert names == ["contract", "init_state", "updates_in_place", "grad_untouched",
                     "deterministic", "state_per_parameter", "keeps_dtype",
                     "finite_on_zero_gradient", "descends", "save_and_load"]
    assert {c.kind for c in OPTIMIZER_CHECKS} == {"optimizer"}


def test_an_instance_instead_of_the_class_is_refused():
    with pytest.raises(AssertionError, match="is an instance, not a subclass of "
                                             "nnframe.Optimizer; register the class"):
        check_optimizer(Momentum())
