"""Config loading: the invalid-file table, defaults, env overrides, secrets, warnings and jobs."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from exporter.config import (
    ConfigError,
    ProbeProfile,
    Settings,
    Target,
    build_settings,
    describe,
    format_duration,
    load_settings,
    parse_duration,
)
from exporter.result import JobKey, JobShape

TESTDATA = Path(__file__).parent / "config_testdata"
FULL = TESTDATA / "valid-full.yml"
FULL_ENV = {"PROBE_TEST_API_KEY": "k-from-env"}  # valid-full.yml reads one header from env
REPO = Path(__file__).parent.parent
HINT = "use a number of seconds or <number>ms|s|m|h"
TOO_LONG = "duration must be at most 720h (30 days), got"
AUTH = "targets[0].headers.Authorization: header value"
THINK = "must be true, false, null, 'low', 'medium' or 'high', got"
TARGET_KEYS = "name, url, models, headers, concurrency, tls, proxy"
PROFILE_KEYS = (
    "name, api, stream, prompt, prompt_tokens, max_tokens, parallel, interval, timeout, "
    "stall_timeout, think, keep_alive, when, options"
)
KEEP_ALIVE = 'must be a number of seconds or a duration such as "5m" or "-1s", got'
RELOAD = (
    "load-time option: if it differs from the loaded runner, Ollama reloads the model, "
    "for every user of that server"
)

# Each file config_testdata/invalid-<case>.yml with the exact lines it must produce.
INVALID = {
    "unknown-top-key": ["interval: unknown key; known: targets, probes"],
    "top-key-case": ["Probes: unknown key; known: targets, probes"],
    "unknown-target-key": [f"targets[0].timeout: unknown key; known: {TARGET_KEYS}"],
    "unknown-probe-key": [f"probes[0].timeout_secs: unknown key; known: {PROFILE_KEYS}"],
    "url-scheme": ["targets[0].url: scheme must be http or https, got 'ftp'"],
    "url-no-scheme": ["targets[0].url: must start with http:// or https://"],
    "url-credentials": [
        "targets[0].url: must not contain credentials: send them as a header (Authorization)"
    ],
    "missing-models": ["targets[0].models: required key is missing"],
    "duplicate-model": ["targets[0].models[2]: duplicate model 'm' (also models[0])"],
    "duplicate-target-name": ["targets[1].name: duplicate target name 'h:11434' (also targets[0])"],
    "duplicate-probe-name": ["probes[2].name: duplicate probe name 'short' (also probes[0])"],
    "no-targets": ["targets: at least one target is required"],
    "concurrency": ["targets[0].concurrency: Input should be greater than or equal to 1"],
    "concurrency-too-high": ["targets[0].concurrency: Input should be less than or equal to 64"],
    "duration": [f"probes[0].interval: invalid duration '5 minutes': {HINT}"],
    "duration-too-long": [f"probes[0].interval: {TOO_LONG} '99999999999999h'"],
    "max-tokens": ["probes[0].max_tokens: Input should be less than or equal to 1000000"],
    "options-huge-int": [
        "probes[0].options.seed: integers must be within ±(2^53-1): larger ones lose their value "
        "in JSON readers (RFC 8259 §6)"
    ],
    "stall-timeout": ["probes[0].stall_timeout: 30s must be <= timeout (20s)"],
    "negative-interval": ["probes[0].interval: duration must be > 0, got '-5s'"],
    "api": ["probes[0].api: Input should be 'generate', 'chat' or 'openai'"],
    "parallel-too-high": ["probes[0].parallel: Input should be less than or equal to 32"],
    "prompt-tokens": ["probes[0].prompt_tokens: Input should be greater than or equal to 1"],
    "keep-alive": [f"probes[0].keep_alive: {KEEP_ALIVE} '300'"],
    "when": ["probes[0].when: Input should be 'always' or 'if_loaded'"],
    "num-predict": [
        "probes[0].options.num_predict: use max_tokens instead (it is sent as options.num_predict)"
    ],
    "think": [f"probes[0].think: {THINK} 'max'"],
    "options-not-json": [
        "probes[0].options: values must be plain JSON: strings, numbers, booleans, null, lists, "
        "mappings"
    ],
    "empty-prompt": [
        "probes[0].prompt: must not be empty: an empty prompt is an Ollama load-only request "
        "that never streams"
    ],
    "header-env-unset": [
        "targets[0].headers.Authorization: environment variable PROBE_TEST_TOKEN_UNSET is not set"
    ],
    "header-file-missing": [
        "targets[0].headers.Authorization: cannot read {testdata}/no-such-secret.txt: "
        "No such file or directory"
    ],
    "header-whitespace": [
        "targets[0].headers.X-Leading: header value has leading whitespace",
        f"{AUTH} has trailing whitespace",
    ],
    "header-file-tab": [f"{AUTH} has trailing whitespace"],
    "header-file-bom": [
        f"{AUTH} starts with a byte order mark (U+FEFF, as in a file saved as UTF-8 with BOM)"
    ],
    "header-control": [f"{AUTH} contains a control character"],
    "header-non-ascii": [
        f"{AUTH} contains a non-ASCII character (header values are sent as ASCII)"
    ],
    "header-name": [
        "targets[0].headers.Bad Name: not a valid HTTP header name",
        "targets[0].headers.Accept-Encoding: set by the exporter itself; it cannot be configured",
    ],
    "ca-file-missing": ["targets[0].tls.ca_file: no such file: {testdata}/no-such-ca.pem"],
    "yaml-syntax": [
        "config.file: YAML syntax error at line 4, column 7: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence at line 3, column 13)"
    ],
    "duplicate-key": ["targets[0].url: duplicate key (line 4; first given at line 2)"],
    "top-level-list": [
        "config.file: the top level must be a mapping (targets:, probes:), not a list"
    ],
    "empty": ["config.file: the file is empty; it needs at least `targets`"],
    "targets-not-list": ["targets: must be a list"],
    "model-not-string": [
        "targets[0].models[0]: must be a string "
        "(quote it: YAML reads yes/no/on/off and numbers otherwise)"
    ],
    "many-problems": [
        "targets[0].url: scheme must be http or https, got 'ftp'",
        "targets[0].models: at least one model is required",
        "targets[1].concurrency: Input should be a valid integer, "
        "unable to parse string as an integer",
        f"probes[0].interval: invalid duration 'soon': {HINT}",
        f"probes[1].think: {THINK} 'maybe'",
        f"probes[1].extra: unknown key; known: {PROFILE_KEYS}",
    ],
}


def env(
    targets: list[dict[str, Any]] | None = None,
    probes: list[dict[str, Any]] | None = None,
    /,
    **variables: str,
) -> dict[str, str]:
    """An environ mapping with the lists as JSON; one target ``h:11434`` unless told otherwise."""
    environ = {
        "OLLAMA_PROBE_TARGETS": json.dumps(targets or [{"url": "http://h:11434", "models": ["m"]}])
    }
    if probes is not None:
        environ["OLLAMA_PROBE_PROBES"] = json.dumps(probes)
    return environ | variables


def problems_of(path: Path | None, environ: dict[str, str]) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ)
    return caught.value.problems


class TestInvalidFiles:
    @pytest.mark.parametrize("case", sorted(INVALID))
    def test_exact_problems(self, case: str) -> None:
        """Each invalid file yields exactly its expected problem lines, in order."""
        expected = tuple(line.format(testdata=TESTDATA) for line in INVALID[case])
        assert problems_of(TESTDATA / f"invalid-{case}.yml", {}) == expected

    def test_every_file_has_a_case(self) -> None:
        """No invalid-*.yml file sits in testdata without an expected message."""
        files = {p.stem.removeprefix("invalid-") for p in TESTDATA.glob("invalid-*.yml")}
        assert files == set(INVALID)

    def test_missing_file(self, tmp_path: Path) -> None:
        """An unreadable config file is one config.file problem naming the path."""
        path = tmp_path / "nope.yml"
        expected = f"config.file: cannot read {path}: No such file or directory"
        assert problems_of(path, {}) == (expected,)

    def test_yaml_value_error(self, tmp_path: Path) -> None:
        """A value PyYAML cannot build (a date in month 13) is a config.file problem, not a crash."""
        path = tmp_path / "config.yml"
        path.write_text("targets: []\nsince: 2024-13-45\n")
        assert problems_of(path, {}) == ("config.file: YAML error: month must be in 1..12",)

    def test_str_joins_lines(self) -> None:
        """str(ConfigError) is the problem lines joined by newlines, ready to print."""
        with pytest.raises(ConfigError) as caught:
            load_settings(TESTDATA / "invalid-many-problems.yml", {})
        assert str(caught.value) == "\n".join(INVALID["many-problems"])


class TestParseDuration:
    @pytest.mark.parametrize(
        ("value", "seconds"),
        [("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), (30, 30.0), (1.5, 1.5),
         ("45", 45.0), ("2.5", 2.5), (" 10s ", 10.0), (".5s", 0.5), ("720h", 2592000.0)],
    )  # fmt: skip
    def test_valid(self, value: object, seconds: float) -> None:
        """Units ms/s/m/h, bare numbers and numeric strings all become float seconds."""
        assert parse_duration(value) == seconds

    @pytest.mark.parametrize(
        ("value", "message"),
        [("5 minutes", f"invalid duration '5 minutes': {HINT}"),
         ("1d", f"invalid duration '1d': {HINT}"), ("", f"invalid duration '': {HINT}"),
         (True, f"invalid duration 'True': {HINT}"), (None, f"invalid duration 'None': {HINT}"),
         (float("inf"), f"invalid duration 'inf': {HINT}"), (0, "duration must be > 0, got '0'"),
         ("0s", "duration must be > 0, got '0s'"), (-1.5, "duration must be > 0, got '-1.5'"),
         ("721h", f"{TOO_LONG} '721h'"), (2592000.5, f"{TOO_LONG} '2592000.5'"),
         ("99999999999999h", f"{TOO_LONG} '99999999999999h'")],
    )  # fmt: skip
    def test_invalid(self, value: object, message: str) -> None:
        """Anything else is a ValueError with the documented text."""
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            parse_duration(value)

    @pytest.mark.parametrize("text", ["500ms", "30s", "5m", "1h", "90s", "1.5s", "1ms"])
    def test_format_round_trips(self, text: str) -> None:
        """format_duration renders seconds in a form that parse_duration reads back unchanged."""
        seconds = parse_duration(text)
        assert parse_duration(format_duration(seconds)) == seconds


class TestTargets:
    @pytest.mark.parametrize(
        ("url", "name", "canonical"),
        [("http://h", "h:80", "http://h"), ("https://h/x", "h:443", "https://h/x"),
         ("http://127.0.0.1:11434/", "127.0.0.1:11434", "http://127.0.0.1:11434"),
         ("https://Example.COM/ollama/", "example.com:443", "https://example.com/ollama"),
         ("http://[::1]:11434", "[::1]:11434", "http://[::1]:11434")],
    )  # fmt: skip
    def test_default_name_and_canonical_url(self, url: str, name: str, canonical: str) -> None:
        """An unnamed target is called host:port; its url keeps the prefix and loses the slash."""
        target = Target.model_validate({"url": url, "models": ["m"]})
        assert (target.name, target.url) == (name, canonical)

    def test_explicit_name_kept(self) -> None:
        """A given name wins over the derived one."""
        target = Target.model_validate({"name": "box", "url": "http://h", "models": ["m"]})
        assert target.name == "box"

    def test_settings_are_frozen(self) -> None:
        """Settings objects are immutable: a reload must build a new one."""
        settings = load_settings(None, env())
        with pytest.raises(ValidationError, match="frozen"):
            settings.targets[0].concurrency = 5  # type: ignore[misc]


class TestValidFile:
    def test_targets(self) -> None:
        """valid-full.yml's targets load as written, with relative paths beside the file."""
        box, second = load_settings(FULL, FULL_ENV).targets
        assert (box.name, box.url, box.models, box.concurrency) == (
            "gpu-box-1", "http://127.0.0.1:11434", ("llama3.2:1b", "qwen3:0.6b"), 2)  # fmt: skip
        assert box.header_values() == {
            "Authorization": "Bearer s3cret-from-file", "X-Api-Key": "k-from-env",
            "X-Team": "observability"}  # fmt: skip
        assert (box.tls.ca_file, box.proxy) == (
            TESTDATA / "valid-full.ca.pem", "http://proxy.internal:3128")  # fmt: skip
        assert (second.name, second.url) == ("example.com:443", "https://example.com/ollama")

    def test_probes(self) -> None:
        """valid-full.yml's profiles load as written; a name-only profile gets every default."""
        short, thinking, workload = load_settings(FULL, FULL_ENV).probes
        assert short == ProbeProfile(name="short")
        assert (thinking.api, thinking.prompt, thinking.max_tokens, thinking.think) == (
            "chat", "Why is the sky blue?", 128, "low")  # fmt: skip
        assert (thinking.interval, thinking.timeout, thinking.stall_timeout) == (300.0, 120.0, 1.5)
        assert thinking.options == {"temperature": 0.2, "seed": 7, "stop": ["\n\n"]}
        assert (workload.api, workload.stream, workload.prompt_tokens, workload.parallel) == (
            "openai", False, 1000, 4)  # fmt: skip
        assert (workload.keep_alive, workload.when) == ("10m", "if_loaded")

    def test_round_trip(self) -> None:
        """Dumping and re-validating loaded settings gives equal settings."""
        settings = load_settings(FULL, FULL_ENV)
        assert Settings.model_validate(settings.model_dump()) == settings

    def test_defaults(self) -> None:
        """A target with only url and models gets the documented defaults and default profile."""
        settings = load_settings(None, env())
        target, (profile,) = settings.targets[0], settings.probes
        tls = target.tls
        assert (target.concurrency, target.headers, target.proxy) == (1, {}, None)
        assert (tls.ca_file, tls.insecure_skip_verify) == (None, False)
        assert (profile.name, profile.api, profile.prompt, profile.max_tokens, profile.think) == (
            "short", "generate", "Tell a long story about the sea.", 64, None)  # fmt: skip
        assert (profile.interval, profile.timeout, profile.stall_timeout) == (60.0, 300.0, 30.0)
        assert profile.options == {"temperature": 0, "seed": 42}
        assert (profile.stream, profile.prompt_tokens, profile.parallel) == (True, None, 1)
        assert (profile.keep_alive, profile.when) == (None, "always")

    @pytest.mark.parametrize("name", ["example.yml", "minimal.yml"])
    def test_shipped_configs_load(self, name: str) -> None:
        """The config files shipped in config/ load without errors and produce jobs."""
        assert load_settings(REPO / "config" / name, {}).jobs()


