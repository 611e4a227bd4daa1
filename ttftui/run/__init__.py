"""Layer 4, sessions: the runner and its plan, the executors it is given (local runs, load loops),
live and replayed event sources, the pump that feeds consumers, recording and progress lines.
Knows nothing of Ray: cluster executors are injected by the front end."""
