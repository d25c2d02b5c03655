"""A cancel is a flag the signal handler sets and the run's own loops act on (``runs.cancellable``): the
handler never raises, so no exception is ever raised inside foreign code that checks signals itself."""

import os
import signal

import pytest

from profilers import runs


def test_a_signal_inside_the_block_is_noted_and_raised_only_at_a_checkpoint():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with runs.cancellable():
        runs.checkpoint()  # nothing asked yet
        os.kill(os.getpid(), signal.SIGTERM)
        assert runs.cancel_requested() == "SIGTERM"  # noted, nothing raised at the signal
        with pytest.raises(runs.Cancelled, match="SIGTERM"):
            runs.checkpoint()
    assert runs.cancel_requested() is None  # forgotten with the block
    assert {s: signal.getsignal(s) for s in before} == before  # the previous handlers are back


def test_ctrl_c_is_noted_like_the_dashboard_s_cancel():
    with runs.cancellable():
        os.kill(os.getpid(), signal.SIGINT)
        assert runs.cancel_requested() == "SIGINT"
        with pytest.raises(runs.Cancelled):
            runs.pause(5.0)  # a wait a cancel cuts short
    with pytest.raises(KeyboardInterrupt):  # outside a run Ctrl-C is Python's own again
        os.kill(os.getpid(), signal.SIGINT)


def test_nested_blocks_keep_the_request_until_the_outermost_ends():
    with runs.cancellable():
        with pytest.raises(runs.Cancelled), runs.cancellable():
            os.kill(os.getpid(), signal.SIGTERM)
            runs.checkpoint()
        assert runs.cancel_requested() == "SIGTERM"  # an inner run's cancel stops the outer one too
        with pytest.raises(runs.Cancelled):
            runs.checkpoint()
    assert runs.cancel_requested() is None


def test_a_cancel_is_not_an_exception_a_point_s_error_handling_catches():
    with pytest.raises(runs.Cancelled), runs.cancellable():
        os.kill(os.getpid(), signal.SIGTERM)
        try:
            runs.checkpoint()
        except Exception:  # a point's "failed with the error" path
            pytest.fail("a cancel was taken for a point's failure")


def test_a_stored_run_ends_cancelled_at_its_next_checkpoint(tmp_path):
    from profilers.spec import SweepSpec
    from profilers.store import Store

    with Store(tmp_path / "r.db") as store:
        run_id = store.create_run(SweepSpec(variants=("rmsnorm",), impls=("native",), shapes=((64, 64),)), {}, {}, 3)
        steps = []
        with runs.stored_run(store, outcome := runs.Outcome(run_id)):
            for step in range(3):
                runs.checkpoint()
                steps.append(step)
                if step == 1:
                    os.kill(os.getpid(), signal.SIGTERM)  # the dashboard's Cancel, mid-step
        assert steps == [0, 1] and outcome.status == "cancelled" and outcome.exit_code == 130
        run = store.get_run(run_id)
        assert run["status"] == "cancelled" and run["error"] == runs.CANCELLED_BY_USER
