"""The Optimizer contract and the built-in update rules, checked against torch.optim.

Each built-in runs 20 steps on a (5, 3) matrix and a (1, 3) bias with the same random float64
gradients and a learning rate that changes every step, in nnframe and in the torch.optim class
with the same settings; parameters and state must agree to rtol 1e-12. PyTorch is optional on
a developer machine (those tests skip) and required in CI (they fail without it).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_optimizer_registry import LION

import nnframe
from nnframe.builtins.optimizers import (
    BUILTIN_OPTIMIZERS,
    SGD,
    Adagrad,
    Adam,
    AdamW,
    RMSprop,
    register_optimizers,
)
from nnframe.errors import InputError, PluginContractError
from nnframe.optimizers import Optimizer, accepted_hyperparameters, create

SHAPES = ((5, 3), (1, 3))
STEPS = 20


def rate(k: int) -> float:
    """The learning rate of step k (0-based): it changes, so every step must use its own."""
    return 0.05 * (1 + 0.1 * (k % 5))


def problem(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    start = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    for row in grads:
        for g in row:
            g.flags.writeable = False  # an update that writes into grad raises
    return start, grads


def run(optimizer: Optimizer, start, grads, steps=STEPS):
    """The tiny driver: state from init_state, steps counted from 1, one update per
    parameter per step."""
    params = [p.copy() for p in start]
    states = [optimizer.init_state(p) for p in params]
    for k in range(steps):
        for param, grad, state in zip(params, grads[k], states, strict=True):
            optimizer.update(param, grad, state, rate(k), k + 1)
    return params, states


# (nnframe class, nnframe hyperparameters, torch class name, torch keyword arguments)
CASES = [
    (SGD, {}, "SGD", {}),
    (SGD, {"momentum": 0.9}, "SGD", {"momentum": 0.9}),
    (SGD, {"momentum": 0.9, "dampening": 0.3}, "SGD", {"momentum": 0.9, "dampening": 0.3}),
    (SGD, {"momentum": 0.9, "nesterov": True}, "SGD", {"momentum": 0.9, "nesterov": True}),
    (SGD, {"weight_decay": 0.05}, "SGD", {"weight_decay": 0.05}),
    (SGD, {"momentum": 0.5, "dampening": 0.2, "weight_decay": 0.05}, "SGD",
     {"momentum": 0.5, "dampening": 0.2, "weight_decay": 0.05}),
    (SGD, {"momentum": 0.8, "nesterov": True, "weight_decay": 0.05}, "SGD",
     {"momentum": 0.8, "nesterov": True, "weight_decay": 0.05}),
    (Adam, {}, "Adam", {}),
    (Adam, {"beta1": 0.5, "beta2": 0.9, "eps": 1e-4}, "Adam", {"betas": (0.5, 0.9), "eps": 1e-4}),
    (Adam, {"weight_decay": 0.1}, "Adam", {"weight_decay": 0.1}),
    (Adam, {"beta1": 0.0, "beta2": 0.5}, "Adam", {"betas": (0.0, 0.5)}),
    (AdamW, {}, "AdamW", {}),
    (AdamW, {"weight_decay": 0}, "AdamW", {"weight_decay": 0.0}),
    (AdamW, {"beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.2}, "AdamW",
     {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.2}),
    (RMSprop, {}, "RMSprop", {}),
    (RMSprop, {"alpha": 0.9, "eps": 1e-6}, "RMSprop", {"alpha": 0.9, "eps": 1e-6}),
    (RMSprop, {"momentum": 0.9}, "RMSprop", {"momentum": 0.9}),
    (RMSprop, {"weight_decay": 0.1, "momentum": 0.5}, "RMSprop",
     {"weight_decay": 0.1, "momentum": 0.5}),
    (Adagrad, {}, "Adagrad", {}),
    (Adagrad, {"eps": 1e-6, "weight_decay": 0.1}, "Adagrad", {"eps": 1e-6, "weight_decay": 0.1}),
]


def case_id(case) -> str:
    cls, hyper, _, _ = case
    return cls.name + "".join(f"-{k}={v}" for k, v in hyper.items())


def run_torch(torch, name, kwargs, start, grads):
    params = [torch.tensor(p, requires_grad=True) for p in start]
    opt = getattr(torch.optim, name)(params, lr=rate(0), foreach=False, **kwargs)
    for k in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = rate(k)
        for param, grad in zip(params, grads[k], strict=True):
            param.grad = torch.tensor(grad)
        opt.step()
    return params, opt


def max_relative_difference(ours, theirs) -> float:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    return float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-300)))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_torch_optim(torch, case):
    cls, hyper, torch_name, torch_kwargs = case
    start, grads = problem()
    params, states = run(create(cls, hyper), start, grads)
    torch_params, opt = run_torch(torch, torch_name, torch_kwargs, start, grads)
    compared = 0
    for param, state, torch_param in zip(params, states, torch_params, strict=True):
        expected = torch_param.detach().numpy()
        assert param.dtype == np.float64 and param.shape == expected.shape
        np.testing.assert_allclose(param, expected, rtol=1e-12, atol=1e-14)
        torch_state = opt.state[torch_param]
        for key, value in state.items():  # nnframe's state keys are torch's names
            np.testing.assert_allclose(value, torch_state[key].numpy(), rtol=1e-12, atol=1e-14,
                                       err_msg=key)
            compared += 1
    assert compared == sum(len(s) for s in states)
    if cls in (Adam, AdamW, RMSprop, Adagrad) or hyper.get("momentum"):
        assert compared > 0


def test_the_torch_comparison_catches_a_wrong_bias_correction(torch):
    class OffByOneAdam(Adam):  # bias corrections of the next step: a plausible slip
        def update(self, param, grad, state, learning_rate, step):
            super().update(param, grad, state, learning_rate, step + 1)

    start, grads = problem()
    params, _ = run(create(OffByOneAdam), start, grads)
    torch_params, _ = run_torch(torch, "Adam", {}, start, grads)
    assert max_relative_difference(params[0], torch_params[0].detach().numpy()) > 1e-6


# -- the contract, with the issue's example verbatim ------------------------------------------

# The plugin module exactly as the issue writes it, shared with test_optimizer_registry.
_lion_module: dict = {}
exec(LION, _lion_module)
Lion = _lion_module["Lion"]


def test_a_third_party_optimizer_written_as_in_the_issue():
    lion = create(Lion, {"beta2": 0.95})
    assert nnframe.Optimizer is Optimizer and "Optimizer" in nnframe.__all__
    assert (lion.beta1, lion.beta2, lion.weight_decay) == (0.9, 0.95, 0.0)
    assert lion.hyperparameters == {"beta1": 0.9, "beta2": 0.95, "weight_decay": 0.0}
    lion.hyperparameters["beta1"] = 5  # a copy: the recorded values cannot drift
    assert lion.hyperparameters["beta1"] == 0.9
    assert repr(lion) == "<Lion 'lion'(beta1=0.9, beta2=0.95, weight_decay=0.0)>"
    assert accepted_hyperparameters(Lion) == ("beta1", "beta2", "weight_decay")

    start, grads = problem()
    params, states = run(lion, start, grads, steps=3)
    expected, m = start[0].copy(), np.zeros_like(start[0])
    for k in range(3):
        g = grads[k][0]
        expected -= rate(k) * np.sign(0.9 * m + 0.1 * g)
        m = 0.95 * m + 0.05 * g
    np.testing.assert_array_equal(params[0], expected)
    np.testing.assert_allclose(states[0]["m"], m, rtol=1e-15)


def test_unknown_hyperparameter_names_it_and_lists_the_accepted_ones():
    with pytest.raises(InputError) as info:
        create(Adam, {"betas": (0.9, 0.99)})
    message = str(info.value)
    assert "'betas'" in message and "beta1, beta2, eps, weight_decay" in message
    assert "did you mean 'beta" in message
    with pytest.raises(InputError, match="no hyperparameter 'lr'.*it accepts: beta1, beta2, "
                                         "weight_decay"):
        create(Lion, {"lr": 0.1})
    with pytest.raises(InputError, match="it accepts: none"):
        class Plain(Optimizer):
            name = "plain"

        create(Plain, {"momentum": 0.9})


@pytest.mark.parametrize("value", [[0.9], (0.9, 0.99), None, np.array([0.9]), {"a": 1},
                                   float("nan"), float("inf"), object()])
def test_hyperparameters_must_be_plain_values(value):
    with pytest.raises(InputError, match="hyperparameter beta1 must be a"):
        create(Lion, {"beta1": value})
    with pytest.raises(InputError, match="hyperparameter beta1 must be a"):
        Lion(beta1=value)  # direct construction is checked too


def test_numpy_scalars_are_recorded_as_python_values():
    sgd = create(SGD, {"momentum": np.float64(0.5), "nesterov": np.bool_(True)})
    assert type(sgd.momentum) is float and type(sgd.nesterov) is bool
    assert sgd.hyperparameters == {"momentum": 0.5, "dampening": 0.0, "nesterov": True,
                                   "weight_decay": 0.0}


BAD_VALUES = [
    (SGD, {"momentum": -0.1}, "momentum must be a number in [0, inf], got -0.1"),
    (SGD, {"dampening": 1.5}, "dampening must be a number in [0, 1], got 1.5"),
    (SGD, {"nesterov": True}, "nesterov=True needs momentum > 0 and dampening = 0"),
    (SGD, {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "dampening=0.1"),
    (SGD, {"nesterov": "yes"}, "nesterov must be True or False, got 'yes'"),
    (SGD, {"weight_decay": -1}, "weight_decay must be a number in [0, inf], got -1"),
    (Adam, {"beta1": 1.0}, "beta1 must be a number in [0, 1), got 1.0"),
    (Adam, {"beta2": -0.5}, "beta2 must be a number in [0, 1), got -0.5"),
    (Adam, {"beta1": True}, "beta1 must be a number in [0, 1), got True"),
    (Adam, {"beta1": "0.9"}, "beta1 must be a number in [0, 1), got '0.9'"),
    (Adam, {"eps": 0}, "eps must be a number in (0, inf], got 0"),
    (AdamW, {"weight_decay": -0.01}, "weight_decay must be a number in [0, inf], got -0.01"),
    (RMSprop, {"alpha": 1}, "alpha must be a number in [0, 1), got 1"),
    (RMSprop, {"momentum": -1}, "momentum must be a number in [0, inf], got -1"),
    (Adagrad, {"eps": -1e-10}, "eps must be a number in (0, inf], got -1e-10"),
]


@pytest.mark.parametrize("cls, hyper, message", BAD_VALUES)
def test_bad_values_are_refused_with_the_accepted_range(cls, hyper, message):
    with pytest.raises(InputError) as info:
        create(cls, hyper)
    assert message in str(info.value)
    assert f"optimizer '{cls.name}'" in str(info.value)


def test_contract_breaches_are_plugin_contract_errors():
    class Forgetful(Optimizer):
        name = "forgetful"

        def __init__(self, rate=0.1):
            self.rate = rate

    class Partial(Optimizer):
        name = "partial"

        def __init__(self, a=1.0, b=2.0):
            super().__init__(a=a)

    class Shadowing(Optimizer):
        name = "shadowing"

        def __init__(self, update=1.0):
            super().__init__(update=update)

    with pytest.raises(PluginContractError, match="did not call super"):
        create(Forgetful)
    with pytest.raises(PluginContractError, match="accepts b but does not pass it on"):
        create(Partial)
    with pytest.raises(PluginContractError, match="cannot be named 'update'"):
        create(Shadowing)
    with pytest.raises(PluginContractError, match="not a subclass of nnframe.Optimizer"):
        create(dict)


def test_missing_required_hyperparameter():
    class Needs(Optimizer):
        name = "needs"

        def __init__(self, scale, shift=0.0):
            super().__init__(scale=scale, shift=shift)

    with pytest.raises(InputError, match="needs the hyperparameter.*scale; it accepts: "
                                         "scale, shift"):
        create(Needs)
    assert create(Needs, {"scale": 2}).hyperparameters == {"scale": 2, "shift": 0.0}


def test_defaults_are_torchs():
    assert create(SGD).hyperparameters == {"momentum": 0.0, "dampening": 0.0,
                                           "nesterov": False, "weight_decay": 0.0}
    assert create(Adam).hyperparameters == {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                                            "weight_decay": 0.0}
    assert create(AdamW).hyperparameters["weight_decay"] == 0.01
    assert create(RMSprop).hyperparameters == {"alpha": 0.99, "eps": 1e-8,
                                               "weight_decay": 0.0, "momentum": 0.0}
    assert create(Adagrad).hyperparameters == {"eps": 1e-10, "weight_decay": 0.0}
    registered = []
    register_optimizers(registered.append)
    assert registered == list(BUILTIN_OPTIMIZERS)
    assert [c.name for c in registered] == ["sgd", "adam", "adamw", "rmsprop", "adagrad"]


# -- numerics every built-in owes ---------------------------------------------------------------

class Float32Only(np.ndarray):
    """Fails any NumPy ufunc that sees or makes anything but float32 (an upcast scalar, a
    float64 temporary)."""

    calls = 0

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        for x in (*inputs, *(out or ())):
            if isinstance(x, (np.ndarray, np.generic)):
                assert x.dtype == np.float32, f"{ufunc.__name__} sees {x.dtype}"
        plain = [x.view(np.ndarray) if isinstance(x, Float32Only) else x for x in inputs]
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, Float32Only) else o
                                  for o in out)
        result = getattr(ufunc, method)(*plain, **kwargs)
        assert result.dtype == np.float32, f"{ufunc.__name__} makes {result.dtype}"
        Float32Only.calls += 1
        return out[0] if out is not None else result.view(Float32Only)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_float32_stays_float32_without_float64_temporaries(case):
    cls, hyper, _, _ = case
    start, grads = problem(np.float32)
    start = [p.view(Float32Only) for p in start]
    grads = [[g.view(Float32Only) for g in row] for row in grads]
    Float32Only.calls = 0
    params, states = run(create(cls, hyper), start, grads)
    assert Float32Only.calls > 0
    reference, _ = run(create(cls, hyper), *problem(np.float64))
    for param, state, ref in zip(params, states, reference, strict=True):
        assert param.dtype == np.float32
        assert all(v.dtype == np.float32 and v.shape == param.shape for v in state.values())
        np.testing.assert_allclose(param.view(np.ndarray), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_grad_is_never_modified(case):
    cls, hyper, _, _ = case
    start, grads = problem()
    copies = [[g.copy() for g in row] for row in grads]
    run(create(cls, hyper), start, grads)  # the grads are read-only: a write would raise
    for row, copy in zip(grads, copies, strict=True):
        for g, c in zip(row, copy, strict=True):
            np.testing.assert_array_equal(g, c)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_plain_sgd_is_exactly_param_minus_rate_times_grad(dtype):
    sgd = create(SGD)
    start, grads = problem(dtype)
    param = start[0].copy()
    state = sgd.init_state(param)
    assert state == {}
    lr = dtype(0.05)
    sgd.update(param, grads[0][0], state, 0.05, 1)
    expected = start[0] - lr * grads[0][0]
    assert param.dtype == dtype and param.tobytes() == expected.tobytes()
    assert state == {}


def test_steps_count_from_one():
    # Step 1 is where the rules differ from later steps: SGD's buffer starts as the gradient
    # (undampened), and Adam's bias corrections make its first move lr * sign(grad).
    start, grads = problem()
    params, _ = run(create(SGD, {"momentum": 0.9, "dampening": 0.5}), start, grads, steps=1)
    np.testing.assert_array_equal(params[0], start[0] - rate(0) * grads[0][0])
    params, _ = run(create(Adam, {"eps": 1e-12}), start, grads, steps=1)
    np.testing.assert_allclose(start[0] - params[0], rate(0) * np.sign(grads[0][0]),
                               rtol=1e-9)

    seen = []

    class Recorder(Optimizer):
        name = "recorder"

        def update(self, param, grad, state, learning_rate, step):
            seen.append(step)

    run(create(Recorder), start, grads, steps=3)
    assert seen == [1, 1, 2, 2, 3, 3]


CONVEX = [(SGD, {}, 0.1), (SGD, {"momentum": 0.9, "nesterov": True}, 0.05), (Adam, {}, 0.05),
          (AdamW, {}, 0.05), (RMSprop, {}, 0.01), (RMSprop, {"momentum": 0.5}, 0.01),
          (Adagrad, {}, 0.5)]


@pytest.mark.parametrize("cls, hyper, lr", CONVEX, ids=lambda x: getattr(x, "name", str(x)))
def test_descends_on_a_convex_quadratic(cls, hyper, lr):
    rng = np.random.default_rng(1)
    target = rng.standard_normal((5, 3))
    param = np.zeros((5, 3))
    optimizer = create(cls, hyper)
    state = optimizer.init_state(param)

    def loss(p):
        return 0.5 * float(np.sum((p - target) ** 2))

    first = loss(param)
    for step in range(1, 201):
        optimizer.update(param, param - target, state, lr, step)
    assert loss(param) < 0.01 * first, (first, loss(param))


def test_a_hyperparameter_cannot_hide_a_property():
    class Hidden(Optimizer):
        name = "hidden"

        def __init__(self, scale=1.0):
            super().__init__(scale=scale)

        @property
        def scale(self):
            return 2.0

    with pytest.raises(PluginContractError, match="cannot be named 'scale'"):
        create(Hidden)
