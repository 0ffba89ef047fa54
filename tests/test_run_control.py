"""The learning-rate schedule and the --step-budget parser, against hand-computed values."""

import math

import pytest

from semicrf.genomics.control import lr_factor
from semicrf.genomics.run_config import RunError, parse_step_budget, parse_time_budget


def test_constant_without_warmup_is_exactly_one():
    assert all(lr_factor(s, 10, 0, "constant", 0.1) == 1.0 for s in range(12))


def test_linear_warmup_then_constant():
    # Over the first 4 steps: 1/4, 2/4, 3/4, 4/4; then 1.
    assert [lr_factor(s, 10, 4, "constant", 0.1) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_runs_from_one_to_the_minimum_at_the_last_step():
    total, ratio = 11, 0.1  # steps 0..10; t = step / 10
    got = [lr_factor(s, total, 0, "cosine", ratio) for s in range(total)]
    assert got[0] == 1.0
    assert got[10] == pytest.approx(0.1, abs=1e-15)
    assert got[5] == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-15)  # cos(pi/2) = 0: halfway
    assert got[2] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.2)), abs=1e-15)
    assert all(a > b for a, b in zip(got, got[1:]))  # strictly decreasing


def test_cosine_after_warmup_starts_at_one():
    # Warm-up 2 of 7 steps: 0.5, 1.0, then cosine over steps 2..6 (t = (step - 2) / 4), ending at 0.2.
    got = [lr_factor(s, 7, 2, "cosine", 0.2) for s in range(7)]
    assert got[:3] == [0.5, 1.0, 1.0]
    assert got[4] == pytest.approx(0.2 + 0.8 * 0.5, abs=1e-15)
    assert got[6] == pytest.approx(0.2, abs=1e-15)


def test_cosine_with_a_single_step_after_warmup_ends_at_the_minimum():
    assert lr_factor(1, 2, 1, "cosine", 0.3) == pytest.approx(0.3)
    assert lr_factor(0, 1, 0, "cosine", 0.3) == pytest.approx(0.3)


def test_step_budget_parses_and_names_what_is_wrong():
    models = ["softmax", "pytorch-crf", "semicrf", "oracle"]
    assert parse_step_budget(None, models) == {}
    assert parse_step_budget("pytorch-crf=20, semicrf=5", models) == {"pytorch-crf": 20, "semicrf": 5}
    for text, message in [("pytorch-crf", "is not MODEL=N"), ("hmm=3", "unknown model"),
                          ("linear=3", "not among --models"), ("oracle=3", "trains nothing"),
                          ("softmax=0", "integer >= 1"), ("softmax=2.5", "integer >= 1"),
                          ("softmax=2,softmax=3", "twice")]:
        with pytest.raises(RunError, match=message) as info:
            parse_step_budget(text, models)
        assert "--step-budget" in str(info.value)


def test_time_budget_parses_seconds_and_names_what_is_wrong():
    models = ["softmax", "pytorch-crf", "oracle"]
    assert parse_time_budget(None, models) == {}
    assert parse_time_budget("pytorch-crf=1200, softmax=0.5", models) == {"pytorch-crf": 1200.0, "softmax": 0.5}
    for text, message in [("pytorch-crf", "is not MODEL=SECONDS"), ("hmm=3", "unknown model"),
                          ("linear=3", "not among --models"), ("oracle=3", "trains nothing"),
                          ("softmax=0", "seconds > 0"), ("softmax=-1", "seconds > 0"), ("softmax=inf", "seconds > 0"),
                          ("softmax=soon", "seconds > 0"), ("softmax=2,softmax=3", "twice")]:
        with pytest.raises(RunError, match=message) as info:
            parse_time_budget(text, models)
        assert "--time-budget" in str(info.value)
