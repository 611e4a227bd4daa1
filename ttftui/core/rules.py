"""Alert rules: what must hold, e.g. "p95 of ttft_ms for scenario medium <= 200". Validated when the
configuration is read (the metric must be one of the registry's); evaluated by
:mod:`ttftui.analysis.alerts`."""

from __future__ import annotations

import math
import operator
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ttftui.core import registry

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_PCT = re.compile(r"^p(\d+(?:\.\d+)?)$")


class Strict(BaseModel):
    """What every file a user writes (config.toml, its alert rules, a theme) is read as: unknown keys
    are errors, values are frozen, a TOML boolean is not a count (``iterations = true``), a string not
    a number, and inf or nan not a number at all."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class AlertRule(Strict):

    name: str = Field("", description="label in the dashboard and reports; derived from the rule when empty")
    metric: str
    statistic: str = Field("p95", description="per_run | mean | min | max | pNN (e.g. p50, p99.9)")
    op: Literal["<", "<=", ">", ">="] = Field("<=", description="what must hold: metric <op> value")
    value: float
    scenario: str | None = Field(None, description="only this scenario; default: every scenario separately")
    severity: Literal["warning", "critical"] = "warning"
    min_runs: int = Field(1, ge=1, description="counted runs needed before the rule can fire")

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        allowed = registry.names(rule=True)
        if v not in allowed:
            raise ValueError(f"unknown metric {v!r} (expected one of: {', '.join(allowed)})")
        return v

    @field_validator("statistic")
    @classmethod
    def _statistic(cls, v: str) -> str:
        if v in ("per_run", "mean", "min", "max"):
            return v
        m = _PCT.match(v)
        if m and 0 <= float(m.group(1)) <= 100:
            return v
        raise ValueError(f"unknown statistic {v!r} (expected per_run, mean, min, max or pNN such as p95)")

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("value must be a finite number")
        return v

    @model_validator(mode="after")
    def _label(self) -> "AlertRule":
        if not self.name:
            where = f" [{self.scenario}]" if self.scenario else ""
            object.__setattr__(self, "name", f"{self.statistic} {self.metric} {self.op} {self.value:g}{where}")
        return self

    def holds(self, observed: float) -> bool:
        return OPS[self.op](observed, self.value)

    @property
    def percentile(self) -> float | None:
        m = _PCT.match(self.statistic)
        return float(m.group(1)) if m else None
