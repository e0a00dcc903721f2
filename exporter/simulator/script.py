"""The scripted behaviour of one simulated model: timing, token counts and faults.

A ``ModelScript`` is plain data so that tests, the ``demo`` command and a YAML file can all
describe a model the same way; the server only reads it. It is a pydantic dataclass, so a
bad value fails when the script is built (``ModelScript(...)``, ``dataclasses.replace``, a
YAML file or the control API), and ``load_scripts``/``apply_overrides`` report it as one line
per problem naming the model and the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError


class Fault(StrEnum):
    """A failure the simulator injects, named after what the client sees on the wire.

    ``BUSY`` and ``BARE_404`` answer at once (a full queue and a proxy do not wait).
    ``HTTP_500`` and ``CLOSE_BEFORE_RESPONSE`` answer after ``first_token_delay``, like a
    load that fails. The others start a 200 stream and act after ``fault_after`` text chunks
    (capped at the number of generated tokens, i.e. just before the done chunk). On
    ``/v1/chat/completions`` they take OpenAI's shapes (error objects, SSE events).
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


def _integral(value: Any) -> Any:
    """Accept 3.0 for an integer field: JSON and YAML have one number type."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _fault(value: Any) -> Any:
    """Accept a fault by its (case-insensitive) name, as YAML and JSON spell it."""
    if not isinstance(value, str):
        return value
    try:
        return Fault(value.lower())
    except ValueError:
        choices = ", ".join(Fault)
        message = "must be null or one of {choices}"
        raise PydanticCustomError("fault", message, {"choices": choices}) from None


Seconds = Annotated[float, Field(ge=0)]
Count = Annotated[int, BeforeValidator(_integral), Field(ge=0)]
Rate = Annotated[float, Field(gt=0)]


# Strict: no "yes" for a bool, no "3" or True for a number; a typo'd field name is an error.
@dataclass(frozen=True, slots=True, config=ConfigDict(strict=True, allow_inf_nan=False))
class ModelScript:
    """How one simulated model behaves; all durations are seconds.

    A request's first chunk is due ``first_token_delay`` (plus the prefill, when
    ``prompt_tokens_per_second`` is set) after generation can start: at once for a loaded
    model with a free slot, else after the cold load and the wait for a slot.

    Fields:
        first_token_delay: from the request being fully received (or leaving the queue) to
            the first chunk (and the status line and headers, which leave with it).
        tokens_per_second: decode pace; text chunk ``i`` is due at ``t_first + i / rate``.
        tokens: tokens the model wants to generate; ``options.num_predict`` caps it, and a cap
            below it makes ``done_reason`` ``length`` instead of ``stop``.
        thinking_tokens: how many of the generated tokens come first, as thinking text.
        prompt_eval_count: reported prompt tokens; ``None`` derives them from the request's
            prompt text at about 4 characters per token (``validate.prompt_tokens``).
        prompt_tokens_per_second: prefill pace; when set, ``prompt_eval_count / rate`` is
            added before the first token and reported as ``prompt_eval_duration``.
        prompt_eval_duration, load_duration: reported as-is in the done chunk (integer ns)
            without changing the timing (a prefill rate overrides the former, a cold load
            adds its wait to the latter).
        eval_duration: the reported decode time; ``None`` means ``generated / rate``.
        report_counts: ``False`` drops ``eval_*`` and ``prompt_eval_*`` from the done chunk,
            like a proxy that strips them.
        context_tokens: length of the ``context`` array of ``/api/generate``'s done chunk;
            0 omits the field. About 7 bytes per token, so 300_000 makes a 2 MB line.
        fault: the failure to inject, if any (see ``Fault``).
        fault_after: text chunks written before a mid-stream fault acts.
        stall_seconds: for ``Fault.STALL``, the pause after ``fault_after`` chunks; every
            later chunk is shifted by it.
        loaded: whether the model starts out resident (listed by ``/api/ps``). A request for
            a model that is not waits ``cold_load_delay`` while it loads (requests arriving
            meanwhile wait for the same load), and it then stays loaded for the keep-alive.
        cold_load_delay: the load's duration, added to TTFT and to ``load_duration``.
        vram_fraction: share of the model in GPU memory: ``/api/ps`` reports ``size_vram =
            size * vram_fraction`` (0 = CPU only, below 1 = partial offload).
        num_parallel: requests generating at once (``OLLAMA_NUM_PARALLEL``); the others wait
            for a slot, which grows their TTFT and never fails. 0 = no limit.
        max_queue: requests that may wait for a cold load besides the one that started it
            (``OLLAMA_MAX_QUEUE``); beyond it Ollama answers 503 at once. As in Ollama, a
            loaded model's slot queue is not bounded by it.
    """

    first_token_delay: Seconds = 0.05
    tokens_per_second: Rate = 50.0
    tokens: Count = 64
    thinking_tokens: Count = 0
    prompt_eval_count: Count | None = None
    prompt_tokens_per_second: Rate | None = None
    prompt_eval_duration: Seconds = 0.02
    load_duration: Seconds = 0.003
    eval_duration: Seconds | None = None
    report_counts: bool = True
    context_tokens: Count = 0
    fault: Annotated[Fault | None, BeforeValidator(_fault)] = None
    fault_after: Count = 0
    stall_seconds: Seconds = 0.0
    loaded: bool = True
    cold_load_delay: Seconds = 0.6
    vram_fraction: Annotated[float, Field(ge=0, le=1)] = 1.0
    num_parallel: Count = 0
    max_queue: Count = 512


_ADAPTER = TypeAdapter(ModelScript)
FIELDS = frozenset(f.name for f in dataclasses.fields(ModelScript))


def apply_overrides(base: ModelScript, overrides: Mapping[str, Any], model: str) -> ModelScript:
    """Return ``base`` with ``overrides`` applied; errors name ``model`` and the field."""
    if not isinstance(overrides, Mapping):
        raise ValueError(f"model {model!r}: expected a mapping of script fields")
    unknown = [name for name in overrides if name not in FIELDS]
    if unknown:
        raise ValueError("\n".join(f"model {model!r}: unknown field {name!r}" for name in unknown))
    try:
        return dataclasses.replace(base, **overrides)
    except ValidationError as exc:
        lines = [
            f"model {model!r}: field {'.'.join(map(str, err['loc']))!r}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ValueError("\n".join(lines)) from None


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
    out: dict[str, Any] = _ADAPTER.dump_python(script, mode="json")
    return out


DEMO_SCRIPTS: dict[str, ModelScript] = {
    # A small model on a GPU: quick first token, fast decode and prefill, a realistic
    # context array, two parallel slots (a third stream queues).
    "llama3.2:1b": ModelScript(
        first_token_delay=0.08,
        tokens_per_second=120.0,
        tokens=64,
        prompt_tokens_per_second=8000.0,
        context_tokens=120,
        num_parallel=2,
    ),
    # A thinking model: the first 8 tokens are thinking text (think omitted turns it on).
    "qwen3:0.6b": ModelScript(
        first_token_delay=0.1,
        tokens_per_second=90.0,
        tokens=40,
        thinking_tokens=8,
        prompt_tokens_per_second=6000.0,
        num_parallel=2,
    ),
    # CPU-only inference: slow prefill and a single-digit decode rate, nothing in VRAM, one
    # request at a time.
    "tinyllama:cpu": ModelScript(
        first_token_delay=0.6,
        tokens_per_second=9.0,
        tokens=24,
        prompt_tokens_per_second=400.0,
        vram_fraction=0.0,
        num_parallel=1,
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
