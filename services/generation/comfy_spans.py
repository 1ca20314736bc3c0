"""Spans for what ComfyUI reports over its socket: one per node executed, cached nodes as an event.

ComfyUI announces ``executing`` (node X starts; the previous one is done), ``executed`` (X
produced output) and ``executing`` with no node (the prompt finished). Each node's span runs
from its announcement to the next message that ends it.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span

from libs.observability import tracing

SERVICE = "generation"


class NodeSpans:
    """Turns ComfyUI's execution messages for one prompt into node spans under the current span."""

    def __init__(self, prompt: dict[str, Any], prompt_id: str) -> None:
        self._prompt, self._prompt_id = prompt, prompt_id
        self._parent = trace.get_current_span()
        self._open: tuple[str, Span] | None = None

    def _class_type(self, node: str) -> str:
        entry = self._prompt.get(node)
        return str(entry.get("class_type", "")) if isinstance(entry, dict) else ""

    def on(self, kind: str, data: dict[str, Any]) -> None:
        """Feed one message (``executing``, ``executed``, ``execution_cached``...)."""
        node = data.get("node")
        if kind == "executing" and isinstance(node, str):
            self.close()
            class_type = self._class_type(node)
            started = tracing.tracer(SERVICE).start_span(
                f"ComfyUI node {class_type or node}", context=trace.set_span_in_context(self._parent),
                attributes={"comfy.node.id": node, "comfy.node.class_type": class_type,
                            "comfy.prompt_id": self._prompt_id})
            self._open = (node, started)
        elif kind == "executed" and isinstance(node, str):
            if self._open is not None and self._open[0] == node:
                self._open[1].set_attribute("comfy.node.output", True)
                self.close()
        elif kind == "execution_cached":
            nodes = [str(n) for n in data.get("nodes") or []]
            if nodes:
                self._parent.add_event("ComfyUI cached nodes", {"comfy.node.ids": nodes})

    def close(self) -> None:
        """End the open node span (the prompt finished, failed or was left)."""
        if self._open is not None:
            self._open[1].end()
            self._open = None
