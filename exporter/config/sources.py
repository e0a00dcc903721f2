"""The config file and the ``OLLAMA_PROBE_*`` variables as pydantic-settings sources.

``load_settings`` passes both to ``BaseSettings.__init__`` (``_build_sources``), env first: env
wins over the file, key by key. Each reads in its constructor, with our own code, and keeps its
problems, so that a load reports them all; to the library each is an ``InitSettingsSource`` of
the data read. They do what the library's YAML and env sources do not: the file's problems with
line numbers (the library skips a missing file, and a repeated key wins silently); list
positions in env names (``OLLAMA_PROBE_TARGETS__0__URL``), names that match no key refused (the
library ignores them), each bad variable reported by name, and a given mapping read, not
``os.environ``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import yaml
from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings, InitSettingsSource

Key = str | int


class SourceProblem(ValueError):
    """A problem with where values come from: a file that cannot be read, a bad variable name."""


def read_text(path: Path) -> str:
    """Read a UTF-8 file (the config file, a header secret), or say why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceProblem(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SourceProblem(f"cannot read {path}: not UTF-8 text") from None


def format_path(loc: Iterable[Key]) -> str:
    """Render a location as a key path: ``("targets", 0, "url")`` → ``targets[0].url``."""
    out = ""
    for key in (key for key in loc if key != "[key]"):  # pydantic's mark of a mapping key's error
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


def _shape(annotation: Any) -> tuple[str, Any]:
    """Classify a type as model, list, map or scalar, with the type inside it to walk into."""
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


def walk(root: type[BaseModel], keys: Iterable[str]) -> tuple[tuple[Key, ...], list[str], Any]:
    """Follow ``keys`` (field names, list indexes as digits, map keys) down the field tree.

    Return the path, the kind of each node on it (model, list, map or scalar; the root's first)
    and the type inside the node reached; ``SourceProblem`` for a key that leads nowhere.
    """
    path: list[Key] = []
    kinds, inner = ["model"], root
    for key in keys:
        kind, where = kinds[-1], f" in {format_path(path)}" if path else ""
        if kind == "model" and key not in inner.model_fields:
            known = ", ".join(inner.model_fields)
            raise SourceProblem(f"unknown setting '{key}'{where}; known: {known}")
        if kind == "scalar" or not (key.isdigit() if kind == "list" else key):  # index, map key
            raise SourceProblem(f"'{key}'{where} is not a list index or key that can be set")
        path.append(int(key) if kind == "list" else key)
        kind, inner = _shape(inner.model_fields[key].annotation if kind == "model" else inner)
        kinds.append(kind)
    return tuple(path), kinds, inner


class ConfigFileSource(InitSettingsSource):
    """The YAML config file at ``path`` (none if None); what is wrong with it is in ``problems``."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        self.problems: list[str] = []
        self.usable = True
        self.data = {} if path is None else self._read(path)
        super().__init__(settings_cls, self.data)

    def _read(self, path: Path) -> dict[str, Any]:
        """Read the file; an unusable file reads as ``{}``.

        It is also composed (no objects built) to find the keys ``safe_load`` lets win silently.
        """
        try:
            text = read_text(path)
            data = yaml.safe_load(text)
            self.problems = _duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), (), set())
            if data is None:
                raise SourceProblem("the file is empty; it needs at least `targets`")
            if not isinstance(data, dict):
                kind = {list: "list", str: "string", bool: "boolean"}.get(type(data), "number")
                raise SourceProblem(
                    f"the top level must be a mapping (targets:, probes:), not a {kind}"
                )
        except (ValueError, yaml.YAMLError) as exc:  # PyYAML raises ValueError for 2024-13-45
            self.usable = False
            self.problems = [f"config.file: {_file_problem(exc)}"]
            return {}
        # Keys become keyword arguments of BaseSettings.__init__, which must be strings.
        return {str(key): value for key, value in data.items()}


def _file_problem(exc: Exception) -> str:
    """Say what is wrong, and where: the line of the problem and of the construct it is in."""
    if isinstance(exc, SourceProblem):
        return str(exc)
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f"YAML error: {exc}"
    at, start = exc.problem_mark, exc.context_mark
    message = f"YAML syntax error at line {at.line + 1}, column {at.column + 1}: {exc.problem}"
    if exc.context and start is not None:  # e.g. where the unclosed bracket was opened
        message += f" ({exc.context} at line {start.line + 1}, column {start.column + 1})"
    return message


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


class EnvironmentSource(InitSettingsSource):
    """The ``OLLAMA_PROBE_*`` variables of ``environ``, written key by key into the data below.

    It returns the top-level keys they touch, each a copy of the file's value with the variables
    written in: env's value replaces the file's whole, so list entries keep their other keys.
    """

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        environ: Mapping[str, str],
        below: Mapping[str, Any],
    ) -> None:
        prefix = settings_cls.model_config.get("env_prefix", "").upper()
        delimiter = settings_cls.model_config.get("env_nested_delimiter") or "__"
        self.problems: list[str] = []
        found: dict[tuple[Key, ...], tuple[str, list[str], object]] = {}
        # Sorted, and named as spelled: problems name the variable.
        for name in sorted(name for name in environ if name.upper().startswith(prefix)):
            parts = name[len(prefix) :].lower().split(delimiter)
            try:
                path, kinds, inner = walk(settings_cls, parts)
                value = _decode(environ[name], kinds[-1], inner)
                if path in found:
                    raise SourceProblem(
                        f"sets the same key as {found[path][0]} (names ignore case)"
                    )
                found[path] = (name, kinds, value)
            except SourceProblem as exc:
                self.problems.append(f"{name}: {exc}")
        touched = {path[0] for path in found}
        self.data = {key: copy.deepcopy(value) for key, value in below.items() if key in touched}
        # Path order applies a whole list before its entries, and entry 2 before entry 10.
        for path, (name, kinds, value) in sorted(found.items()):
            try:
                _put(self.data, path, kinds, value)
            except SourceProblem as exc:
                self.problems.append(f"{name}: {exc}")
        super().__init__(settings_cls, self.data)


def _decode(raw: str, kind: str, base: Any) -> object:
    """Turn one variable's text into a value: JSON for lists and sections, text for scalars."""
    if kind == "scalar" and base not in (Any, SecretStr):
        return None if raw.strip().lower() == "null" and type(None) in get_args(base) else raw
    try:
        decoded = json.loads(raw)
    except ValueError as exc:
        if kind == "scalar":  # free-form options; {"file": ...} header secrets
            return raw
        raise SourceProblem(f"invalid JSON (lists and sections from env are JSON): {exc}") from None
    return raw if base is SecretStr and not isinstance(decoded, dict) else decoded


def _put(data: dict[str, Any], path: tuple[Key, ...], kinds: list[str], value: object) -> None:
    """Write ``value`` at ``path`` in ``data``, creating the lists and sections on the way."""
    node: Any = data
    for depth, step in enumerate(path):
        key, where = step, format_path(path[:depth])
        if isinstance(key, int):
            if not isinstance(node, list):
                raise SourceProblem(f"cannot index {where}: it is not a list")
            if key > len(node):
                raise SourceProblem(
                    f"{where} has {len(node)} entries; indexes count from 0, no gaps"
                )
            if key == len(node):
                node.append(None)
        else:
            if not isinstance(node, dict):
                raise SourceProblem(f"cannot set a key inside {where}: it is not a mapping")
            if kinds[depth] == "map":  # env names are lower case; keep the file's spelling
                key = next((k for k in node if str(k).lower() == key), key)
            node.setdefault(key, None)
        if depth == len(path) - 1:
            node[key] = value
        elif node[key] is None:
            node[key] = [] if isinstance(path[depth + 1], int) else {}
        node = node[key]
