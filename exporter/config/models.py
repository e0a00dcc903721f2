"""The configuration: Settings (a pydantic-settings ``BaseSettings``), its targets and profiles.

Every model forbids unknown keys (a nested pydantic model would silently ignore a typo such as
``timeout_secs``) and is frozen, so a reload builds a new object instead of mutating the live one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from exporter.config.sources import Key, format_path
from exporter.config.values import (
    DEFAULT_NUM_CTX,
    DEFAULT_OPTIONS,
    DEFAULT_PROMPT,
    HUGE_INT,
    LOAD_TIME_OPTIONS,
    OPENAI_OPTIONS,
    canonical_url,
    check_header_name,
    check_keep_alive,
    check_option_name,
    check_prompt,
    check_proxy_url,
    default_target_name,
    existing_file,
    format_duration,
    has_huge_int,
    keep_alive_seconds,
    parse_duration,
    parse_think,
    resolve_secret,
)
from exporter.result import JobKey, JobShape

PROBLEMS_ERROR = "config_problems"
Problems = list[tuple[tuple[Key, ...], str]]


def _problems(items: Problems) -> PydanticCustomError:
    """Bundle ``(sub-path, message)`` pairs into one error, so one validator can report them all.

    pydantic places a validator's error at the validator's level (the list, the profile); each
    sub-path, such as ``(1, "name")``, points at the key. ``loader.py`` makes the lines.
    """
    summary = "; ".join(f"{format_path(path)}: {message}" for path, message in items)
    return PydanticCustomError(PROBLEMS_ERROR, "{summary}", {"summary": summary, "problems": items})


def _duplicates(names: list[str], what: str, base: str, *key: str) -> Problems:
    """Each repeated name in ``base``, located at its index (and ``key`` within that entry)."""
    return [
        ((i, *key), f"duplicate {what} '{name}' (also {base}[{names.index(name)}])")
        for i, name in enumerate(names)
        if names.index(name) < i
    ]


def _non_empty(value: str) -> str:
    """Label values must carry something: an empty label is the same as no label in Prometheus."""
    if not value.strip():
        raise ValueError("must not be empty")
    return value


# A bare ``headers:``, ``options:`` or ``tls:`` (YAML null) is an empty mapping.
_NULL_IS_EMPTY = BeforeValidator(lambda value: {} if value is None else value)
Label = Annotated[str, AfterValidator(_non_empty)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
Think = Annotated[bool | Literal["low", "medium", "high"] | None, BeforeValidator(parse_think)]
HeaderName = Annotated[str, AfterValidator(check_header_name)]
HeaderValue = Annotated[SecretStr, BeforeValidator(resolve_secret)]
Headers = Annotated[Mapping[HeaderName, HeaderValue], _NULL_IS_EMPTY]
Options = Annotated[Mapping[Annotated[str, AfterValidator(check_option_name)], Any], _NULL_IS_EMPTY]
# int before float: a number is sent as written, and 300 must not become 300.0.
KeepAlive = Annotated[str | int | float | None, BeforeValidator(check_keep_alive)]
Api = Literal["generate", "chat", "openai"]

# Streams of one parallel run: enough to see a server's slots fill up and its queue form,
# few enough that a typo cannot turn a probe into a load test.
MAX_PARALLEL = 32
# About 1 MiB of prompt text: far beyond any context a probe needs to fill.
MAX_PROMPT_TOKENS = 262_144


class _Frozen(BaseModel):
    """Immutable, closed to unknown keys, and hashable although it holds dicts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __hash__(self) -> int:
        # pydantic's frozen hash hashes field values, and dicts (headers, options) are not
        # hashable; JobSpec is a frozen dataclass and must stay usable as a key or in a set.
        return hash((type(self).__name__, self.model_dump_json()))


class TLSSettings(_Frozen):
    """TLS for an https target: an extra CA bundle, or no verification at all."""

    ca_file: Annotated[Path, AfterValidator(existing_file)] | None = None
    insecure_skip_verify: bool = False


