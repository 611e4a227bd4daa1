"""The headless report, built from state: ``build_report(state)`` is a pure function of the
reducer's state, so a live session and the replay of its recording give the same report. Its shape
is :mod:`ttftui.report.schema`'s.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict
from typing import Any

from ttftui import __version__
from ttftui.analysis import gpu_driver
from ttftui.analysis.alerts import latest_alerts
from ttftui.analysis.metrics import RunMetrics, ScenarioStats, statistic, telemetry_gaps
from ttftui.analysis.reducer import SessionState
from ttftui.analysis.stats import Summary
from ttftui.analysis.view import SessionView
from ttftui.core import registry
from ttftui.core.definitions import DEFINITIONS
from ttftui.core.events import ModelFacts
from ttftui.core.sane import utf8_text
from ttftui.report.schema import (
    AlertRecord,
    AlertStatus,
    ConversationRecord,
    CrashRecord,
    DecodeBreakdown,
    DiffusionRecord,
    FailedRun,
    FitRecord,
    HostEngineRecord,
    HostRecord,
    LlamaCounters,
    LoadRecord,
    MetricSummary,
    ModelMemory,
    OpKindRecord,
    OpsCostRecord,
    OpsPhaseRecord,
    OpsRecord,
    LayerRecord,
    PrefixRecord,
    NoticeRecord,
    Prediction,
    RemoteRecord,
    Report,
    RunRecord,
    ScenarioSummary,
    SessionInfo,
    SweepRecord,
    TelemetryReport,
    WorkerLostRecord,
)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _summary(s: Summary) -> MetricSummary:
    return MetricSummary(**{k: _clean(v) for k, v in s.as_dict().items()})


# A report field named differently from the event field it comes from (the report's names are the
# published schema's; everything else is copied by name).
_REMOTE_RENAMED = {"status": "http_status", "server_chunks_ms": "server_prefill_chunks_ms",
                   "server_chunk_tokens": "server_prefill_chunk_tokens"}


def _by_name(model: type, *sources: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``model`` that the sources hold, by name (the first source that has one wins);
    tuples become lists, as JSON has them."""
    out: dict[str, Any] = {}
    for src in sources:
        for k, v in src.items():
            if k in model.model_fields and k not in out:
                out[k] = list(v) if isinstance(v, tuple) else v
    return out


def _run_record(m: RunMetrics, fin: Any = None, cold_reason: str | None = None, worker: str | None = None,
                interval_ms: float | None = None, series: dict[str, gpu_driver.Series] | None = None) -> RunRecord:
    """A run as the report has it: RunMetrics' fields by name; a server's account (``remote``) and
    the per-token parts (``decode_breakdown``) in their own records; telemetry figures under
    ``telemetry``; any other registry metric of the run under ``figures``."""
    driver = gpu_driver.phase_figures(series or {}, m.t_start_ns, m.t_start_ns + int(m.ttft_ms * 1e6), m.t_end_ns)
    remote = None
    r = getattr(fin, "remote", None)
    if r is not None:
        timing = {_REMOTE_RENAMED.get(k, k): v for k, v in dataclasses.asdict(r).items()}
        remote = RemoteRecord(**_by_name(RemoteRecord, m.extra, timing))
    breakdown = None
    tp = getattr(fin, "token_parts", None)
    if tp is not None and tp.n:
        medians = {k.removesuffix("_ns") + "_ms": v / 1e6 for k, v in dataclasses.asdict(tp).items() if k.endswith("_ns")}
        breakdown = DecodeBreakdown(n_tokens=tp.n, **_by_name(DecodeBreakdown, medians, m.extra))
    diffusion = _diffusion(fin.diffusion) if getattr(fin, "diffusion", None) is not None else None
    conv = getattr(fin, "conversation", None)
    conversation = ConversationRecord(**dataclasses.asdict(conv)) if conv is not None else None
    ops = _ops(fin.ops) if getattr(fin, "ops", None) is not None else None
    pre = getattr(fin, "prefix", None)
    prefix = None
    if pre is not None:
        fields = {k: v for k, v in dataclasses.asdict(pre).items() if k not in ("reuse_ns", "save_ns")}
        prefix = PrefixRecord(**fields, reuse_ms=None if pre.reuse_ns is None else pre.reuse_ns / 1e6,
                              save_ms=None if pre.save_ns is None else pre.save_ns / 1e6)
    llama = LlamaCounters(**dataclasses.asdict(m.llama)) if m.llama is not None else None
    placed = {*RunRecord.model_fields, *(RemoteRecord.model_fields if remote else ()),
              *(DecodeBreakdown.model_fields if breakdown else ())}
    telemetry = {k: v for k, v in m.extra.items() if registry.BY_NAME.get(k) is None
                 or registry.BY_NAME[k].source == "telemetry"}
    figures = {k: v for k, v in m.extra.items() if k not in placed and k not in telemetry}
    return RunRecord(
        **_by_name(RunRecord, dataclasses.asdict(m) | {"llama": llama, "remote": remote, "decode_breakdown": breakdown,
                                                       "diffusion": diffusion, "conversation": conversation,
                                                       "prefix": prefix, "ops": ops}),
        cold=cold_reason is not None, cold_reason=cold_reason,
        telemetry={**telemetry, **driver} or None, figures=figures,
        t_start_ms=m.t_start_ns / 1e6, worker=worker,
        telemetry_gaps=telemetry_gaps(m, interval_ms, driver, series),
    )


