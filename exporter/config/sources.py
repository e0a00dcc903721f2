"""Raw settings: the YAML file and the ``OLLAMA_PROBE_*`` variables, merged into one plain dict.

The environment is parsed here rather than by pydantic-settings because pydantic-settings
ignores unknown prefixed variables without a word, cannot address one list element
(``OLLAMA_PROBE_TARGETS__0__URL``), and reads ``os.environ`` where we need a given mapping.
Variable names are matched case-insensitively against the model's field tree; a list or a
section given whole must be JSON. Env wins over the file, key by key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import yaml
from pydantic import BaseModel, SecretStr

ENV_PREFIX = "OLLAMA_PROBE_"
ENV_DELIMITER = "__"
FILE_KEY = "config.file"

Key = str | int


class SourceProblem(Exception):
    """A problem located by an env variable name rather than by a key path."""


def format_path(loc: Iterable[Key]) -> str:
    """Render a location as a key path: ``("targets", 0, "url")`` → ``targets[0].url``."""
    out = ""
    for key in loc:
        if key == "[key]":  # pydantic's marker for an error in a mapping key, not a value
            continue
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


def read_yaml(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
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


def _shape(annotation: Any) -> tuple[str, Any]:
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
    shape, inner = "model", root
    for key in loc:
        if shape == "model" and isinstance(key, str) and key in inner.model_fields:
            shape, inner = _shape(inner.model_fields[key].annotation)
        elif shape in ("list", "map"):
            shape, inner = _shape(inner)
        else:
            return None
    return list(inner.model_fields) if shape == "model" else None


@dataclass(frozen=True)
class EnvOverride:
    """One ``OLLAMA_PROBE_*`` variable, decoded and placed in the key tree."""

    name: str
    path: tuple[Key, ...]
    shapes: tuple[str, ...]  # the shape of the value at each prefix of ``path``
    value: object


def parse_env(
    environ: Mapping[str, str], root: type[BaseModel]
) -> tuple[list[EnvOverride], list[str]]:
    """Decode every ``OLLAMA_PROBE_*`` variable; an unknown or undecodable one is a problem."""
    overrides: list[EnvOverride] = []
    problems: list[str] = []
    by_path: dict[tuple[Key, ...], str] = {}
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        try:
            path, shapes, annotation = _walk(
                root, name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)
            )
            value = _decode(environ[name], shapes[-1], annotation)
        except SourceProblem as exc:
            problems.append(f"{name}: {exc}")
            continue
        except ValueError as exc:
            problems.append(f"{name}: invalid JSON (lists and sections from env are JSON): {exc}")
            continue
        if path in by_path:
            problems.append(f"{name}: sets the same key as {by_path[path]} (names ignore case)")
            continue
        by_path[path] = name
        overrides.append(EnvOverride(name, path, shapes, value))
    return overrides, problems


def _walk(root: type[BaseModel], parts: list[str]) -> tuple[tuple[Key, ...], tuple[str, ...], Any]:
    """Follow the parts of a variable name through the field tree; return path, shapes, type."""
    shape: str = "model"
    inner: Any = root
    annotation: Any = Any
    path: list[Key] = []
    shapes: list[str] = []
    for part in parts:
        where = f" in {format_path(path)}" if path else ""
        if shape == "model":
            if part not in inner.model_fields:
                known = ", ".join(inner.model_fields)
                raise SourceProblem(f"unknown setting '{part}'{where}; known: {known}")
            annotation = inner.model_fields[part].annotation
            path.append(part)
        elif shape == "list" and part.isdigit():
            annotation = inner
            path.append(int(part))
        elif shape == "map" and part:
            annotation = inner
            path.append(part)
        else:
            raise SourceProblem(f"'{part}'{where} is not a list index or key that can be set")
        shape, inner = _shape(annotation)
        shapes.append(shape)
    return tuple(path), tuple(shapes), annotation


def _decode(raw: str, shape: str, annotation: Any) -> object:
    """Turn one variable's text into a value: JSON for lists and sections, text for scalars."""
    if shape != "scalar":
        return json.loads(raw)
    _, base = _shape(annotation)
    if base is Any or base is SecretStr:  # free-form options; {"file": ...} header secrets
        try:
            decoded = json.loads(raw)
        except ValueError:
            return raw
        return decoded if base is Any or isinstance(decoded, dict) else raw
    if raw.strip().lower() == "null" and type(None) in get_args(base):
        return None
    return raw


def apply_env(data: dict[str, Any], overrides: list[EnvOverride]) -> list[str]:
    """Write the overrides into ``data`` in place, in key-path order.

    Sorting by path (list indexes as numbers) applies a whole list before its elements and
    element 2 before element 10, so env alone can build a list entry by entry.
    """
    problems = []
    for override in sorted(overrides, key=lambda o: o.path):
        try:
            _set(data, override)
        except SourceProblem as exc:
            problems.append(f"{override.name}: {exc}")
    return problems


def _set(data: dict[str, Any], override: EnvOverride) -> None:
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
