"""Metric definitions (DESIGN.md §2). Shown by ``--help``, embedded in every JSON report and
copied into the README; a test keeps the README's table in step with this dictionary."""

DEFINITIONS: dict[str, str] = {
    "t0": "the moment a request starts, before chat templating and tokenizing",
    "tokenize_ms": "chat-template render (if any) + tokenize of the prompt",
    "cache_prep_ms": "KV-cache clear before prefill (every run starts from an empty cache: no prefix reuse)",
    "prefill_ms": "sum over prompt chunks of (llama_decode of the chunk + llama_synchronize); "
                  "each chunk of n_batch tokens is also kept in prefill_chunks_ms",
    "first_sample_ms": "sampling the first output token from the last prefill logits (llama.cpp sampler chain)",
    "first_detok_ms": "token -> text of the first token, including UTF-8 hold-back",
    "ttft_ms": "t0 -> first token text available to the consumer",
    "unaccounted_ms": "ttft_ms - sum of the components above (shown, never hidden)",
    "load_ms": "model load + context creation, once per session",
    "cold_ttft_ms": "load_ms + TTFT of the session's first request",
    "itl_ms": "gap between consecutive output tokens becoming available (pooled over tokens)",
    "tpot_ms": "per run: (e2e_ms - ttft_ms) / (n_output - 1)",
    "decode_tps": "per run: (n_output - 1) / (e2e_ms - ttft_ms) x 1000",
    "prefill_tps": "per run: n_prompt_tokens / prefill_ms x 1000",
    "e2e_ms": "t0 -> last output token",
    "percentiles": "linear interpolation (NumPy default), always with n; warm-up runs excluded",
    "clock": "time.perf_counter_ns() in the thread that does the work, never at render time",
}


def definitions_text() -> str:
    width = max(len(k) for k in DEFINITIONS)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in DEFINITIONS.items())
