"""Layer 2, pure functions of events: the reducer (events -> session state), per-run metrics,
statistics, alerts, cold-run flags, sweep fits, load figures, GPU-driver figures and the one memoised
view of a state that the report and the dashboard both read. No threads, no clocks, no I/O."""
