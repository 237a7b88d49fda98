"""Learning-rate schedules: the fourth plugin kind. The built-ins follow
torch.optim.lr_scheduler epoch by epoch; a schedule drives train's per-epoch rate, is saved
with the model and resumes exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnframe
from nnframe import InputError, MissingPluginError, PluginRuntimeError, UnknownNameError
from nnframe.builtins.schedules import Constant, Cosine, Exponential, Step

INVERSE_SQRT = """
import math
import nnframe

class InverseSqrt(nnframe.Schedule):
    name = "inverse_sqrt"

    def __init__(self, scale=1.0):
        super().__init__(scale=scale)

    def rate(self, base_rate, epoch, num_epochs):
        return base_rate / math.sqrt(1 + epoch / self.scale)

@nnframe.hookimpl
def register_schedules(register):
    register(InverseSqrt)
"""


def network(seed=0):
    return nnframe.NeuralNetwork(3, [5, 12, 3], [None, "relu", "softmax"], "cross_entropy",
                                 dtype=np.float64, seed=seed)


def data(n=90):
    rng = np.random.default_rng(4)
    x = rng.random((n, 5))
    return x, (x[:, 0] > x[:, 1]).astype(int) + (x[:, 2] > 0.6)


def test_builtins_are_listed_and_built_by_name():
    assert set(nnframe.list_schedules()) >= {"constant", "cosine", "exponential", "step"}
    step = nnframe.get_schedule("STEP", step_size=3)
    assert type(step) is Step and step.hyperparameters == {"step_size": 3, "gamma": 0.1,
                                                           "warmup": 0}


@pytest.mark.parametrize("name, hyper, error, message", [
    ("cosin", {}, UnknownNameError, "Did you mean 'cosine'"),
    ("step", {}, InputError, "needs the hyperparameter.*step_size"),
    ("step", {"step_size": 0}, InputError, r"step_size must be a number in \[1, inf\]"),
    ("step", {"step_size": 2.5}, InputError, "whole number"),
    ("exponential", {"gamma": 0.9, "gama": 1}, InputError, "no hyperparameter 'gama'"),
    ("cosine", {"warmup": -1}, InputError, "warmup"),
    ("cosine", {"eta_min": float("nan")}, InputError, "finite"),
])
def test_bad_names_and_settings_say_what_is_wrong(name, hyper, error, message):
    with pytest.raises(error, match=message):
        nnframe.get_schedule(name, **hyper)


def torch_rates(torch, make, epochs, warmup=0):
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=0.1)
    scheduler = make(opt)
    if warmup:
        scheduler = torch.optim.lr_scheduler.SequentialLR(
            opt, [torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / (warmup + 1),
                                                    total_iters=warmup), scheduler],
            milestones=[warmup])
    rates = []
    for _ in range(epochs):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return rates


CASES = [
    (Constant(), lambda t, o: t.optim.lr_scheduler.ConstantLR(o, factor=1.0), 0),
    (Step(step_size=3, gamma=0.5), lambda t, o: t.optim.lr_scheduler.StepLR(o, 3, 0.5), 0),
    (Exponential(gamma=0.8), lambda t, o: t.optim.lr_scheduler.ExponentialLR(o, 0.8), 0),
    (Cosine(), lambda t, o: t.optim.lr_scheduler.CosineAnnealingLR(o, 12), 0),
    (Cosine(t_max=5, eta_min=0.01),
     lambda t, o: t.optim.lr_scheduler.CosineAnnealingLR(o, 5, eta_min=0.01), 0),
    (Step(step_size=2, warmup=3), lambda t, o: t.optim.lr_scheduler.StepLR(o, 2, 0.1), 3),
    (Cosine(warmup=2), lambda t, o: t.optim.lr_scheduler.CosineAnnealingLR(o, 10), 2),
]


@pytest.mark.parametrize("schedule, make, warmup", CASES, ids=[repr(c[0]) for c in CASES])
def test_rates_match_torch_lr_scheduler(torch, schedule, make, warmup):
    ours = [schedule.rate(0.1, epoch, 12) for epoch in range(12)]
    np.testing.assert_allclose(ours, torch_rates(torch, lambda o: make(torch, o), 12, warmup),
                               rtol=1e-12, atol=1e-15)


def test_train_uses_the_schedule_per_epoch_and_records_it():
    x, ids = data()
    net = network()
    history = net.train(30, x, ids, 4, 0.2, schedule=nnframe.get_schedule("step", step_size=2),
                        seed=0)
    assert history["learning_rate"] == pytest.approx([0.2, 0.2, 0.02, 0.02])
    assert net.epochs == 4 and net.schedule.name == "step"
    # each epoch really used its rate: one epoch at 0.02 from the same start is the same
    again = network()
    again.train(30, x, ids, 2, 0.2, seed=0)
    again.train(30, x, ids, 1, 0.2 * 0.1)
    net3 = network()
    net3.train(30, x, ids, 3, 0.2, schedule=nnframe.get_schedule("step", step_size=2), seed=0)
    assert all(np.array_equal(p, q) for p, q in zip(again.parameters(), net3.parameters(),
                                                    strict=True))


def test_without_a_schedule_the_base_rate_is_used_and_a_callback_sees_the_rate():
    x, ids = data()
    seen = []
    network().train(30, x, ids, 2, 0.3, seed=0,
                    callback=lambda s: seen.append(s.learning_rate) if s.epoch_done else None)
    assert seen == [0.3, 0.3]


def test_two_epochs_save_load_three_more_equal_five_with_a_schedule(tmp_path):
    x, ids = data()
    first = network()
    first.train(30, x, ids, 2, 0.05, optimizer="adam",
                schedule=nnframe.get_schedule("cosine", t_max=4, warmup=1), seed=2)
    first.save(tmp_path / "m.pkl")
    resumed = nnframe.load(tmp_path / "m.pkl")
    assert resumed.epochs == 2 and resumed.schedule.hyperparameters["t_max"] == 4
    resumed.train(30, x, ids, 3, 0.05)
    whole = network()
    whole.train(30, x, ids, 5, 0.05, optimizer="adam",  # t_max: 5 epochs less the warmup
                schedule=nnframe.get_schedule("cosine", warmup=1), seed=2)
    assert all(np.array_equal(p, q) for p, q in zip(resumed.parameters(), whole.parameters(),
                                                    strict=True))
    assert resumed.history == whole.history


def test_a_plugin_schedule_works_by_name_and_is_named_when_missing(tmp_path, make_plugin,
                                                                   monkeypatch):
    make_plugin("nnframe-invsqrt", INVERSE_SQRT)
    nnframe.reload_plugins()
    x, ids = data()
    net = network()
    history = net.train(30, x, ids, 3, 0.1, schedule="inverse_sqrt", seed=0)
    assert history["learning_rate"] == pytest.approx([0.1 / math.sqrt(1 + e) for e in range(3)])
    net.save(tmp_path / "m.pkl")
    monkeypatch.setenv("NNFRAME_BUILTINS_ONLY", "1")
    nnframe.reload_plugins()
    orphan = nnframe.load(tmp_path / "m.pkl")
    assert orphan.schedule is None and orphan.predict(None, x).shape == (90, 3)
    with pytest.raises(MissingPluginError, match="schedule 'inverse_sqrt'.*nnframe-invsqrt"):
        orphan.train(30, x, ids, 1, 0.1)
    orphan.train(30, x, ids, 1, 0.1, schedule="constant")


class Broken(nnframe.Schedule):
    name = "broken"

    def __init__(self, value=float("nan")):
        super().__init__()
        self.value = value

    def rate(self, base_rate, epoch, num_epochs):
        if self.value == "raise":
            raise RuntimeError("no rate today")
        return self.value


@pytest.mark.parametrize("value, message", [
    (float("nan"), "returned nan as the learning rate of epoch 2"),
    (-1.0, "returned -1.0"),
    ("raise", "raised RuntimeError in rate: no rate today"),
])
def test_a_schedule_returning_a_bad_rate_is_named_and_nothing_changes(value, message):
    x, ids = data()
    net = network()
    net.train(30, x, ids, 1, 0.1, seed=0)
    start = [p.copy() for p in net.parameters()]
    broken = Broken()
    broken.value = value
    with pytest.raises(PluginRuntimeError, match=f"schedule 'broken'.*{message}"):
        net.train(30, x, ids, 2, 0.1, schedule=broken)
    assert net.epochs == 1
    assert all(np.array_equal(p, q) for p, q in zip(net.parameters(), start, strict=True))


@pytest.mark.parametrize("bad, message", [
    (3, "schedule must be a name such as 'cosine'"),
    (Step, "schedule is the class Step; pass an instance"),
])
def test_a_wrong_schedule_argument_says_what_is_expected(bad, message):
    x, ids = data()
    with pytest.raises(InputError, match=message):
        network().train(30, x, ids, 1, 0.1, schedule=bad)


# -- the conformance kit ------------------------------------------------------------------
def test_every_builtin_and_a_plugin_schedule_pass_the_kit(make_plugin):
    from nnframe.builtins.schedules import BUILTIN_SCHEDULES
    from nnframe.testing import check_schedule, conformance_cases

    for cls in BUILTIN_SCHEDULES:
        check_schedule(cls)
    make_plugin("nnframe-invsqrt", INVERSE_SQRT)
    nnframe.reload_plugins()
    cases = [c for c in conformance_cases("nnframe-invsqrt")]
    assert {c.id for c in cases} >= {"schedule:inverse_sqrt::stateless",
                                     "schedule:inverse_sqrt::finite_nonnegative"}
    for case in cases:
        case()


class Negative(nnframe.Schedule):
    name = "negative"

    def rate(self, base_rate, epoch, num_epochs):
        return base_rate * (1 - epoch / 5)  # below 0 after epoch 5


class Counting(nnframe.Schedule):
    name = "counting"
    calls = 0

    def rate(self, base_rate, epoch, num_epochs):
        Counting.calls += 1
        return base_rate


class Halving(nnframe.Schedule):
    name = "halving"

    def __init__(self):
        super().__init__()
        self.current = None

    def rate(self, base_rate, epoch, num_epochs):  # remembers: wrong after a resume
        self.current = base_rate if self.current is None else self.current / 2
        return self.current


class NeedsSettings(nnframe.Schedule):
    name = "needs_settings"

    def __init__(self, period):
        super().__init__(period=period)

    def rate(self, base_rate, epoch, num_epochs):
        return base_rate


@pytest.mark.parametrize("cls, check, message", [
    (Negative, "finite_nonnegative", r"rate\(0.1, 6, 10\) returned -0.0199"),
    (Counting, "stateless", "rate changed the schedule.*Counting.calls"),
    (Halving, "stateless", "rate changed the schedule.*self.current"),
    (NeedsSettings, "contract", "example_hyperparameters"),
])
def test_broken_schedules_fail_the_named_check(cls, check, message):
    from nnframe.testing import SCHEDULE_CHECKS

    found = next(c for c in SCHEDULE_CHECKS if c.name == check)
    with pytest.raises(AssertionError, match=f"schedule '{cls.name}'.*{message}"):
        found.run(cls)


def test_a_schedule_started_by_a_call_of_no_epochs_spans_the_next_call():
    x, ids = data()
    net = network()
    net.train(30, x, ids, 0, 0.1, schedule="cosine", seed=1)
    rates = net.train(30, x, ids, 4, 0.1)["learning_rate"]
    assert rates == pytest.approx([0.1, 0.1 * (1 + math.cos(math.pi / 4)) / 2, 0.05,
                                   0.1 * (1 + math.cos(3 * math.pi / 4)) / 2])
