"""Profiling an OpenAI-compatible server over HTTP (streaming SSE), on the client's clock."""