def _ops_phase(phases: list[Any]) -> OpsPhaseRecord:
    """Phases summed: their spans, compute, and each kind's and layer's time."""
    span = sum(p.span_ns for p in phases)
    kinds: dict[str, list[int]] = {}
    layers: dict[Any, int] = {}
    for p in phases:
        for k in p.kinds:
            v = kinds.setdefault(k.kind, [0, 0, 0])
            v[0] += k.ns
            v[1] += k.count
            v[2] += k.bytes
        for lt in p.layers:
            layers[lt.layer] = layers.get(lt.layer, 0) + lt.ns
    return OpsPhaseRecord(
        span_ms=span / 1e6, compute_ms=sum(p.compute_ns for p in phases) / 1e6,
        kinds=[OpKindRecord(kind=k, ms=v[0] / 1e6, pct=v[0] / span * 100 if span else 0.0, count=v[1], bytes=v[2])
               for k, v in sorted(kinds.items(), key=lambda kv: -kv[1][0])],
        layers=[LayerRecord(layer=k, ms=v / 1e6) for k, v in sorted(layers.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))])


def _ops(o: Any) -> OpsRecord:
    chunks = [p for p in o.phases if p.phase == "prefill_chunk"]
    decode = [p for p in o.phases if p.phase == "decode"]
    return OpsRecord(mode=o.mode, prefill=_ops_phase(chunks), chunks=[_ops_phase([c]) for c in chunks],
                     decode=_ops_phase(decode) if decode else None)


def _ops_cost(view: SessionView) -> dict[str, OpsCostRecord]:
    out = {}
    for name, st in view.stats.items():
        plain = name.removesuffix("@ops")
        if plain == name or plain not in view.stats:
            continue
        a, b = view.stats[plain].metrics.get("prefill_ms"), st.metrics.get("prefill_ms")
        pa = a.percentiles.get("p50") if a is not None else None
        pb = b.percentiles.get("p50") if b is not None else None
        out[name] = OpsCostRecord(plain_scenario=plain, plain_prefill_p50_ms=pa, profiled_prefill_p50_ms=pb,
                                  ratio=pb / pa if pa and pb is not None else None)
    return out


def _diffusion(d: Any) -> DiffusionRecord:
    ms = lambda xs: [x / 1e6 for x in xs]  # noqa: E731
    opt = lambda ns: None if ns is None else ns / 1e6  # noqa: E731
    return DiffusionRecord(
        schedule=d.schedule, algorithm=d.algorithm, sampling=d.sampling, steps_planned=d.steps_planned,
        steps=len(d.step_forward_ns), answer_tokens=d.answer_tokens, canvas_tokens=d.canvas_tokens,
        canvas_ms=d.canvas_ns / 1e6, first_commit_ms=opt(d.first_commit_at_ns), first_commit_step=d.first_commit_step,
        first_readable_ms=opt(d.first_readable_at_ns), first_readable_step=d.first_readable_step,
        final_ms=d.final_at_ns / 1e6, per_step_forward_ms=ms(d.step_forward_ns),
        per_step_logits_ms=ms(d.step_logits_ns), per_step_select_ms=ms(d.step_select_ns),
        per_step_commit_ms=ms(d.step_commit_ns), per_step_end_ms=ms(d.step_end_at_ns),
        per_step_commits=list(d.step_commits),
    )


def _scenario_summary(s: ScenarioStats, goodput_pct: float | None = None, n_cold: int = 0) -> ScenarioSummary:
    return ScenarioSummary(
        goodput_pct=goodput_pct, n_cold=n_cold,
        n_runs=s.n_runs, n_warmup=s.n_warmup, n_failed=s.n_failed, n_prompt_tokens=s.n_prompt_tokens,
        dominant_component=s.dominant_component, dominant_share_pct=s.dominant_share_pct,
        component_medians_ms=s.component_medians_ms,
        metrics={k: _summary(v) for k, v in s.metrics.items()},
    )


