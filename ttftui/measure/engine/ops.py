"""Where a llama_decode's time goes, node by node: llama.cpp's graph evaluation callback (``cb_eval``).

With a callback, ggml's scheduler asks it about each node of the graph (``ask``); a node it wants to
see ends a piece of the graph: the scheduler computes up to that node, synchronises, and shows it
(``ask`` false). So the time from the ask that said yes to the node shown is that piece's compute:
the node and the unobserved nodes just before it (views, reshapes: no compute). Everything else in
the llama_decode span (graph building, the callback's own Python time, the splits' synchronisation)
is the *gap*: what profiling adds. That is why profiled runs have their own scenario (``NAME@ops``)
and the report sets their prefill against unprofiled runs of the same scenario.

The node's operation is ggml's own name for it (``ggml_op_desc``: MUL_MAT, FLASH_ATTN_EXT, ROPE,
RMS_NORM, ...; a matmul of the attention, ``kq``/``kqv``, is ``MUL_MAT (attention)``); its layer comes
from the tensor's name (llama.cpp names them ``attn_norm-5``, ``ffn_out-5``...; an unnamed node
belongs to the layer of the node before it; the embeddings and the output head are layer None).
Mode ``layers`` observes only each layer's output (``l_out-N``) and the head: per-layer times with
far fewer splits.
"""

from __future__ import annotations

import ctypes
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp as L

from ttftui.core.events import LayerTime, OpKind, OpsPhase

NO_COMPUTE = frozenset({"NONE", "VIEW", "RESHAPE", "PERMUTE", "TRANSPOSE"})
# bytes moved are kept for these: their result is what they wrote (SET_ROWS's result is the whole cache
# it writes rows into, so its bytes would not be what it moved: left out)
COPIES = frozenset({"CPY", "CONT", "DUP", "GET_ROWS"})
_LAYER = re.compile(r"-(\d+)(?: \(.*\))?$")
_ggml: Any = None


def _lib() -> Any:
    global _ggml
    if _ggml is None:
        g = ctypes.CDLL(str(Path(L.__file__).parent / "lib" / "libggml-base.so"))  # loaded already, by libllama
        for fn, res in (("ggml_op_desc", ctypes.c_char_p), ("ggml_get_name", ctypes.c_char_p),
                        ("ggml_nbytes", ctypes.c_size_t)):
            getattr(g, fn).restype = res
            getattr(g, fn).argtypes = [ctypes.c_void_p]
        _ggml = g
    return _ggml


@dataclass
class _Agg:
    span_ns: int = 0
    compute_ns: int = 0
    kinds: dict[str, list[int]] = field(default_factory=dict)  # kind -> [ns, count, bytes]
    layers: dict[int | None, list[int]] = field(default_factory=dict)  # layer -> [ns, nodes]


class OpsRecorder:
    """The callback (``cb``, set in a context's cb_eval) and what it saw, per phase of a run."""

    def __init__(self, mode: str = "ops"):
        self.mode = mode
        g = _lib()
        self._desc, self._name, self._nbytes = g.ggml_op_desc, g.ggml_get_name, g.ggml_nbytes
        self.cb = L.ggml_backend_sched_eval_callback(self._callback)
        self.active = False
        self._agg: _Agg | None = None
        self._t_ask = 0
        self._layer: int | None = None
        self.phases: list[tuple[str, int | None, _Agg]] = []

    # ------------------------------------------------------------------ a run's phases
    def start_run(self) -> None:
        self.phases = []
        self.active = True

    def enter(self, phase: str, index: int | None) -> None:
        """Nodes computed from now on belong to ``phase`` (a prefill chunk, or decode: every token's)."""
        if self.phases and self.phases[-1][0] == phase and self.phases[-1][1] == index:
            self._agg = self.phases[-1][2]
        else:
            self._agg = _Agg()
            self.phases.append((phase, index, self._agg))
        self._layer = None

    def add_span(self, ns: int) -> None:
        """The llama_decode (+ synchronize) span the nodes since ``enter`` were computed in."""
        if self._agg is not None:
            self._agg.span_ns += ns

    def end_run(self) -> tuple[OpsPhase, ...]:
        self.active = False
        self._agg = None
        out = []
        for phase, index, a in self.phases:
            kinds = tuple(sorted((OpKind(kind=k, ns=v[0], count=v[1], bytes=v[2]) for k, v in a.kinds.items()),
                                 key=lambda o: -o.ns))
            layers = tuple(LayerTime(layer=k, ns=v[0], nodes=v[1])
                           for k, v in sorted(a.layers.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))
            out.append(OpsPhase(phase=phase, index=index, span_ns=a.span_ns, compute_ns=a.compute_ns,
                                kinds=kinds, layers=layers))
        self.phases = []
        return tuple(out)

    # ------------------------------------------------------------------ the callback (llama.cpp's threads)
    def _callback(self, t: int, ask: bool, _user: Any) -> bool:
        try:
            if ask:
                if not self.active or self._agg is None:
                    return False
                op = self._desc(t)
                if op in (b"NONE", b"VIEW", b"RESHAPE", b"PERMUTE", b"TRANSPOSE"):
                    return False  # no compute: it joins the next observed node
                if self.mode == "layers":
                    name = self._name(t)
                    if not (name.startswith(b"l_out-") or name == b"result_output"):
                        return False
                self._t_ask = time.perf_counter_ns()
                return True
            t_in = time.perf_counter_ns()
            a = self._agg
            if a is None:
                return True
            ns = t_in - self._t_ask
            op = self._desc(t).decode("ascii", "replace")
            name = self._name(t).decode("utf-8", "replace")
            m = _LAYER.search(name)
            if m:
                self._layer = int(m.group(1))
            elif not name.startswith("node_"):
                self._layer = None  # the embeddings, the output norm and head
            layer = self._layer
            kind = op
            if op == "MUL_MAT" and (name.startswith("kq-") or name.startswith("kqv-")):
                kind = "MUL_MAT (attention)"
            if self.mode == "layers":
                kind = "layer" if layer is not None else "output head"
            k = a.kinds.get(kind)
            if k is None:
                k = a.kinds[kind] = [0, 0, 0]
            k[0] += ns
            k[1] += 1
            if op in COPIES:
                k[2] += int(self._nbytes(t))
            lt = a.layers.get(layer)
            if lt is None:
                lt = a.layers[layer] = [0, 0]
            lt[0] += ns
            lt[1] += 1
            a.compute_ns += ns
            return True
        except Exception:  # noqa: BLE001 - a callback must not raise into llama.cpp: stop observing
            self.active = False
            return True
