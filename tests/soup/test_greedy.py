"""The greedy soup recipe with a stand-in scorer: ranking, keeping on ties, refusing what makes it worse."""

import pytest
import torch

from clipctl.errors import CheckpointError
from clipctl.soup.greedy import greedy_soup
from clipctl.soup.ingredients import Ingredient

# The held-out score of a one-number "model": best at 1.0, worse the further away.
TARGET = 1.0


def _score(state_dict, label):
    return -abs(float(state_dict["w"][0]) - TARGET)


def _reader(values: dict[str, float], reads: list[str] | None = None):
    def read(spec):
        if reads is not None:
            reads.append(spec)
        return Ingredient(spec, {"w": torch.tensor([values[spec]], dtype=torch.float64)})

    return read


def test_adds_a_checkpoint_only_when_the_soup_does_not_get_worse():
    # alone: a -0.1, x -0.12, d -0.15, b -0.3, c -2.0 (ranked in that order)
    values = {"a": 0.9, "b": 1.3, "c": 3.0, "d": 1.15, "x": 0.88}
    reads: list[str] = []
    result = greedy_soup(list(values), _reader(values, reads), _score)
    assert [s.checkpoint for s in result.steps] == ["a", "x", "d", "b", "c"]
    # a+x = 0.89 (worse than a alone): refused; a+d = 1.025: kept; +b = 1.117, +c = 1.68: refused
    assert [s.kept for s in result.steps] == [True, False, True, False, False]
    assert result.kept == ["a", "d"]
    assert float(result.state_dict["w"][0]) == pytest.approx(1.025)
    assert result.top1 == pytest.approx(-0.025)
    assert [s.soup_top1 for s in result.steps] == pytest.approx([-0.1, -0.1, -0.025, -0.025, -0.025])
    # each checkpoint read once to rank it and once more when its turn comes, never kept in memory
    assert sorted(reads) == sorted(list(values) * 2)


def test_soup_never_scores_below_its_best_checkpoint():
    values = {"a": 0.2, "b": 5.0, "c": -3.0, "d": 0.95, "e": 1.7}
    result = greedy_soup(list(values), _reader(values), _score)
    best_alone = max(_score({"w": torch.tensor([v])}, k) for k, v in values.items())
    assert result.top1 >= best_alone
    assert _score(result.state_dict, "") == pytest.approx(result.top1)
    assert "b" not in result.kept and "c" not in result.kept


def test_a_tie_is_kept_and_ranking_ties_keep_the_given_order():
    values = {"x": 0.5, "y": 1.5, "z": 1.0}  # x and y tie alone (-0.5); z is best (0)
    result = greedy_soup(list(values), _reader(values), _score)
    assert [s.checkpoint for s in result.steps] == ["z", "x", "y"]
    assert result.kept == ["z"]  # z+x = 0.75 and z+y = 1.25 are both worse than z alone
    flat = {"p": 1.0, "q": 1.0}
    assert greedy_soup(list(flat), _reader(flat), _score).kept == ["p", "q"]  # no drop: kept


def test_mismatched_architecture_is_refused_before_scoring_the_rest():
    def read(spec):
        key = "w" if spec != "bad" else "v"
        return Ingredient(spec, {key: torch.zeros(1)})

    with pytest.raises(CheckpointError, match="first differing key 'w' is missing"):
        greedy_soup(["good", "bad"], read, _score)
