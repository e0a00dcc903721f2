"""What one load reads, and the config file as a pydantic-settings source.

``Settings`` is a pydantic-settings ``BaseSettings``, whose ``__init__`` validates without a
validation context: ``model_validate(data, context=...)`` goes through it and the context is lost.
So the state of one load (the environ that ``{env: VAR}`` headers read, the config file's folder
that relative paths start from, the file and the problems found) travels in a context variable,
set by ``loading()`` around the construction. ``Settings.settings_customise_sources`` picks the
sources from it, and the value validators read it; outside a load, ``Settings`` validates the
data it is given and nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic_settings import YamlConfigSettingsSource

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings
    from pydantic_settings.sources import ConfigFileSourceType

FILE_KEY = "config.file"

Key = str | int


@dataclass
class Loading:
    """One load: where values come from, and every problem the sources found on the way."""

    environ: Mapping[str, str]
    base_dir: Path | None = None
    config_file: Path | None = None
    read_env: bool = False
    problems: list[str] = field(default_factory=list)
    file_usable: bool = True


_LOADING: ContextVar[Loading | None] = ContextVar("exporter_config_loading", default=None)


@contextmanager
def loading(state: Loading) -> Iterator[Loading]:
    """Make ``state`` the current load while Settings are built inside the ``with`` block."""
    token = _LOADING.set(state)
    try:
        yield state
    finally:
        _LOADING.reset(token)


def current_load() -> Loading:
    """The load in progress; outside one, the given data alone with the process environment."""
    return _LOADING.get() or Loading(environ=os.environ)


def format_path(loc: Iterable[Key]) -> str:
    """Render a location as a key path: ``("targets", 0, "url")`` → ``targets[0].url``."""
    out = ""
    for key in loc:
        if key == "[key]":  # pydantic's marker for an error in a mapping key, not a value
            continue
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


def shape(annotation: Any) -> tuple[str, Any]:
    """Classify a field type as model, list, map or scalar, with the inner type to walk into."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "model", annotation
    origin = get_origin(annotation)
    if origin in (tuple, list):
        return "list", get_args(annotation)[0]
    if origin in (dict, Mapping):
        return "map", get_args(annotation)[1]
    return "scalar", annotation


def known_keys(root: type[BaseModel], loc: Iterable[Key]) -> list[str] | None:
    """Return the field names of the model found at ``loc``, or None if there is none."""
    kind, inner = "model", root
    for key in loc:
        if kind == "model" and isinstance(key, str) and key in inner.model_fields:
            kind, inner = shape(inner.model_fields[key].annotation)
        elif kind in ("list", "map"):
            kind, inner = shape(inner)
        else:
            return None
    return list(inner.model_fields) if kind == "model" else None


class ConfigFileSource(YamlConfigSettingsSource):
    """The YAML config file, read by the library's YAML source with our checks and messages.

    The library skips a file that does not exist and lets PyYAML resolve a duplicate key as
    "the last one wins"; a ``--config.file`` that cannot be read, is not a mapping or repeats a
    key is a problem here, reported with its line numbers.
    """

    def __init__(self, settings_cls: type[BaseSettings], state: Loading) -> None:
        self._state = state
        super().__init__(settings_cls, yaml_file=state.config_file)

    def _read_files(
        self, files: ConfigFileSourceType | None, deep_merge: bool = False
    ) -> dict[str, Any]:
        """Read the load's one file (``files`` is that path); problems go to the load."""
        path = self._state.config_file
        data, problems = (None, []) if path is None else read_yaml(path)
        self._state.problems += problems
        if data is None:
            self._state.file_usable = False
            return {}
        # Keys become keyword arguments of BaseSettings.__init__, which must be strings.
        return {str(key): value for key, value in data.items()}


def read_yaml(path: Path) -> tuple[dict[Any, Any] | None, list[str]]:
    """Load the config file as a mapping, with its problems; ``None`` if it is unusable.

    Parsed with ``yaml.safe_load``; the file is also composed (no objects built) to find
    duplicate keys, which PyYAML otherwise resolves silently as "the last one wins".
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [f"{FILE_KEY}: cannot read {path}: {exc.strerror or exc}"]
    except UnicodeDecodeError:
        return None, [f"{FILE_KEY}: cannot read {path}: not UTF-8 text"]
    try:
        data = yaml.safe_load(text)
        duplicates = _duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), (), set())
    except yaml.YAMLError as exc:
        return None, [f"{FILE_KEY}: {_yaml_error(exc)}"]
    if data is None:
        return None, [f"{FILE_KEY}: the file is empty; it needs at least `targets`"]
    if not isinstance(data, dict):
        kind = {list: "list", str: "string", bool: "boolean"}.get(type(data), "number")
        return None, [
            f"{FILE_KEY}: the top level must be a mapping (targets:, probes:), not a {kind}"
        ]
    return data, duplicates


def _yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    if isinstance(exc, yaml.MarkedYAMLError) and mark is not None:
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        context, start = exc.context, exc.context_mark
        if context and start is not None:  # e.g. where the unclosed bracket was opened
            return (
                f"YAML syntax error at {where}: {exc.problem} "
                f"({context} at line {start.line + 1}, column {start.column + 1})"
            )
        return f"YAML syntax error at {where}: {exc.problem}"
    return f"YAML error: {exc}"


def _duplicate_keys(node: yaml.Node | None, loc: tuple[Key, ...], seen: set[int]) -> list[str]:
    """Report every key given twice in one mapping, with both line numbers."""
    if node is None or id(node) in seen:  # aliases share nodes; recursive anchors would loop
        return []
    seen.add(id(node))
    problems: list[str] = []
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems += _duplicate_keys(item, (*loc, index), seen)
    elif isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if key in first_line and key not in ("?", "<<"):
                problems.append(
                    f"{format_path((*loc, key))}: duplicate key "
                    f"(line {line}; first given at line {first_line[key]})"
                )
            first_line.setdefault(key, line)
            problems += _duplicate_keys(value_node, (*loc, key), seen)
    return problems
