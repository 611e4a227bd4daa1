"""Everything that imports Ray: client workers that send a load scenario's requests from a cluster
(:mod:`.clients`) and engine hosts that each run a session on their node (:mod:`.engine_hosts`).
Both are executors the run layer is given; nothing below this package knows Ray exists."""