class TestEnvironment:
    def test_env_wins_key_by_key(self) -> None:
        """An indexed variable overrides one key of a file's list entry and keeps its siblings."""
        environ = FULL_ENV | {
            "OLLAMA_PROBE_TARGETS__0__CONCURRENCY": "7",
            "OLLAMA_PROBE_PROBES__1__INTERVAL": "90s",
        }
        settings = load_settings(FULL, environ)
        target, profile = settings.targets[0], settings.probes[1]
        assert (target.concurrency, target.name, profile.interval, profile.api) == (
            7, "gpu-box-1", 90.0, "chat")  # fmt: skip

    def test_json_list_replaces_file_list(self) -> None:
        """A whole list from env is JSON and replaces the file's list."""
        settings = load_settings(FULL, FULL_ENV | env())
        assert [t.name for t in settings.targets] == ["h:11434"]

    def test_env_only(self) -> None:
        """Without a file, env alone defines targets (JSON) and profiles (indexed keys)."""
        environ = env(OLLAMA_PROBE_PROBES__0__NAME="p", OLLAMA_PROBE_PROBES__0__MAX_TOKENS="8",
                      OLLAMA_PROBE_PROBES__1__NAME="q")  # fmt: skip
        settings = load_settings(None, environ)
        assert [(p.name, p.max_tokens) for p in settings.probes] == [("p", 8), ("q", 64)]

    def test_indexes_apply_in_numeric_order(self) -> None:
        """Entries 0..11 built from indexed variables land in order (10 after 9, not after 1)."""
        names = {f"OLLAMA_PROBE_PROBES__{i}__NAME": f"p{i}" for i in range(12)}
        settings = load_settings(None, env() | names)
        assert [p.name for p in settings.probes] == [f"p{i}" for i in range(12)]

    def test_names_are_case_insensitive(self) -> None:
        """Variable names match keys whatever their case."""
        environ = {"ollama_probe_Targets": env()["OLLAMA_PROBE_TARGETS"]}
        assert load_settings(None, environ).targets[0].name == "h:11434"

    def test_scalar_decoding(self) -> None:
        """Option values are JSON when they parse, and null clears a nullable key."""
        environ = FULL_ENV | {
            "OLLAMA_PROBE_PROBES__1__OPTIONS__TEMPERATURE": "0.5",
            "OLLAMA_PROBE_PROBES__1__OPTIONS__STOP": '["x"]',
            "OLLAMA_PROBE_PROBES__1__THINK": "null",
        }
        profile = load_settings(FULL, environ).probes[1]
        assert profile.options == {"temperature": 0.5, "seed": 7, "stop": ["x"]}
        assert profile.think is None

    def test_headers_merge(self) -> None:
        """A header variable replaces the file's header of any case; {env:} works from env too."""
        environ = FULL_ENV | {
            "OLLAMA_PROBE_TARGETS__0__HEADERS__AUTHORIZATION": '{"env": "PROBE_TEST_API_KEY"}',
            "OLLAMA_PROBE_TARGETS__0__HEADERS__X_TEAM": "sre",
        }
        headers = load_settings(FULL, environ).targets[0].header_values()
        assert headers == {"Authorization": "k-from-env", "X-Api-Key": "k-from-env",
                           "X-Team": "observability", "x_team": "sre"}  # fmt: skip

    @pytest.mark.parametrize(
        ("name", "value", "message"),
        [("OLLAMA_PROBE_TARGETZ", "1", "unknown setting 'targetz'; known: targets, probes"),
         ("OLLAMA_PROBE_TARGETS__0__URLL", "x",
          f"unknown setting 'urll' in targets[0]; known: {TARGET_KEYS}"),
         ("OLLAMA_PROBE_TARGETS__URL", "x",
          "'url' in targets is not a list index or key that can be set"),
         ("OLLAMA_PROBE_PROBES__0__API__X", "x",
          "'x' in probes[0].api is not a list index or key that can be set"),
         ("OLLAMA_PROBE_PROBES", "[{", "invalid JSON (lists and sections from env are JSON): "
          "Expecting property name enclosed in double quotes: line 1 column 3 (char 2)"),
         ("OLLAMA_PROBE_TARGETS__3__URL", "http://x",
          "targets has 1 entries; indexes count from 0, no gaps")],
    )  # fmt: skip
    def test_bad_variable(self, name: str, value: str, message: str) -> None:
        """An unknown, misplaced or undecodable OLLAMA_PROBE_* variable is reported by name."""
        assert problems_of(None, env() | {name: value}) == (f"{name}: {message}",)

    def test_position_in_a_nested_list(self) -> None:
        """A list position works at any depth: here the next model of the file's first target."""
        environ = FULL_ENV | {"OLLAMA_PROBE_TARGETS__0__MODELS__2": "m3"}
        models = load_settings(FULL, environ).targets[0].models
        assert models == ("llama3.2:1b", "qwen3:0.6b", "m3")

    def test_same_key_twice(self) -> None:
        """Two variables whose names differ only in case are one problem, not a silent pick."""
        environ = env(OLLAMA_PROBE_TARGETS__0__URL="http://a", ollama_probe_targets__0__url="b")
        assert problems_of(None, environ) == (
            "ollama_probe_targets__0__url: sets the same key as OLLAMA_PROBE_TARGETS__0__URL "
            "(names ignore case)",
        )

    def test_position_in_what_is_not_a_list(self) -> None:
        """A position into a JSON mapping is reported by the variable's name."""
        environ = {"OLLAMA_PROBE_TARGETS": "{}", "OLLAMA_PROBE_TARGETS__0__URL": "http://h"}
        assert problems_of(None, environ)[0] == (
            "OLLAMA_PROBE_TARGETS__0__URL: cannot index targets: it is not a list"
        )

    def test_unusable_file_and_env(self) -> None:
        """An unusable file and bad variables are reported without validation noise."""
        environ = {"OLLAMA_PROBE_TARGETZ": "1"}
        assert problems_of(TESTDATA / "invalid-empty.yml", environ) == (
            "config.file: the file is empty; it needs at least `targets`",
            "OLLAMA_PROBE_TARGETZ: unknown setting 'targetz'; known: targets, probes",
        )

    def test_env_value_errors_use_key_paths(self) -> None:
        """A bad value that came from env is reported at its key path, like a file's."""
        environ = env(OLLAMA_PROBE_TARGETS__0__URL="ftp://h")
        expected = "targets[0].url: scheme must be http or https, got 'ftp'"
        assert problems_of(None, environ) == (expected,)

    def test_env_and_file_problems_together(self) -> None:
        """Env and file problems are all reported in one ConfigError, env first."""
        environ = {"OLLAMA_PROBE_TARGETZ": "1", "OLLAMA_PROBE_PROBES__0__API": "completions"}
        assert problems_of(TESTDATA / "invalid-missing-models.yml", environ) == (
            "OLLAMA_PROBE_TARGETZ: unknown setting 'targetz'; known: targets, probes",
            "targets[0].models: required key is missing",
            "probes[0].name: required key is missing",
            "probes[0].api: Input should be 'generate', 'chat' or 'openai'",
        )

    def test_no_targets_at_all(self) -> None:
        """No file and no variables is the single 'at least one target' problem."""
        assert problems_of(None, {}) == ("targets: at least one target is required",)

    def test_given_environ_ignores_process_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With an explicit mapping, os.environ is read neither for variables nor {env:}."""
        monkeypatch.setenv("OLLAMA_PROBE_TARGETZ", "1")
        monkeypatch.setenv("PROBE_TEST_API_KEY", "from-process")
        expected = (
            "targets[0].headers.X-Api-Key: environment variable PROBE_TEST_API_KEY is not set"
        )
        assert problems_of(FULL, {}) == (expected,)

    def test_default_environ_is_process_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without a mapping, os.environ supplies both variables and {env:} headers."""
        monkeypatch.setenv("OLLAMA_PROBE_TARGETS__0__CONCURRENCY", "3")
        monkeypatch.setenv("PROBE_TEST_API_KEY", "from-process")
        target = load_settings(FULL).targets[0]
        assert (target.concurrency, target.header_values()["X-Api-Key"]) == (3, "from-process")


