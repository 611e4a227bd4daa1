"""A tiny diffusion language model in GGUF, built on this machine: Dream or LLaDA architecture, random
weights, the demo model's tokenizer (plus a mask token).

No diffusion GGUF ships with a Python package, so ttftui's tests (and anyone who wants to see the
diffusion engine work before downloading Dream-7B) build one: 2 layers, width 64, written with
llama.cpp's own ``gguf`` package. Its text is gibberish; its forward passes, schedules and canvas are
real llama.cpp work, the same code path a 7B model takes.

    python -m ttftui.measure.tiny_diffusion dream-tiny.gguf [--arch llada] [--layers 2] [--width 64]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ttftui.measure.demo_model import INSTALL_HINT, demo_model_path

MASK_TEXT = "<|mask|>"
ARCHS = ("dream", "llada")

_TOKENIZER_KEYS = ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.add_bos_token",
                   "tokenizer.ggml.add_space_prefix", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                   "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.chat_template")


def _gguf():  # noqa: ANN202 - the gguf module
    try:
        import gguf  # llama.cpp's own GGUF package: an optional dependency (pip install 'gguf>=0.19,<0.20')
    except ImportError:
        raise SystemExit("building a diffusion model needs llama.cpp's gguf package: pip install 'gguf>=0.19,<0.20'") \
            from None
    return gguf


def _field_value(f):  # noqa: ANN001, ANN202 - a GGUFReader field
    gguf = _gguf()
    t = f.types[0]
    if t == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]].tolist()[0]


def build(out: str | Path, *, arch: str = "dream", n_layer: int = 2, n_embd: int = 64, n_head: int = 4,
          n_head_kv: int = 2, n_ff: int = 128, context_length: int = 4096, seed: int = 0,
          tokenizer_from: str | Path | None = None, chat_template: str | None = None) -> Path:
    """Write the model to ``out`` and return its path. ``tokenizer_from``: a GGUF whose tokenizer is
    copied (default: the demo model's). ``chat_template``: the model's chat template (default: the
    source model's); e.g. ``{% for message in messages %}{{ message['content'] }}{% endfor %}``
    makes llama-diffusion-cli, which always renders its prompt through the template, see the plain
    text."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}")
    gguf = _gguf()
    src = Path(tokenizer_from) if tokenizer_from else demo_model_path()
    if src is None:
        raise SystemExit(f"the demo model (whose tokenizer is copied) is not installed: {INSTALL_HINT}")
    reader = gguf.GGUFReader(str(src))
    fields = reader.fields
    tokens = [bytes(fields["tokenizer.ggml.tokens"].parts[i]).decode("utf-8")
              for i in fields["tokenizer.ggml.tokens"].data]
    types = [int(fields["tokenizer.ggml.token_type"].parts[i][0]) for i in fields["tokenizer.ggml.token_type"].data]
    merges = [bytes(fields["tokenizer.ggml.merges"].parts[i]).decode("utf-8")
              for i in fields["tokenizer.ggml.merges"].data] if "tokenizer.ggml.merges" in fields else []
    mask_id = len(tokens)
    tokens.append(MASK_TEXT)
    types.append(int(gguf.TokenType.CONTROL))
    n_vocab = len(tokens)

    out = Path(out)
    w = gguf.GGUFWriter(str(out), arch)
    w.add_name(f"{arch}-tiny (random weights)")
    w.add_description("ttftui's generated diffusion test model: random weights, real llama.cpp computation")
    w.add_context_length(context_length)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_causal_attention(False)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    if arch == "llada":
        w.add_diffusion_shift_logits(False)  # LLaDA predicts each position from itself (Dream: from the one before)
    for key in _TOKENIZER_KEYS:
        if key in fields:
            v = _field_value(fields[key])
            name = key
            if key == "tokenizer.ggml.model":
                w.add_tokenizer_model(v)
            elif key == "tokenizer.ggml.pre":
                w.add_tokenizer_pre(v)
            elif key == "tokenizer.chat_template":
                if chat_template is None:
                    w.add_chat_template(v)
            elif isinstance(v, bool):
                w.add_bool(name, v)
            else:
                w.add_uint32(name, int(v))
    if chat_template is not None:
        w.add_chat_template(chat_template)
    w.add_token_list(tokens)
    w.add_token_types(types)
    if merges:
        w.add_token_merges(merges)
    w.add_mask_token_id(mask_id)

    rng = np.random.default_rng(seed)
    head_dim = n_embd // n_head

    def t(name: str, *shape: int, scale: float = 0.02, f16: bool = True) -> None:
        a = rng.normal(0.0, scale, size=shape).astype(np.float16 if f16 else np.float32)
        w.add_tensor(name, a)

    # numpy shapes are (rows, cols) = GGUF's (ne1, ne0): a {n_embd, n_vocab} tensor is (n_vocab, n_embd)
    t("token_embd.weight", n_vocab, n_embd, scale=1.0)
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    t("output.weight", n_vocab, n_embd, scale=1.0)  # peaked distributions: confidences that differ
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        t(f"blk.{i}.attn_q.weight", n_head * head_dim, n_embd, scale=0.2)
        t(f"blk.{i}.attn_k.weight", n_head_kv * head_dim, n_embd, scale=0.2)
        t(f"blk.{i}.attn_v.weight", n_head_kv * head_dim, n_embd, scale=0.2)
        t(f"blk.{i}.attn_output.weight", n_embd, n_head * head_dim, scale=0.2)
        t(f"blk.{i}.ffn_gate.weight", n_ff, n_embd, scale=0.2)
        t(f"blk.{i}.ffn_up.weight", n_ff, n_embd, scale=0.2)
        t(f"blk.{i}.ffn_down.weight", n_embd, n_ff, scale=0.2)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ttftui.measure.tiny_diffusion",
                                 description="Build a tiny diffusion LM (random weights) as a GGUF file.")
    ap.add_argument("out", help="the GGUF file to write")
    ap.add_argument("--arch", choices=ARCHS, default="dream")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--width", type=int, default=64, help="embedding width (a multiple of 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chat-template", default=None, metavar="JINJA",
                    help="the model's chat template (default: the demo model's)")
    a = ap.parse_args(argv)
    if a.layers < 1 or a.width < 8 or a.width % 4:
        print("error: --layers must be at least 1 and --width a multiple of 4, at least 8", file=sys.stderr)
        return 2
    p = build(a.out, arch=a.arch, n_layer=a.layers, n_embd=a.width, n_ff=2 * a.width, seed=a.seed,
              chat_template=a.chat_template)
    print(f"wrote {p} ({p.stat().st_size / 1e6:.1f} MB, {a.arch}, {a.layers} layers, width {a.width})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