def sampling_interval_ms(state: SessionState, worker: str | None) -> float | None:
    """The sampling interval where ``worker`` ran (None: no sampler there, or nothing it can sample)."""
    st = state.telemetry_status if worker is None else state.worker_telemetry_status.get(worker)
    return st.interval_ms if st is not None and st.backend != "none" else None


def _telemetry(state: SessionState, worker: str | None = None, model: ModelFacts | None = None,
               driver: dict[str, gpu_driver.Series] | None = None) -> TelemetryReport | None:
    """The session's telemetry, or (``worker``) a Ray engine host's own; ``driver``: the GPU driver's
    samples there, as the runs' figures used them."""
    st = state.telemetry_status if worker is None else state.worker_telemetry_status.get(worker)
    if st is None:
        return None
    log = state.telemetry_of(worker)
    samples = [s for s in log if s.mark is None]
    marked = {s.mark: s for s in log if s.mark is not None}

    def delta(field: str) -> int | None:
        a, b = marked.get("before_load"), marked.get("after_load")
        if a is None or b is None or getattr(a, field) is None or getattr(b, field) is None:
            return None
        return int(getattr(b, field) - getattr(a, field))

    gaps = [(b.t_ns - a.t_ns) / 1e6 for a, b in zip(samples, samples[1:])]
    dur_s = (state.last_t_ns - (state.session.t_ns if state.session else 0)) / 1e9
    if worker is None:
        model = state.engine.model if state.engine else None
    w = model.weights_bytes if model else None
    kv = model.kv_cache_bytes if model else None
    return TelemetryReport(
        backend=st.backend, gpu_name=st.gpu_name, interval_ms=st.interval_ms,
        n_samples=len(samples), missed_ticks=st.missed_ticks, sampler_cpu_s=st.sampler_cpu_s,
        sampler_cpu_pct_of_core=(st.sampler_cpu_s / dur_s * 100) if st.sampler_cpu_s is not None and dur_s > 0 else None,
        achieved_interval_ms_mean=statistic("mean", gaps), achieved_interval_ms_max=statistic("max", gaps),
        unavailable=dict(st.unavailable),
        driver=gpu_driver.periods(driver or {}),
        driver_unavailable=dict(st.driver_unavailable),
        session={key: statistic(stat, [v for s in samples if (v := getattr(s, f.name)) is not None])
                 for f in registry.SAMPLE_FIELDS for key, stat in f.session},
        series=_series(samples),
        model_memory=ModelMemory(
            weights_estimate_bytes=w, kv_cache_estimate_bytes=kv,
            estimate_total_bytes=(w + kv) if w is not None and kv is not None else None,
            measured_gpu_delta_bytes=delta("gpu_mem_used_bytes"), measured_rss_delta_bytes=delta("rss_bytes"),
        ),
    )


MAX_SERIES = 2000


