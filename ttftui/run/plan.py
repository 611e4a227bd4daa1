"""A session's plan: which runs it makes, in which order, and how many it will have made.

The plan is the one owner of three counts that several threads touch (the runner, load workers,
Ray executors): the run ids handed out, each scenario's next iteration, and ``planned`` — the runs
this session will have made when it is idle again (the selected scenarios, plus each re-run taken
up, minus what a skip or a lost worker left out). Front ends show "run k/planned".
"""

from __future__ import annotations

import threading
from typing import Sequence

from ttftui.analysis.load import plan_for, planned_runs
from ttftui.core.config import Config
from ttftui.measure.engine.base import PreparedScenario


class Plan:
    def __init__(self, config: Config, names: Sequence[str]):
        self.config = config
        self.names = list(names)
        self._lock = threading.Lock()
        self._run_id = 0
        self._iters: dict[str, int] = {}
        self._planned = sum(self.runs_of(n) for n in self.names)

    # ------------------------------------------------------------------ counts
    @property
    def planned(self) -> int:
        return self._planned

    @property
    def started(self) -> int:
        """Runs started so far (the last run id handed out)."""
        return self._run_id

    def runs_of(self, name: str) -> int:
        """Runs scenario ``name`` makes: warm-up + counted runs, or its load plan's requests."""
        return planned_runs(self.config, self.config.scenario(name))

    def add(self, n: int) -> None:
        with self._lock:
            self._planned += n

    def drop(self, n: int) -> None:
        """``n`` planned runs will not be made (a skip, a stop, a lost worker)."""
        with self._lock:
            self._planned -= n

    def set_planned(self, n: int) -> None:
        with self._lock:
            self._planned = n

    def next_run(self, name: str) -> tuple[int, int]:
        """A new run id and the scenario's next iteration number."""
        with self._lock:
            self._run_id += 1
            it = self._iters.get(name, 0)
            self._iters[name] = it + 1
            return self._run_id, it

    def reserve(self, name: str, n: int) -> tuple[int, int]:
        """``n`` consecutive run ids and iterations of ``name`` handed out at once (to executors that
        start the runs elsewhere); returns the first of each."""
        with self._lock:
            rid0, it0 = self._run_id + 1, self._iters.get(name, 0)
            self._run_id += n
            self._iters[name] = it0 + n
            return rid0, it0

    def new_run_id(self) -> int:
        with self._lock:
            self._run_id += 1
            return self._run_id

    # ------------------------------------------------------------------ order
    def is_load(self, name: str) -> bool:
        return plan_for(self.config.run, self.config.scenario(name)) is not None

    def conversation(self, name: str) -> list[str]:
        """The selected turns of the conversation ``name`` belongs to, in turn order (empty: not a
        conversation's turn). A conversation runs as a whole: turn 1 to T, then the next one."""
        fam = self.config.scenario(name).conversation
        if fam is None:
            return []
        turns = [n for n in self.names if self.config.scenario(n).conversation == fam]
        return sorted(turns, key=lambda n: self.config.scenario(n).turn or 0)

    def largest(self, prepared: dict[str, PreparedScenario]) -> PreparedScenario | None:
        """The scenario a ``largest_first`` warm-up runs: the largest prompt + answer of the plan
        (its buffers, KV depth and kernels are then paid for outside the statistics)."""
        if self.config.run.warmup_policy != "largest_first" or not self.names:
            return None
        single = [prepared[n] for n in self.names if not self.conversation(n)]  # a turn needs the ones before it
        if not single:
            return None
        return max(single, key=lambda p: p.prompt_tokens + p.scenario.max_tokens)

    def rounds(self) -> tuple[list[str], list[str]]:
        """(scenarios run in interleaved rounds, scenarios run one after another): with
        ``run.order = interleaved`` every ordinary scenario goes in rounds and load scenarios
        follow in order; otherwise every scenario runs in order."""
        if self.config.run.order != "interleaved":
            return [], list(self.names)
        rounds = [n for n in self.names if not self.is_load(n) and not self.conversation(n)]
        return rounds, [n for n in self.names if n not in rounds]

    def interleaved(self, preps: Sequence[PreparedScenario]) -> list[tuple[PreparedScenario, bool]]:
        """Every scenario's warm-ups, then one counted run of each in turn: ``(scenario, warm-up)``."""
        rc = self.config.run
        return ([(p, True) for p in preps for _ in range(rc.warmup)]
                + [(p, False) for _ in range(rc.iterations) for p in preps])
