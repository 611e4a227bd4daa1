"""An OpenAI-compatible server profiled over HTTP (streaming SSE) on the client's clock."""
