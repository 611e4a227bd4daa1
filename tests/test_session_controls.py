"""The runner's controls: skip the rest of a scenario, re-run one, and what the plan then counts."""

from __future__ import annotations

import threading

import pytest

from ttftui.measure.engine.synthetic import SyntheticEngine
from ttftui.core.events import RunFinished, RunStarted
from ttftui.run.session import Controls, SessionRunner

from .conftest import make_config, wait_until

SCENARIOS = [{"name": "a", "prompt_tokens": 16, "max_tokens": 4}, {"name": "b", "prompt_tokens": 16, "max_tokens": 4}]


def _config():
    return make_config(run={"iterations": 2, "warmup": 1}, scenarios=SCENARIOS)


class RecordingStop(threading.Event):
    """A stop flag that records every wait the runner makes on it and returns at once: the untimed
    pauses between runs are checked by what the runner asked for, not by the wall clock."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return super().wait(0)


def test_skip_leaves_out_the_rest_of_the_scenario_and_the_plan_shrinks():
    cfg = _config()
    controls = Controls()
    events: list = []

    def publish(ev):
        events.append(ev)
        if isinstance(ev, RunStarted) and ev.scenario == "a":
            controls.skip_scenario.set()  # pressed during a's first run: that run ends, a's others never start

    runner = SessionRunner(cfg, lambda: SyntheticEngine(cfg, "test"), publish, controls=controls)
    assert runner.planned_runs == 6
    runner.run()
    done = [e.scenario for e in events if isinstance(e, RunFinished)]
    assert done == ["a", "b", "b", "b"]
    assert runner.planned_runs == len(done) == 4


def test_interleaved_order_runs_every_warm_up_then_one_counted_run_of_each_in_turn():
    cfg = make_config(run={"iterations": 3, "warmup": 1, "order": "interleaved"}, scenarios=SCENARIOS)
    events: list = []
    runner = SessionRunner(cfg, lambda: SyntheticEngine(cfg, "test"), events.append)
    runner.run()
    started = [(e.scenario, e.warmup, e.iteration) for e in events if isinstance(e, RunStarted)]
    assert started == [("a", True, 0), ("b", True, 0), ("a", False, 1), ("b", False, 1), ("a", False, 2),
                       ("b", False, 2), ("a", False, 3), ("b", False, 3)]
    assert runner.planned_runs == 8


def test_a_skip_in_interleaved_order_leaves_out_the_rest_of_the_scenario_that_just_ran():
    cfg = make_config(run={"iterations": 3, "warmup": 0, "order": "interleaved"}, scenarios=SCENARIOS)
    controls = Controls()
    events: list = []

    def publish(ev):
        events.append(ev)
        if isinstance(ev, RunStarted) and ev.scenario == "b" and ev.iteration == 0:
            controls.skip_scenario.set()  # during b's first run: b's other rounds never start

    runner = SessionRunner(cfg, lambda: SyntheticEngine(cfg, "test"), publish, controls=controls)
    runner.run()
    done = [e.scenario for e in events if isinstance(e, RunFinished)]
    assert done == ["a", "b", "a", "a"] and runner.planned_runs == 4


def test_rerun_extends_the_plan_and_the_session_says_when_it_is_idle():
    cfg = _config()
    controls = Controls(keep_alive=True)
    events: list = []
    runner = SessionRunner(cfg, lambda: SyntheticEngine(cfg, "test"), events.append, scenarios=["a"],
                           controls=controls)
    worker = threading.Thread(target=runner.run, daemon=True)
    worker.start()
    try:
        wait_until(lambda: runner.idle, what="the plan to be done")
        assert runner.planned_runs == 3 == sum(isinstance(e, RunFinished) for e in events)
        controls.requests.put("b")  # a scenario outside the selection can be run on request too
        wait_until(lambda: sum(isinstance(e, RunFinished) for e in events) == 6 and runner.idle,
                   what="the re-run to be done")
        assert runner.planned_runs == 6
        assert [e.scenario for e in events if isinstance(e, RunFinished)] == ["a"] * 3 + ["b"] * 3
    finally:
        controls.request_stop()
        worker.join(60)
    assert not worker.is_alive()


def test_quitting_the_dashboard_after_the_plan_is_a_completed_session_and_before_it_an_interrupted_one():
    from ttftui.measure.engine.synthetic import CostModel
    from ttftui.core.events import SessionFinished
    from ttftui.run.live import LiveSource

    cfg = _config()
    done = LiveSource(cfg, ["a"], lambda: SyntheticEngine(cfg, "test"))
    done.start()
    wait_until(lambda: done.runner.idle, what="the plan to be done")
    done.stop()
    done.join(60)
    assert [e.status for e in done.drain() if isinstance(e, SessionFinished)] == ["completed"]

    # 2,000 tokens at 20 tok/s: the first run alone lasts 100 s, so the stop lands inside it however slow
    # the machine is (and ends it between two tokens)
    long = make_config(run={"iterations": 2, "warmup": 1}, scenarios=[{**SCENARIOS[0], "max_tokens": 2000}])
    slow = LiveSource(long, ["a"], lambda: SyntheticEngine(long, "test", pace=True, cost=CostModel.with_decode_rate(20)))
    slow.start()
    wait_until(lambda: slow.runner.engine is not None and slow.runner.plan.started >= 1, what="a run to start")
    slow.stop()
    slow.join(60)
    assert not slow.alive
    assert [e.status for e in slow.drain() if isinstance(e, SessionFinished)] == ["interrupted"]


def test_the_untimed_gap_comes_before_every_run_but_the_first_scenarios_included():
    """The dashboard draws a run's results in this gap; without it before a scenario's first run,
    the previous run's redraw fell inside that run's prefill."""
    cfg = make_config(run={"iterations": 2, "warmup": 0}, scenarios=SCENARIOS)
    stop = RecordingStop()
    controls = Controls(stop=stop, between_runs_s=0.3)
    events: list = []
    SessionRunner(cfg, lambda: SyntheticEngine(cfg, "test"), events.append, controls=controls).run()
    assert sum(isinstance(e, RunFinished) for e in events) == 4
    # a, a | b, b: three gaps of 0.3 s, one of them between the scenarios (each waited in slices)
    assert sum(stop.waits) == pytest.approx(0.9) and max(stop.waits) < 0.3


def test_run_pause_ms_pauses_before_every_run_but_the_first_outside_the_timings():
    cfg = make_config(run={"iterations": 3, "warmup": 0, "pause_ms": 80}, scenarios=SCENARIOS[:1])
    stop = RecordingStop()
    events: list = []
    SessionRunner(cfg, lambda: SyntheticEngine(cfg, "test"), events.append, controls=Controls(stop=stop)).run()
    assert sum(stop.waits) == pytest.approx(0.16)  # two pauses of 80 ms: before runs 2 and 3, none before 1
    done = [e for e in events if isinstance(e, RunFinished)]
    plain: list = []
    cfg0 = make_config(run={"iterations": 3, "warmup": 0}, scenarios=SCENARIOS[:1])
    SessionRunner(cfg0, lambda: SyntheticEngine(cfg0, "test"), plain.append).run()
    assert [e.e2e_ns for e in done] == [e.e2e_ns for e in plain if isinstance(e, RunFinished)]  # not timed


def _stopped_hosts() -> list:
    """Engine host children of this process that are stopped (SIGSTOP)."""
    import psutil

    return [c for c in psutil.Process().children()
            if "ttftui.measure.engine_process" in " ".join(c.cmdline()) and c.status() == psutil.STATUS_STOPPED]


@pytest.mark.parametrize("at", ["init", "load", "prepare"])
def test_a_stop_ends_the_session_while_its_engine_host_is_stopped_starting_loading_or_preparing(at):
    """Ctrl-C while the engine host is stopped before any run (still starting, loading the model,
    building a prompt): it never answers, so after engine.stop_grace_s it is killed and the session
    ends as a stopped one, saying why; nothing is left behind."""
    import psutil

    from ttftui.core.events import Notice, SessionFinished
    from ttftui.measure.engine_process.proxy import HostedEngine

    cfg = make_config(engine={"kind": "synthetic", "host": "process", "stop_grace_s": 0.5}, run={"iterations": 2},
                      scenarios=SCENARIOS)
    controls = Controls()
    events: list = []
    runner = SessionRunner(cfg, lambda: HostedEngine(cfg, "synthetic", synthetic_reason="test",
                                                     env={"TTFTUI_ENGINE_FAULT": f"SIGSTOP at={at}"}),
                           events.append, controls=controls)
    worker = threading.Thread(target=runner.run, daemon=True)
    worker.start()
    try:
        (host,) = wait_until(_stopped_hosts, what=f"the engine host to stop at {at}")
        controls.request_stop()
        worker.join(60)
        assert not worker.is_alive()
    finally:
        for h in _stopped_hosts():
            h.kill()
    assert [e.status for e in events if isinstance(e, SessionFinished)] == ["interrupted"]
    assert runner.error is None
    assert any(isinstance(e, Notice) and e.level == "warning" and "did not answer within 0.5 s" in e.message
               for e in events)
    assert not psutil.pid_exists(host.pid) or host.status() == psutil.STATUS_ZOMBIE
