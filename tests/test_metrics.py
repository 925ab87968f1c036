import math

import pytest

from memla_core.metrics import mean, prefers_new, token_accuracy, token_set_f1, transferability


def test_token_set_f1_hand_computed():
    # pred {1,2,3}, ref {2,3,4,5}: common 2, P = 2/3, R = 2/4, F1 = 2·(2/3·1/2)/(2/3+1/2) = 4/7
    assert token_set_f1([1, 2, 3], [2, 3, 4, 5]) == pytest.approx(4 / 7)
    assert token_set_f1([7, 7, 8], [8, 7]) == 1.0  # sets, not multisets
    assert token_set_f1([1], [2]) == 0.0
    assert token_set_f1([], [2]) == 0.0


def test_prefers_new_and_accuracy():
    assert prefers_new(math.log(0.3), math.log(0.2))
    assert not prefers_new(math.log(0.2), math.log(0.2))
    assert token_accuracy([True, False, True, True]) == 0.75
    assert token_accuracy([]) == 0.0


def test_transferability_excludes_source_and_nan():
    scores = {"en": 100.0, "zh": 50.0, "fr": 0.0, "de": math.nan}
    assert transferability(scores, "en") == 25.0
    assert math.isnan(mean([math.nan]))