class TestSources:
    def test_outside_a_load_only_the_data(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Settings built directly validate the given data: no OLLAMA_PROBE_* variable is read."""
        monkeypatch.setenv("OLLAMA_PROBE_TARGETS", env()["OLLAMA_PROBE_TARGETS"])
        settings = Settings.model_validate({"targets": [{"url": "http://a", "models": ["m"]}]})
        assert [t.name for t in settings.targets] == ["a:80"]
        with pytest.raises(ValidationError, match="at least one target is required"):
            Settings()

    def test_build_settings(self, tmp_path: Path) -> None:
        """build_settings reads {env:} from the given mapping and {file:} beside base_dir."""
        (tmp_path / "token").write_text("from-file\n")
        headers = {"A": {"env": "TOKEN"}, "B": {"file": "token"}}
        data = {"targets": [{"url": "http://h", "models": ["m"], "headers": headers}]}
        settings = build_settings(data, environ={"TOKEN": "from-env"}, base_dir=tmp_path)
        assert settings.targets[0].header_values() == {"A": "from-env", "B": "from-file"}

    def test_build_settings_problems(self) -> None:
        """build_settings reports with the same lines as a file, and reads no variables."""
        with pytest.raises(ConfigError) as caught:
            build_settings({"targetz": []}, environ=env())
        assert caught.value.problems == (
            "targets: at least one target is required",
            "targetz: unknown key; known: targets, probes",
        )


class TestSecrets:
    SECRET = "Bearer do-not-print-me"
    AUTH = "OLLAMA_PROBE_TARGETS__0__HEADERS__AUTHORIZATION"

    def test_never_printed(self) -> None:
        """Header values appear in header_values() only: not in repr, dumps or describe()."""
        settings = load_settings(None, env(TOKEN=self.SECRET, **{self.AUTH: '{"env": "TOKEN"}'}))
        shown = [repr(settings), str(settings), settings.model_dump_json(), describe(settings),
                 repr(settings.jobs())]  # fmt: skip
        assert [self.SECRET in text for text in shown] == [False] * len(shown)
        assert settings.targets[0].header_values()["authorization"] == self.SECRET
        assert "headers: authorization (values hidden)" in describe(settings)

    def test_not_in_debug_logs(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """PYDANTIC_SETTINGS_DEBUG does not make pydantic-settings log the sources' raw data."""
        monkeypatch.setenv("PYDANTIC_SETTINGS_DEBUG", "1")
        caplog.set_level(logging.DEBUG)
        targets = [{"url": "http://h", "models": ["m"], "headers": {"A": self.SECRET}}]
        load_settings(None, env(targets))
        assert self.SECRET not in caplog.text

    def test_not_in_errors(self) -> None:
        """A config error never shows a secret, nor chains the raw ValidationError."""
        environ = env(TOKEN=f"{self.SECRET}\nX-Evil: 1", **{self.AUTH: '{"env": "TOKEN"}'},
                      OLLAMA_PROBE_TARGETS__0__HEADERS__X_OTHER="do-not-print-me-either",
                      OLLAMA_PROBE_TARGETS__0__CONCURRENCY="0")  # fmt: skip
        with pytest.raises(ConfigError) as caught:
            load_settings(None, environ)
        err = caught.value
        assert err.problems == (
            "targets[0].headers.authorization: header value must not contain a line break",
            "targets[0].concurrency: Input should be greater than or equal to 1",
        )
        assert "do-not-print-me" not in str(err)
        assert (err.__cause__, err.__suppress_context__) == (None, True)

    @pytest.mark.parametrize("form", ["inline", "env", "file"])
    @pytest.mark.parametrize(
        ("before", "after"),
        [("", ""), ("", " "), ("", "\t"), (" ", ""), ("\ufeff", ""), ("", "\x01x"), ("", "é"),
         ("", "\nX-Evil: 1")],
    )  # fmt: skip
    def test_canary_never_shown(self, tmp_path: Path, form: str, before: str, after: str) -> None:
        """No ConfigError and no describe() shows a header value, good or bad, from any form."""
        value = f"{before}Bearer canary-7f3a9c{after}"
        (tmp_path / "token").write_text(f"{value}\n", encoding="utf-8")
        header = {"inline": value, "env": {"env": "TOKEN"}, "file": {"file": "token"}}[form]
        targets = [{"url": "http://h", "models": ["m"], "headers": {"Authorization": header}}]
        config = tmp_path / "config.yml"
        config.write_text(json.dumps({"targets": targets}))  # JSON is YAML
        try:
            shown = describe(load_settings(config, {"TOKEN": value}))
        except ConfigError as err:
            shown = f"{err}\n{err!r}"
            assert shown.startswith(f"{AUTH} ")
        else:
            assert (before, after) == ("", "")
        assert "canary" not in shown

    def test_file_secret_trailing_newline(self, tmp_path: Path) -> None:
        """A {file:} header value is the file's content without its trailing newline."""
        (tmp_path / "token").write_text("abc\n\n")
        headers = {"X-Key": {"file": str(tmp_path / "token")}}
        settings = load_settings(
            None, env([{"url": "http://h", "models": ["m"], "headers": headers}])
        )
        assert settings.targets[0].header_values() == {"X-Key": "abc"}


class TestWarnings:
    def test_notes(self) -> None:
        """Load-time options, max_tokens < 2 and TLS oddities are flagged."""
        tls = {"insecure_skip_verify": True}
        targets = [{"url": "https://h", "models": ["m"], "tls": tls},
                   {"url": "http://h", "models": ["m"], "tls": tls}]  # fmt: skip
        options = {"num_ctx": 4096, "use_mmap": False, "temperature": 0}
        probes: list[dict[str, Any]] = [
            {"name": "ok", "interval": "5m", "timeout": "1m"},
            {"name": "bad", "interval": "10s", "timeout": "20s", "stall_timeout": "5s",
             "max_tokens": 1, "options": options},
        ]  # fmt: skip
        assert load_settings(None, env(targets, probes)).warnings() == [
            "targets[0].tls.insecure_skip_verify: TLS certificates are not verified",
            "targets[1].tls: ignored, the url is plain http://",
            f"probes[1].options.num_ctx: {RELOAD}",
            f"probes[1].options.use_mmap: {RELOAD}",
            "probes[1].max_tokens: 1 gives no tokens/s "
            "(timing the decode takes at least two tokens)",
        ]

    def test_workload_notes(self) -> None:
        """A prompt that overflows the context, a keep_alive that costs every user, and what
        /v1/chat/completions cannot carry are flagged; a context that fits is quiet."""
        probes: list[dict[str, Any]] = [
            {"name": "fits", "prompt_tokens": 4000, "max_tokens": 96},
            {"name": "long", "prompt_tokens": 4000, "max_tokens": 97},
            {"name": "ctx", "prompt_tokens": 8000, "options": {"num_ctx": 8192}},
            {"name": "unload", "keep_alive": 0},
            {"name": "forever", "keep_alive": "-1m"},
            {"name": "v1", "api": "openai", "think": True, "when": "if_loaded",
             "prompt_tokens": 9000, "options": {"temperature": 0, "num_ctx": 2048}},
        ]  # fmt: skip
        notes = load_settings(None, env(None, probes)).warnings()
        overflow = (
            "probes[1].prompt_tokens: 4000 prompt tokens + max_tokens 97 exceed the 4096 tokens "
            "of Ollama's default context: Ollama truncates the prompt, and prefill is measured "
            "on less. Set options.num_ctx to at least 4097 (a load-time option: the model is "
            "reloaded with it, for every user of that server) or raise OLLAMA_CONTEXT_LENGTH "
            "on the server"
        )
        assert notes == [
            overflow,
            f"probes[2].options.num_ctx: {RELOAD}",
            "probes[3].keep_alive: 0 unloads the model after every probe, for every user of "
            "that server (the next request, probe or not, loads it again)",
            "probes[4].keep_alive: negative keeps the model loaded for ever, for every user of "
            "that server",
            "probes[5].options.num_ctx: not sent with api: openai "
            "(/v1/chat/completions has no such field)",
            "probes[5].think: true is not sent with api: openai (it only takes false, low, "
            "medium or high, as reasoning_effort)",
            "probes[5].when: if_loaded asks Ollama's /api/ps, which other OpenAI-compatible "
            "servers do not have (every run then fails)",
        ]

    def test_quiet_config(self) -> None:
        """The default profile (timeout 300s > interval 60s only skips overlapping runs) is quiet."""
        probes = [{"name": "p"}]
        assert load_settings(None, env(None, probes)).warnings() == []


class TestJobs:
    def test_order_and_count(self) -> None:
        """jobs() is every target x model x profile, targets outermost, in config order."""
        targets = [{"name": "a", "url": "http://a", "models": ["m1", "m2"]},
                   {"name": "b", "url": "http://b", "models": ["m3"]}]  # fmt: skip
        jobs = load_settings(None, env(targets, [{"name": "p"}, {"name": "q"}])).jobs()
        pairs = [("a", "m1"), ("a", "m2"), ("b", "m3")]
        assert [job.key for job in jobs] == [JobKey(t, m, p) for t, m in pairs for p in "pq"]
        assert [(j.target.name, j.model, j.profile.name) for j in jobs] == [
            (j.key.target, j.key.model, j.key.probe) for j in jobs]  # fmt: skip

    def test_shape_follows_the_profile(self) -> None:
        """A job's key carries what its profile decides about its series."""
        probes: list[dict[str, Any]] = [{"name": "p"}, {"name": "q", "api": "openai", "stream": False, "parallel": 4,
                                  "when": "if_loaded"}]  # fmt: skip
        plain, shaped = (job.key.shape for job in load_settings(None, env(None, probes)).jobs())
        assert plain == JobShape()
        assert shaped == JobShape(parallel=4, streamed=False, server_timings=False, skippable=True)

    def test_jobs_are_hashable(self) -> None:
        """JobSpecs hold dict-bearing models yet hash, and equal configs give equal jobs."""
        first, second = load_settings(None, env()).jobs(), load_settings(None, env()).jobs()
        assert len({*first, *second}) == 1


class TestDescribe:
    def test_summary(self) -> None:
        """describe() lists targets, profiles and the job count, proxy credentials hidden."""
        targets = [{"name": "a", "url": "http://a:1", "models": ["m1", "m2"], "concurrency": 2,
                    "proxy": "http://user:pw@proxy:3128"}]  # fmt: skip
        probes = [{"name": "p", "interval": "90s", "timeout": "1m", "stall_timeout": "500ms",
                   "max_tokens": 16, "think": "low", "options": {}},
                  {"name": "q", "api": "chat", "stream": False, "prompt_tokens": 1000,
                   "parallel": 4, "keep_alive": "10m", "when": "if_loaded",
                   "options": {"seed": 1}}]  # fmt: skip
        settings = load_settings(None, env(targets, probes))
        assert describe(settings) == (
            "targets (1):\n"
            "  a: http://a:1 concurrency=2\n"
            "    models: m1, m2\n"
            "    proxy: http://***@proxy:3128\n"
            "probe profiles (2):\n"
            "  p: api=generate stream=true interval=90s timeout=1m stall_timeout=500ms"
            ' max_tokens=16 think="low"\n'
            "    parallel=1 when=always\n"
            "  q: api=chat stream=false interval=1m timeout=5m stall_timeout=30s"
            " max_tokens=64 think=null\n"
            '    prompt_tokens=1000 parallel=4 when=if_loaded keep_alive="10m"\n'
            '    options: {"seed": 1}\n'
            "jobs: 4 (targets x models x profiles)"
        )
        assert "pw" not in repr(settings)
