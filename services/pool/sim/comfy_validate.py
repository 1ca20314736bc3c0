"""ComfyUI's prompt validation, reproduced with the same error types and shapes."""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from typing import Any

from services.pool.sim.comfy_nodes import ANY, NODES, NodeEnv

Reasons = list[dict[str, Any]]
Validated = dict[str, tuple[bool, Reasons, str]]


@dataclass(frozen=True)
class Validation:
    """Outcome of ``validate_prompt``: error is None when at least one output validated."""

    error: dict[str, Any] | None
    good_outputs: list[str]
    node_errors: dict[str, Any]


def _error(kind: str, message: str, details: str = "") -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def type_compatible(received: Any, wanted: Any) -> bool:
    """ComfyUI's ``validate_node_input`` (non-strict): '*' matches anything, unions overlap."""
    if received == wanted or received == ANY or wanted == ANY:
        return True
    if not isinstance(received, str) or not isinstance(wanted, str):
        return False
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in wanted.split(",")}
    return bool(got & want)


def _full_type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _convert(kind: Any, val: Any) -> Any:
    if kind == "INT":
        return int(val)
    if kind == "FLOAT":
        return float(val)
    if kind == "STRING":
        return str(val)
    if kind == "BOOLEAN":
        return bool(val)
    return val


def validate_inputs(prompt: dict[str, Any], unique_id: str, validated: Validated, env: NodeEnv) -> tuple[bool, Reasons, str]:
    """Validate one node and (recursively) its inputs, converting literal values in place."""
    if unique_id in validated:
        return validated[unique_id]
    inputs = prompt[unique_id]["inputs"]
    node = NODES[prompt[unique_id]["class_type"]]
    spec = node.inputs(env)
    errors: Reasons = []
    valid = True
    for category in ("required", "optional"):
        for name, info in spec.get(category, {}).items():
            type_input, extra = info[0], info[1] if len(info) > 1 else {}
            if name not in inputs:
                if category == "required":
                    errors.append({"type": "required_input_missing", "message": "Required input is missing",
                                   "details": name, "extra_info": {"input_name": name}})
                continue
            val = inputs[name]
            if isinstance(val, list):
                if len(val) != 2:
                    errors.append({"type": "bad_linked_input",
                                   "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                                   "details": name, "extra_info": {"input_name": name, "input_config": info,
                                                                   "received_value": val}})
                    continue
                o_id = val[0]
                received = NODES[prompt[o_id]["class_type"]].outputs[val[1]]
                if not type_compatible(received, type_input):
                    errors.append({"type": "return_type_mismatch", "message": "Return type mismatch between linked nodes",
                                   "details": f"{name}, received_type({received}) mismatch input_type({type_input})",
                                   "extra_info": {"input_name": name, "input_config": info,
                                                  "received_type": received, "linked_node": val}})
                    continue
                try:
                    if validate_inputs(prompt, o_id, validated, env)[0] is False:
                        valid = False
                except Exception as ex:  # noqa: BLE001 - mirrors ComfyUI: any exception becomes a reason
                    valid = False
                    validated[o_id] = (False, [{
                        "type": "exception_during_inner_validation", "message": "Exception when validating inner node",
                        "details": str(ex), "extra_info": {
                            "input_name": name, "input_config": info, "exception_message": str(ex),
                            "exception_type": _full_type_name(ex),
                            "traceback": traceback.format_tb(sys.exc_info()[2]), "linked_node": val}}], o_id)
                continue
            try:
                val = _convert(type_input, val)
                inputs[name] = val
            except Exception as ex:  # noqa: BLE001
                errors.append({"type": "invalid_input_type",
                               "message": f"Failed to convert an input value to a {type_input} value",
                               "details": f"{name}, {val}, {ex}",
                               "extra_info": {"input_name": name, "input_config": info, "received_value": val,
                                              "exception_message": str(ex)}})
                continue
            if name in node.validate_inputs:
                continue
            if "min" in extra and val < extra["min"]:
                errors.append({"type": "value_smaller_than_min",
                               "message": f"Value {val} smaller than min of {extra['min']}", "details": name,
                               "extra_info": {"input_name": name, "input_config": info, "received_value": val}})
                continue
            if "max" in extra and val > extra["max"]:
                errors.append({"type": "value_bigger_than_max",
                               "message": f"Value {val} bigger than max of {extra['max']}", "details": name,
                               "extra_info": {"input_name": name, "input_config": info, "received_value": val}})
                continue
            if isinstance(type_input, list) and val not in type_input:
                big = len(type_input) > 20
                errors.append({"type": "value_not_in_list", "message": "Value not in list",
                               "details": f"{name}: '{val}' not in "
                                          + (f"(list of length {len(type_input)})" if big else str(type_input)),
                               "extra_info": {"input_name": name, "input_config": None if big else info,
                                              "received_value": val}})
    if node.validate is not None:
        verdict = node.validate(env, inputs)
        if verdict is not True:
            for name in node.validate_inputs:
                details = name if verdict is False else f"{name} - {verdict}"
                errors.append({"type": "custom_validation_failed", "message": "Custom validation failed for node",
                               "details": details, "extra_info": {"input_name": name}})
    result = (False, errors, unique_id) if errors or not valid else (True, [], unique_id)
    validated[unique_id] = result
    return result


def validate_prompt(prompt: Any, env: NodeEnv, partial_targets: list[str] | None = None) -> Validation:
    """ComfyUI's ``validate_prompt``: which outputs can run, and the 400 error when none can."""
    if not isinstance(prompt, dict):
        return Validation(_error("invalid_prompt", "Prompt must be an object of nodes"), [], {})
    outputs: list[str] = []
    for x, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return Validation(_error("invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                                     f"Node ID '#{x}'"), [], {})
        class_type = node["class_type"]
        if class_type not in NODES:
            return Validation(_error("invalid_prompt", f"Cannot execute because node {class_type} does not exist.",
                                     f"Node ID '#{x}'"), [], {})
        if not isinstance(node.get("inputs"), dict):
            node["inputs"] = {}
        if NODES[class_type].output_node and (partial_targets is None or x in partial_targets):
            outputs.append(x)
    if not outputs:
        return Validation(_error("prompt_no_outputs", "Prompt has no outputs"), [], {})
    good: list[str] = []
    failures: list[tuple[str, Reasons]] = []
    node_errors: dict[str, Any] = {}
    validated: Validated = {}
    for o in outputs:
        try:
            valid, reasons, _ = validate_inputs(prompt, o, validated, env)
        except Exception as ex:  # noqa: BLE001
            valid = False
            reasons = [{"type": "exception_during_validation", "message": "Exception when validating node",
                        "details": str(ex), "extra_info": {"exception_type": _full_type_name(ex),
                                                           "traceback": traceback.format_tb(sys.exc_info()[2])}}]
            validated[o] = (False, reasons, o)
        if valid:
            good.append(o)
            continue
        failures.append((o, reasons))
        for node_id, (ok, node_reasons, _) in validated.items():
            if not ok and node_reasons:
                entry = node_errors.setdefault(node_id, {"errors": node_reasons, "dependent_outputs": [],
                                                         "class_type": prompt[node_id]["class_type"]})
                entry["dependent_outputs"].append(o)
    if not good:
        details = "\n".join(f"{r['message']}: {r['details']}" for _, reasons in failures for r in reasons)
        return Validation(_error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details),
                          [], node_errors)
    return Validation(None, good, node_errors)
