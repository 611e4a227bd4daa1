"""Outputs: the versioned JSON report (:mod:`.schema` models, :mod:`.build`), CSV, the self-contained
HTML report and ``compare`` of two reports. All read the one analysis view of a session state."""