def _series(samples: list[Any]) -> dict[str, list[float | None]]:
    if not samples:
        return {}
    step = -(-len(samples) // MAX_SERIES)
    picked = samples[::step]
    out: dict[str, list[float | None]] = {"t_ms": [s.t_ns / 1e6 for s in picked]}
    for f in registry.sample_fields(series=True):
        vals = [getattr(s, f) for s in picked]
        if any(v is not None for v in vals):
            out[f] = [None if v is None else float(v) for v in vals]
    return out


def _alert_status(state: SessionState) -> list[AlertStatus]:
    return [AlertStatus(rule=a.rule, scenario=a.scenario, severity=a.severity, state=a.state, times_fired=n)
            for a, n in latest_alerts(state.alerts).values()]


def _sweeps(view: SessionView) -> dict[str, SweepRecord]:
    out = {}
    for fam, f in view.sweeps.items():
        fits = {k: (FitRecord(**f[k].as_dict()) if f[k] is not None else None)  # type: ignore[union-attr]
                for k in ("ttft", "prefill", "chunk_per_token_vs_depth")}
        out[fam] = SweepRecord(lengths=f["lengths"], predictions=[Prediction(**p) for p in f["predictions"]],  # type: ignore[arg-type]
                               **fits)
    return out


def _load(view: SessionView) -> dict[str, LoadRecord]:
    cfg = view.state.config

    def sweep(name: str) -> str | None:  # a conversation under load is keyed by its name (NAME@CACHE), not a turn's
        s = next((x for x in cfg.scenarios if name in (x.name, x.conversation)), None) if cfg is not None else None
        return s.load if s is not None else None

    return {name: LoadRecord(**asdict(f), sweep=sweep(name))
            for name, f in view.load.items()}  # asdict turns the workers' figures into dicts too


def _crash(state: SessionState) -> CrashRecord | None:
    c = state.crash
    if c is None:
        return None
    return CrashRecord(signal=c.signal, exit_code=c.exit_code, phase=c.phase, run_id=c.run_id, scenario=c.scenario,
                       chunk=c.chunk, n_chunks=c.n_chunks, token_index=c.token_index, pid=c.pid,
                       t_ms=c.t_ns / 1e6, message=c.message, log_tail=list(c.log_tail))


def _hosts(view: SessionView) -> dict[str, HostRecord]:
    """Each Ray engine host's engines, own per-scenario figures and telemetry."""
    return {w: HostRecord(
        engines=[HostEngineRecord(engine=e.engine, engine_version=e.engine_version, synthetic=e.synthetic,
                                  synthetic_reason=e.synthetic_reason, load_ms=e.load_ms, model=e.model,
                                  device=e.device, engine_pid=e.host_pid) for e in es],
        summary={n: _scenario_summary(st) for n, st in view.host_stats(w).items()},
        telemetry=_telemetry(view.state, w, es[-1].model, view.driver_series(w)),
    ) for w, es in view.hosts.items()}


def build_report(state: SessionState, source: dict[str, Any] | None = None) -> Report:
    """The report of ``state``, from its one analysis (:class:`ttftui.analysis.view.SessionView`)."""
    view = SessionView(state)
    eng = state.engine
    runs = view.metrics
    failed = [
        FailedRun(run_id=r.run_id, scenario=r.scenario, iteration=r.started.iteration, warmup=r.warmup, error=r.failed)
        for r in state.runs if r.failed is not None
    ]
    first = runs[0] if runs else None
    cold = ((eng.load_ms + first.ttft_ms)
            if (eng is not None and eng.load_ms is not None and first is not None and first.run_id == 1) else None)
    fin = state.finished
    start_t = state.session.t_ns if state.session else 0
    return Report(
        ttftui_version=state.session.ttftui_version if state.session else __version__,
        synthetic=bool(state.synthetic),
        synthetic_reason=eng.synthetic_reason if eng else None,
        engine=eng.engine if eng else None,
        engine_version=eng.engine_version if eng else None,
        engine_host=eng.host if eng else None,
        diffusion=eng.diffusion if eng else None,
        crash=_crash(state),
        ops_cost=_ops_cost(view),
        sweeps=_sweeps(view),
        load=_load(view),
        workers_lost=[WorkerLostRecord(t_ms=w.t_ns / 1e6, worker=w.worker, reason=w.reason,
                                       lost_runs=list(w.lost_runs), unsent=w.unsent) for w in state.workers_lost],
        session=SessionInfo(
            id=state.session.session_id if state.session else None,
            started_at=state.session.started_at if state.session else None,
            status=fin.status if fin else "incomplete",
            message=fin.message if fin else None,
            duration_ms=(state.last_t_ns - start_t) / 1e6,
        ),
        device=eng.device if eng else None,
        model=eng.model if eng else None,
        load_ms=eng.load_ms if eng else None,
        cold_ttft_ms=cold,
        percentiles=view.percentiles,
        definitions=DEFINITIONS,
        config=state.session.config if state.session else {},
        runs=[_run_record(r.metrics, r.finished, view.cold.get(r.run_id), r.started.worker,
                          sampling_interval_ms(state, r.started.worker), view.driver_series(r.started.worker))
              for r in state.runs if r.metrics is not None],
        failed_runs=failed,
        summary={k: _scenario_summary(v, view.goodput(k), view.n_cold(k)) for k, v in view.stats.items()},
        notices=[NoticeRecord(t_ms=n.t_ns / 1e6, level=n.level, message=n.message) for n in state.notices],
        alerts=[
            AlertRecord(t_ms=a.t_ns / 1e6, **_by_name(AlertRecord, dataclasses.asdict(a))) for a in state.alerts
        ],
        alert_status=_alert_status(state),
        telemetry=_telemetry(state, driver=view.driver_series()),
        hosts=_hosts(view),
        source=source or {},
    )


def report_json(report: Report) -> str:
    """The report as JSON text that UTF-8 can hold (a lone surrogate in some text becomes U+FFFD)."""
    return utf8_text(json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False, allow_nan=False) + "\n")