class Target(_Frozen):
    """One Ollama server (or a reverse proxy in front of it) and the models probed on it."""

    name: Label = ""  # derived from the url when absent, see _default_name
    url: Annotated[str, AfterValidator(canonical_url)]
    models: tuple[Label, ...]
    headers: Headers = Field(default_factory=dict)
    # Bounded against typos: each probe in flight is a generation on the server, and beyond its
    # parallel slots more probes at once measure the queue, not the server.
    concurrency: int = Field(default=1, ge=1, le=64)
    tls: Annotated[TLSSettings, _NULL_IS_EMPTY] = Field(default_factory=TLSSettings)
    # repr=False: a proxy URL may carry credentials; describe() prints it redacted.
    proxy: Annotated[str, AfterValidator(check_proxy_url)] | None = Field(default=None, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        """Name an unnamed target ``host:port``; a bad url is left for the url check to report."""
        url = data.get("url") if isinstance(data, Mapping) else None
        if isinstance(url, str) and data.get("name") is None:
            with suppress(ValueError):
                return {**data, "name": default_target_name(url)}
        return data

    @field_validator("models")
    @classmethod
    def _models(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one model is required")
        if duplicates := _duplicates(list(value), "model", "models"):
            raise _problems(duplicates)
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: Mapping[str, SecretStr]) -> Mapping[str, SecretStr]:
        seen: set[str] = set()
        for name in value:
            if name.lower() in seen:
                raise _problems([((name,), "given twice (header names are case-insensitive)")])
            seen.add(name.lower())
        return value

    def header_values(self) -> dict[str, str]:
        """Return the headers to send, secrets revealed: the one place plain values exist."""
        return {name: secret.get_secret_value() for name, secret in self.headers.items()}


class ProbeProfile(_Frozen):
    """What one probe sends and how often: the same profile runs against every target and model."""

    name: Label
    api: Api = "generate"
    stream: bool = True
    prompt: Annotated[str, AfterValidator(check_prompt)] = DEFAULT_PROMPT
    # None: the prompt as written; N: built-in text before it, to about N tokens per run.
    prompt_tokens: int | None = Field(default=None, ge=1, le=MAX_PROMPT_TOKENS)
    # Beyond any probe, and within every integer width the server may parse num_predict into.
    max_tokens: int = Field(default=64, ge=1, le=1_000_000)
    parallel: int = Field(default=1, ge=1, le=MAX_PARALLEL)
    interval: Duration = 60.0
    timeout: Duration = 300.0
    stall_timeout: Duration = 30.0
    think: Think = None
    keep_alive: KeepAlive = None
    when: Literal["always", "if_loaded"] = "always"
    options: Options = Field(default_factory=lambda: dict(DEFAULT_OPTIONS))

    @field_validator("options")
    @classmethod
    def _options_are_json(cls, value: Mapping[str, Any]) -> Mapping[str, Any]:
        # They go into the request body verbatim; YAML can also produce dates, bytes and NaN.
        try:
            json.dumps(dict(value), allow_nan=False)
        except (TypeError, ValueError):
            raise ValueError(
                "values must be plain JSON: strings, numbers, booleans, null, lists, mappings"
            ) from None
        if huge := [name for name, option in value.items() if has_huge_int(option)]:
            raise _problems([((name,), HUGE_INT) for name in huge])
        return value

    @model_validator(mode="after")
    def _stall_within_timeout(self) -> ProbeProfile:
        if self.stall_timeout > self.timeout:
            stall, total = format_duration(self.stall_timeout), format_duration(self.timeout)
            raise _problems([(("stall_timeout",), f"{stall} must be <= timeout ({total})")])
        return self

    def shape(self) -> JobShape:
        """Which series this profile's jobs can have (see ``JobShape``)."""
        return JobShape(
            parallel=self.parallel,
            streamed=self.stream,
            server_timings=self.api != "openai",
            skippable=self.when == "if_loaded",
        )

    def warnings(self, where: str) -> list[str]:
        """Legal settings that cost someone something, or that cannot do what they say."""
        notes = [
            f"{where}.options.{name}: load-time option: if it differs from the loaded "
            "runner, Ollama reloads the model, for every user of that server"
            for name in self.options
            if name in LOAD_TIME_OPTIONS and self.api != "openai"
        ]
        if self.max_tokens < 2:
            notes.append(
                f"{where}.max_tokens: {self.max_tokens} gives no tokens/s "
                "(timing the decode takes at least two tokens)"
            )
        if self.api == "openai":
            notes += self._openai_warnings(where)
        elif (note := self._context_warning()) is not None:
            notes.append(f"{where}.prompt_tokens: {note}")
        if self.keep_alive is not None:
            seconds = keep_alive_seconds(self.keep_alive)
            if seconds == 0:
                notes.append(
                    f"{where}.keep_alive: 0 unloads the model after every probe, for every "
                    "user of that server (the next request, probe or not, loads it again)"
                )
            elif seconds < 0:
                notes.append(
                    f"{where}.keep_alive: negative keeps the model loaded for ever, for every "
                    "user of that server"
                )
        return notes

    def _openai_warnings(self, where: str) -> list[str]:
        notes = [
            f"{where}.options.{name}: not sent with api: openai "
            "(/v1/chat/completions has no such field)"
            for name in self.options
            if name not in OPENAI_OPTIONS
        ]
        if self.think is True:
            notes.append(
                f"{where}.think: true is not sent with api: openai (it only takes false, "
                "low, medium or high, as reasoning_effort)"
            )
        if self.when == "if_loaded":
            notes.append(
                f"{where}.when: if_loaded asks Ollama's /api/ps, which other OpenAI-compatible "
                "servers do not have (every run then fails)"
            )
        return notes

    def _context_warning(self) -> str | None:
        """Whether a ``prompt_tokens`` prompt and its answer fit the model's context."""
        if self.prompt_tokens is None:
            return None
        num_ctx = self.options.get("num_ctx")
        given = isinstance(num_ctx, int) and not isinstance(num_ctx, bool)
        context = num_ctx if given and isinstance(num_ctx, int) else DEFAULT_NUM_CTX
        needed = self.prompt_tokens + self.max_tokens
        if needed <= context:
            return None
        source = "options.num_ctx" if given else "Ollama's default context"
        return (
            f"{self.prompt_tokens} prompt tokens + max_tokens {self.max_tokens} exceed the "
            f"{context} tokens of {source}: Ollama truncates the prompt, and prefill is "
            f"measured on less. Set options.num_ctx to at least {needed} (a load-time "
            "option: the model is reloaded with it, for every user of that server) or raise "
            "OLLAMA_CONTEXT_LENGTH on the server"
        )


DEFAULT_PROFILE = ProbeProfile(name="short")


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One scheduled job: a profile run against one model of one target, with its label values."""

    key: JobKey
    target: Target
    model: str
    profile: ProbeProfile


ENV_PREFIX = "OLLAMA_PROBE_"


class Settings(BaseSettings):
    """The whole configuration; build it with ``load_settings`` (file + env, all problems at once).

    ``Settings(**data)`` validates the data alone, which is what a round trip through
    ``model_dump`` needs; ``load_settings`` passes it the environment and config file sources.
    """

    # case_sensitive: YAML keys match exactly (`Targets:` is an unknown key); the environment
    # source folds the case of variable names itself.
    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        case_sensitive=True,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
    )

    targets: tuple[Target, ...] = ()
    probes: tuple[ProbeProfile, ...] = (DEFAULT_PROFILE,)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The data given, nothing else: ``load_settings`` passes the file and env sources."""
        return (init_settings,)

    @classmethod
    def _settings_log_debug(cls, states: dict[str, dict[str, Any]]) -> None:
        """Log nothing whatever PYDANTIC_SETTINGS_DEBUG says: the sources' data has secrets."""

    @field_validator("targets", "probes", mode="before")
    @classmethod
    def _none_as_default(cls, value: object, info: ValidationInfo) -> object:
        """A bare ``targets:`` or ``probes:`` (YAML null) means the default."""
        return cls.model_fields[str(info.field_name)].default if value is None else value

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: tuple[Target, ...]) -> tuple[Target, ...]:
        if not value:
            raise ValueError("at least one target is required")
        if duplicates := _duplicates([t.name for t in value], "target name", "targets", "name"):
            raise _problems(duplicates)
        return value

    @field_validator("probes")
    @classmethod
    def _probes(cls, value: tuple[ProbeProfile, ...]) -> tuple[ProbeProfile, ...]:
        if not value:
            raise ValueError(
                "at least one probe profile is required (omit `probes` for the default)"
            )
        if duplicates := _duplicates([p.name for p in value], "probe name", "probes", "name"):
            raise _problems(duplicates)
        return value

    def jobs(self) -> list[JobSpec]:
        """Every (target, model, profile) combination, in config order, targets outermost."""
        return [
            JobSpec(
                JobKey(target.name, model, profile.name, profile.shape()), target, model, profile
            )
            for target in self.targets
            for model in target.models
            for profile in self.probes
        ]

    def warnings(self) -> list[str]:
        """Return non-fatal notes, one ``<key path>: message`` line each, for logs and checks."""
        notes = []
        for i, target in enumerate(self.targets):
            where = f"targets[{i}].tls"
            if target.url.startswith("http://") and target.tls != TLSSettings():
                notes.append(f"{where}: ignored, the url is plain http://")
            elif target.tls.insecure_skip_verify:
                notes.append(f"{where}.insecure_skip_verify: TLS certificates are not verified")
        for i, profile in enumerate(self.probes):
            notes += profile.warnings(f"probes[{i}]")
        return notes
