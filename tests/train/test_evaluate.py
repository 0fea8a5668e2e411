"""When evaluation runs during training. The metrics themselves are clipctl.eval's (tests/eval checks them
against OpenCLIP's)."""

from __future__ import annotations

from clipctl.train.evaluate import should_run


def test_evaluation_frequency_runs_every_n_epochs_and_at_the_end():
    assert [e for e in range(1, 8) if should_run(3, e, 7)] == [3, 6, 7]
    assert not should_run(0, 7, 7)
