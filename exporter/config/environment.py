"""``OLLAMA_PROBE_*`` variables as a pydantic-settings source, with list positions and no typos.

The library's ``EnvSettingsSource`` brings the prefix and ``__`` delimiter from the settings'
config and its place in the source order (env over the file). ``__call__`` is our own, for what
the library cannot do:

- list positions (``OLLAMA_PROBE_TARGETS__0__URL``): the library nests only through models and
  mappings, and both top-level keys are lists, so every per-key override needs one. It is written
  into the file's list (hence the file source ``below``) or into the variable's JSON list;
- refuse an ``OLLAMA_PROBE_*`` name that matches no key (the library ignores it), and report
  every bad variable by name (it stops at the first undecodable JSON, naming the field);
- read a given mapping rather than ``os.environ`` (``_load_env_vars``).

Names match keys case-insensitively; a list or a section given whole is JSON.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

from pydantic import BaseModel, SecretStr
from pydantic_settings import EnvSettingsSource, PydanticBaseSettingsSource

from exporter.config.sources import Key, Loading, format_path, shape

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings


class SourceProblem(Exception):
    """A problem located by an env variable name rather than by a key path."""


@dataclass(frozen=True)
class EnvOverride:
    """One ``OLLAMA_PROBE_*`` variable, decoded and placed in the key tree."""

    name: str
    path: tuple[Key, ...]
    shapes: tuple[str, ...]  # the shape of the value at each prefix of ``path``
    value: object


class EnvironmentSource(EnvSettingsSource):
    """The ``OLLAMA_PROBE_*`` variables of one load, applied over the source ``below`` them."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        state: Loading,
        below: PydanticBaseSettingsSource | None = None,
    ) -> None:
        self._state = state
        self._below = below
        super().__init__(settings_cls, case_sensitive=False)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        """The load's own mapping, names as given (they name the variable in problems)."""
        prefix = self.env_prefix.upper()
        environ = self._state.environ
        return {name: environ[name] for name in sorted(environ) if name.upper().startswith(prefix)}

    def __call__(self) -> dict[str, Any]:
        overrides = self._parse()
        below = self._below() if self._below is not None else {}
        # Only the top-level keys env touches are returned; each replaces the file's whole value,
        # into which the variables were already written key by key.
        touched = {override.path[0] for override in overrides}
        data = {key: copy.deepcopy(value) for key, value in below.items() if key in touched}
        for override in sorted(overrides, key=lambda o: o.path):
            # Path order applies a whole list before its entries, and entry 2 before entry 10.
            try:
                _set(data, override)
            except SourceProblem as exc:
                self._state.problems.append(f"{override.name}: {exc}")
        return data

    def _parse(self) -> list[EnvOverride]:
        """Decode every variable; an unknown or undecodable one is a problem, by name."""
        overrides: list[EnvOverride] = []
        by_path: dict[tuple[Key, ...], str] = {}
        delimiter = self.env_nested_delimiter or "__"
        for name, raw in self.env_vars.items():
            parts = name[len(self.env_prefix) :].lower().split(delimiter)
            try:
                path, shapes, annotation = _walk(self.settings_cls, parts)
                value = _decode(raw or "", shapes[-1], annotation)
            except SourceProblem as exc:
                self._state.problems.append(f"{name}: {exc}")
                continue
            except ValueError as exc:
                self._state.problems.append(
                    f"{name}: invalid JSON (lists and sections from env are JSON): {exc}"
                )
                continue
            if path in by_path:
                self._state.problems.append(
                    f"{name}: sets the same key as {by_path[path]} (names ignore case)"
                )
                continue
            by_path[path] = name
            overrides.append(EnvOverride(name, path, shapes, value))
        return overrides


def _walk(root: type[BaseModel], parts: list[str]) -> tuple[tuple[Key, ...], tuple[str, ...], Any]:
    """Follow the parts of a variable name through the field tree; return path, shapes, type."""
    kind: str = "model"
    inner: Any = root
    annotation: Any = Any
    path: list[Key] = []
    shapes: list[str] = []
    for part in parts:
        where = f" in {format_path(path)}" if path else ""
        if kind == "model":
            if part not in inner.model_fields:
                known = ", ".join(inner.model_fields)
                raise SourceProblem(f"unknown setting '{part}'{where}; known: {known}")
            annotation = inner.model_fields[part].annotation
            path.append(part)
        elif kind == "list" and part.isdigit():
            annotation = inner
            path.append(int(part))
        elif kind == "map" and part:
            annotation = inner
            path.append(part)
        else:
            raise SourceProblem(f"'{part}'{where} is not a list index or key that can be set")
        kind, inner = shape(annotation)
        shapes.append(kind)
    return tuple(path), tuple(shapes), annotation


def _decode(raw: str, kind: str, annotation: Any) -> object:
    """Turn one variable's text into a value: JSON for lists and sections, text for scalars."""
    if kind != "scalar":
        return json.loads(raw)
    _, base = shape(annotation)
    if base is Any or base is SecretStr:  # free-form options; {"file": ...} header secrets
        try:
            decoded = json.loads(raw)
        except ValueError:
            return raw
        return decoded if base is Any or isinstance(decoded, dict) else raw
    if raw.strip().lower() == "null" and type(None) in get_args(base):
        return None
    return raw


def _set(data: dict[str, Any], override: EnvOverride) -> None:
    """Write one override into ``data``, creating the lists and sections on its path."""
    node: Any = data
    container = "model"
    path = override.path
    for depth, step in enumerate(path):
        key = step
        last = depth == len(path) - 1
        fresh = override.value if last else ([] if override.shapes[depth] == "list" else {})
        where = format_path(path[:depth])
        if isinstance(key, int):
            if not isinstance(node, list):
                raise SourceProblem(f"cannot index {where}: it is not a list")
            if key > len(node):
                raise SourceProblem(
                    f"{where} has {len(node)} entries; indexes count from 0, no gaps"
                )
            if key == len(node):
                node.append(fresh)
            elif last or node[key] is None:
                node[key] = fresh
        else:
            if not isinstance(node, dict):
                raise SourceProblem(f"cannot set a key inside {where}: it is not a mapping")
            if container == "map":  # env names are lower-cased; reuse the file's spelling
                key = next((k for k in node if str(k).lower() == key), key)
            if last or node.get(key) is None:
                node[key] = fresh
        node = node[key]
        container = override.shapes[depth]
