"""Optimizers are the third plugin kind: registered classes, found and built by name."""

import pytest

import nnframe
from nnframe import InputError, PluginWarning, UnknownNameError
from nnframe.builtins.optimizers import SGD, Adam

LION = """
import numpy as np
import nnframe

class Lion(nnframe.Optimizer):
    name = "lion"

    def __init__(self, beta1=0.9, beta2=0.99, weight_decay=0.0):
        super().__init__(beta1=beta1, beta2=beta2, weight_decay=weight_decay)

    def init_state(self, param):
        return {"m": np.zeros_like(param)}

    def update(self, param, grad, state, learning_rate, step):
        m = state["m"]
        param -= learning_rate * np.sign(self.beta1 * m + (1 - self.beta1) * grad)
        m *= self.beta2
        m += (1 - self.beta2) * grad

@nnframe.hookimpl
def register_optimizers(register):
    register(Lion)
"""

# The issue's plugin under a name of its own: nnframe-extras, installed with the tests,
# registers the real "lion", and two plugins claiming one name make it unusable.
THROWAWAY_LION = LION.replace('name = "lion"', 'name = "throwaway_lion"')


def test_builtins_are_listed_and_built_by_name():
    from nnframe.registry import get_registry

    names = nnframe.list_optimizers()
    assert names == sorted(names)
    assert {"adagrad", "adam", "adamw", "rmsprop", "sgd"} <= set(names)
    providers = {name: entry.provider.distribution
                 for name, entry in get_registry().entries["optimizer"].items()}
    assert {providers[n] for n in ("adagrad", "adam", "adamw", "rmsprop", "sgd")} == {"nnframe"}
    assert providers.get("lion") == "nnframe-extras"  # the example plugin, installed for tests
    adam = nnframe.get_optimizer("ADAM", beta1=0.8)
    assert type(adam) is Adam and adam.beta1 == 0.8 and adam.beta2 == 0.999
    assert nnframe.get_optimizer("sgd") is not nnframe.get_optimizer("sgd")  # fresh each time
    assert type(nnframe.get_optimizer("sgd")) is SGD


def test_unknown_name_lists_and_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'adam'.*adagrad, adam, adamw"):
        nnframe.get_optimizer("adan")


def test_unknown_hyperparameter_names_it_and_lists_the_accepted():
    with pytest.raises(InputError, match="no hyperparameter 'momentun'.*momentum"):
        nnframe.get_optimizer("sgd", momentun=0.9)


def test_a_third_party_optimizer_written_as_in_the_issue_works_by_name(make_plugin):
    make_plugin("nnframe-lion", THROWAWAY_LION)
    nnframe.reload_plugins()
    assert "throwaway_lion" in nnframe.list_optimizers()
    lion = nnframe.get_optimizer("throwaway_lion", beta2=0.95)
    assert lion.hyperparameters == {"beta1": 0.9, "beta2": 0.95, "weight_decay": 0.0}
    from nnframe.registry import provider_of
    assert provider_of(lion).distribution == "nnframe-lion"


@pytest.mark.parametrize("registered, problem", [
    ("Lion()", "an instance"),                 # an instance instead of the class
    ("int", "not a subclass of nnframe.Optimizer"),
])
def test_registering_something_else_is_reported(make_plugin, registered, problem):
    make_plugin("nnframe-lion",
                THROWAWAY_LION.replace("register(Lion)", f"register({registered})"))
    with pytest.warns(PluginWarning, match=problem):
        nnframe.reload_plugins()
    assert "throwaway_lion" not in nnframe.list_optimizers()
    assert "adam" in nnframe.list_optimizers()  # the built-ins are unharmed


def test_a_class_that_cannot_build_with_its_defaults_is_reported(make_plugin):
    broken = THROWAWAY_LION.replace("def __init__(self, beta1=0.9,", "def __init__(self, beta1,")
    make_plugin("nnframe-lion", broken)
    with pytest.warns(PluginWarning, match="throwaway_lion"):
        nnframe.reload_plugins()
    assert "throwaway_lion" not in nnframe.list_optimizers()


def test_plugins_command_lists_optimizers_with_their_provider():
    from test_cli import nnframe_cli

    result = nnframe_cli("plugins")
    assert result.returncode == 0, result.stderr
    section = result.stdout.split("Optimizers:")[1]
    assert "adam" in section and "nnframe 0.1.0" in section


def test_unknown_name_with_third_party_plugins_off_says_so_not_pip(monkeypatch):
    monkeypatch.setenv("NNFRAME_BUILTINS_ONLY", "1")
    nnframe.reload_plugins()
    with pytest.raises(UnknownNameError) as info:
        nnframe.get_activation("gelu")
    assert "NNFRAME_BUILTINS_ONLY" in str(info.value) and "pip" not in str(info.value)
