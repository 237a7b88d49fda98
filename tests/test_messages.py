"""Messages that show a value nnframe did not make stay short, whatever the value."""

import pytest

import nnframe
from nnframe._text import brief


class LoudRepr:
    def __repr__(self):
        return "x" * 10_000_000


class BrokenRepr:
    def __repr__(self):
        raise RuntimeError("no repr")


def nested(depth=40):
    x = ["lol"]
    for _ in range(depth):
        x = [x] * 4
    return x


@pytest.mark.parametrize("value", [nested(), "n" * 10_000_000, LoudRepr(), BrokenRepr(),
                                   10**5000, {i: i for i in range(10**5)}],
                         ids=["nested", "long-str", "loud-repr", "broken-repr", "huge-int",
                              "big-dict"])
def test_brief_is_bounded_and_never_raises(value):
    assert len(brief(value)) <= 120


@pytest.mark.parametrize("call", [
    lambda v: nnframe.get_activation(v),
    lambda v: nnframe.get_cost(v),
    lambda v: nnframe.NeuralNetwork(2, [3, 2], [None, v], "cross_entropy"),
    lambda v: nnframe.NeuralNetwork(2, [3, 2], [v, "softmax"], "cross_entropy"),
    lambda v: nnframe.NeuralNetwork(2, [3, 2], [None, "softmax"], v),
    lambda v: nnframe.NeuralNetwork(2, [3, 2], [None, "softmax"], "cross_entropy", dtype=v),
    lambda v: nnframe.NeuralNetwork(2, [3, 2], [None, "softmax"], "cross_entropy").save(v),
])
@pytest.mark.parametrize("value", [nested(), "relu" * 2_500_000, LoudRepr(), BrokenRepr()],
                         ids=["nested", "long-str", "loud-repr", "broken-repr"])
def test_user_values_in_errors_are_bounded(call, value):
    with pytest.raises(nnframe.NNFrameError) as info:
        call(value)
    assert len(str(info.value)) < 1500


def test_a_long_unknown_name_gets_no_quadratic_suggestion_search():
    with pytest.raises(nnframe.UnknownNameError) as info:
        nnframe.get_activation("relu" + "x" * 1_000_000)
    assert len(str(info.value)) < 1500 and info.value.suggestion is None
