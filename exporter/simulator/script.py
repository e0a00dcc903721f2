"""The scripted behaviour of one simulated model: timing, token counts and faults.

A ``ModelScript`` is plain data so that tests, the ``demo`` command and a YAML file can all
describe a model the same way; the server only reads it. Validation lives here (not in the
server) so that a bad script fails when it is built, with a message naming the model and field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Fault(StrEnum):
    """A failure the simulator injects, named after what the client sees on the wire.

    ``BUSY`` and ``BARE_404`` answer at once (a full queue and a proxy do not wait).
    ``HTTP_500`` and ``CLOSE_BEFORE_RESPONSE`` answer after ``first_token_delay``, like a
    load that fails. The others start a 200 stream and act after ``fault_after`` text chunks
    (capped at the number of generated tokens, i.e. just before the done chunk).
    """

    BUSY = "busy"
    HTTP_500 = "http_500"
    BARE_404 = "bare_404"
    MID_STREAM_ERROR = "mid_stream_error"
    TRUNCATE = "truncate"
    END_WITHOUT_DONE = "end_without_done"
    CLOSE_BEFORE_RESPONSE = "close_before_response"
    STALL = "stall"
    MALFORMED = "malformed"
    NOT_JSON_OBJECT = "not_json_object"


@dataclass(frozen=True, slots=True)
class ModelScript:
    """How one simulated model behaves; all durations are seconds.

    Fields:
        first_token_delay: from the request being fully received to the first chunk (and the
            status line and headers, which leave with it) being written.
        tokens_per_second: decode pace; text chunk ``i`` is due at ``t_first + i / rate``.
        tokens: tokens the model wants to generate; ``options.num_predict`` caps it, and a cap
            below it makes ``done_reason`` ``length`` instead of ``stop``.
        thinking_tokens: how many of the generated tokens come first, as thinking text.
        prompt_eval_count, prompt_eval_duration, load_duration: reported as-is in the done
            chunk (durations as integer ns); they do not change the timing.
        eval_duration: the reported decode time; ``None`` means ``generated / rate``.
        report_counts: ``False`` drops ``eval_*`` and ``prompt_eval_*`` from the done chunk,
            like a proxy that strips them.
        context_tokens: length of the ``context`` array of ``/api/generate``'s done chunk;
            0 omits the field. About 7 bytes per token, so 300_000 makes a 2 MB line.
        fault: the failure to inject, if any (see ``Fault``).
        fault_after: text chunks written before a mid-stream fault acts.
        stall_seconds: for ``Fault.STALL``, the pause after ``fault_after`` chunks; every
            later chunk is shifted by it.
    """

    first_token_delay: float = 0.05
    tokens_per_second: float = 50.0
    tokens: int = 64
    thinking_tokens: int = 0
    prompt_eval_count: int = 26
    prompt_eval_duration: float = 0.02
    load_duration: float = 0.003
    eval_duration: float | None = None
    report_counts: bool = True
    context_tokens: int = 0
    fault: Fault | None = None
    fault_after: int = 0
    stall_seconds: float = 0.0

    def __post_init__(self) -> None:
        """Reject values no schedule can honour, so a typo fails at build time."""
        if not self.tokens_per_second > 0:
            raise ValueError(f"tokens_per_second must be > 0, got {self.tokens_per_second}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            is_number = isinstance(value, int | float) and not isinstance(value, bool)
            if is_number and value < 0:
                raise ValueError(f"{f.name} must be >= 0, got {value}")


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("must be a number")
    return float(value)


def _as_int(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("must be an integer")
    return value


def _as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("must be true or false")
    return value


def _as_optional_float(value: Any) -> float | None:
    return None if value is None else _as_float(value)


def _as_fault(value: Any) -> Fault | None:
    if value is None:
        return None
    try:
        return Fault(str(value).lower())
    except ValueError:
        choices = ", ".join(f.value for f in Fault)
        raise TypeError(f"must be null or one of {choices}") from None


# Keyed by the annotation text (this module uses postponed annotations), so a new field with
# an unknown type fails loudly in _CONVERTERS below instead of being accepted unchecked.
_BY_TYPE: dict[str, Callable[[Any], Any]] = {
    "float": _as_float,
    "int": _as_int,
    "bool": _as_bool,
    "float | None": _as_optional_float,
    "Fault | None": _as_fault,
}
_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    f.name: _BY_TYPE[str(f.type)] for f in dataclasses.fields(ModelScript)
}


def apply_overrides(base: ModelScript, overrides: Mapping[str, Any], model: str) -> ModelScript:
    """Return ``base`` with ``overrides`` applied; errors name ``model`` and the field."""
    if not isinstance(overrides, Mapping):
        raise ValueError(f"model {model!r}: expected a mapping of script fields")
    changes: dict[str, Any] = {}
    for name, value in overrides.items():
        convert = _CONVERTERS.get(name)
        if convert is None:
            raise ValueError(f"model {model!r}: unknown field {name!r}")
        try:
            changes[name] = convert(value)
        except TypeError as exc:
            raise ValueError(f"model {model!r}: field {name!r} {exc}") from None
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as exc:
        raise ValueError(f"model {model!r}: {exc}") from None


def load_scripts(data: Mapping[str, Any]) -> dict[str, ModelScript]:
    """Build scripts from ``{"models": {name: {field: value}}}``, as parsed from YAML/JSON."""
    if not isinstance(data, Mapping):
        raise ValueError("simulator scripts: expected a mapping with a 'models' key")
    extra = set(data) - {"models"}
    if extra:
        raise ValueError(f"simulator scripts: unknown top-level key(s) {sorted(extra)}")
    models = data.get("models") or {}
    if not isinstance(models, Mapping):
        raise ValueError("simulator scripts: 'models' must be a mapping of name to fields")
    return {
        str(name): apply_overrides(ModelScript(), fields or {}, str(name))
        for name, fields in models.items()
    }


def script_to_dict(script: ModelScript) -> dict[str, Any]:
    """Return the script as JSON-ready data (the control API's answer)."""
    out = {f.name: getattr(script, f.name) for f in dataclasses.fields(script)}
    out["fault"] = None if script.fault is None else script.fault.value
    return out


DEMO_SCRIPTS: dict[str, ModelScript] = {
    # A small model on a GPU: quick first token, fast decode, a realistic context array.
    "llama3.2:1b": ModelScript(
        first_token_delay=0.08,
        tokens_per_second=120.0,
        tokens=64,
        prompt_eval_count=31,
        prompt_eval_duration=0.012,
        context_tokens=120,
    ),
    # A thinking model: the first 8 tokens are thinking text (think omitted turns it on).
    "qwen3:0.6b": ModelScript(
        first_token_delay=0.1,
        tokens_per_second=90.0,
        tokens=40,
        thinking_tokens=8,
        prompt_eval_count=19,
        prompt_eval_duration=0.015,
    ),
    # CPU-only inference: slow prefill and a single-digit decode rate.
    "tinyllama:cpu": ModelScript(
        first_token_delay=0.6,
        tokens_per_second=9.0,
        tokens=24,
        prompt_eval_count=40,
        prompt_eval_duration=0.55,
    ),
    # A runner that crashes on every request after 5 chunks.
    "flaky:latest": ModelScript(
        first_token_delay=0.08,
        tokens_per_second=60.0,
        tokens=32,
        fault=Fault.MID_STREAM_ERROR,
        fault_after=5,
    ),
}
