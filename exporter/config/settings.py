"""The whole configuration: a pydantic-settings ``BaseSettings`` and the jobs it multiplies into.

``Settings(**data)`` validates the data alone, which is what a round trip through ``model_dump``
needs; ``load_settings`` passes it the environment and config file sources instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from exporter.config.models import (
    DEFAULT_PROFILE,
    ProbeProfile,
    Target,
    TLSSettings,
    find_duplicates,
    problems_error,
)
from exporter.config.values import LOAD_TIME_OPTIONS
from exporter.result import JobKey


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

    Frozen like its parts: a reload builds a new object instead of mutating the live one.
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
        """Log nothing, whatever PYDANTIC_SETTINGS_DEBUG says.

        The library would log every source's data: header values in clear, before validation
        makes them SecretStr.
        """

    @field_validator("targets", mode="before")
    @classmethod
    def _targets_none(cls, value: object) -> object:
        return () if value is None else value

    @field_validator("probes", mode="before")
    @classmethod
    def _probes_none(cls, value: object) -> object:
        return (DEFAULT_PROFILE,) if value is None else value

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: tuple[Target, ...]) -> tuple[Target, ...]:
        if not value:
            raise ValueError("at least one target is required")
        if duplicates := find_duplicates(
            [t.name for t in value], "target name", "targets", "[{i}].name"
        ):
            raise problems_error(duplicates)
        return value

    @field_validator("probes")
    @classmethod
    def _probes(cls, value: tuple[ProbeProfile, ...]) -> tuple[ProbeProfile, ...]:
        if not value:
            raise ValueError(
                "at least one probe profile is required (omit `probes` for the default)"
            )
        if duplicates := find_duplicates(
            [p.name for p in value], "probe name", "probes", "[{i}].name"
        ):
            raise problems_error(duplicates)
        return value

    def jobs(self) -> list[JobSpec]:
        """Every (target, model, profile) combination, in config order, targets outermost."""
        return [
            JobSpec(JobKey(target.name, model, profile.name), target, model, profile)
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
            notes.extend(_profile_warnings(f"probes[{i}]", profile))
        return notes


def _profile_warnings(where: str, profile: ProbeProfile) -> list[str]:
    """Notes on one profile: settings that are legal but cost someone something."""
    notes = [
        f"{where}.options.{name}: load-time option: if it differs from the loaded runner, Ollama "
        "reloads the model, for every user of that server"
        for name in profile.options
        if name in LOAD_TIME_OPTIONS
    ]
    if profile.max_tokens < 2:
        notes.append(
            f"{where}.max_tokens: {profile.max_tokens} gives no tokens/s "
            "(timing the decode takes at least two tokens)"
        )
    return notes
