"""Layer 1, the vocabulary every other layer speaks: events, the metric registry, errors and exit
codes, the validated configuration, alert rules, safe text, bounded input reading and atomic output.
Imports nothing of ttftui above it."""
