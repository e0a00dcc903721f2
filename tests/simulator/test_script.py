"""Tests for exporter.simulator.script: building, validating and loading model scripts."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from exporter.simulator import DEMO_SCRIPTS, Fault, ModelScript, load_scripts, script_to_dict
from exporter.simulator.script import apply_overrides

YAML_SCRIPTS = """
models:
  llama3.2:1b:
    first_token_delay: 0.08
    tokens_per_second: 120
    tokens: 32
  broken:latest:
    fault: truncate
    fault_after: 3
  plain:
"""


class TestModelScript:
    def test_defaults_are_the_documented_ones(self) -> None:
        """The defaults are the documented ones: other tests and the demo build on them."""
        script = ModelScript()
        assert (
            script.first_token_delay,
            script.tokens_per_second,
            script.tokens,
            script.thinking_tokens,
        ) == (0.05, 50.0, 64, 0)
        assert (script.fault, script.eval_duration, script.prompt_eval_count) == (None, None, None)
        assert (script.loaded, script.num_parallel, script.max_queue) == (True, 0, 512)
        assert (script.prompt_tokens_per_second, script.vram_fraction) == (None, 1.0)

    def test_supports_dataclasses_replace(self) -> None:
        """Scripts are immutable values that tests derive variants from with replace()."""
        script = dataclasses.replace(ModelScript(), tokens=3, fault=Fault.STALL)
        assert script.tokens == 3
        assert script.fault == Fault.STALL
        with pytest.raises(dataclasses.FrozenInstanceError):
            script.tokens = 4  # type: ignore[misc]  # asserting that assignment fails

    @pytest.mark.parametrize(
        "changes",
        [
            {"tokens_per_second": 0.0},
            {"first_token_delay": -0.1},
            {"tokens": -1},
            {"vram_fraction": 1.5},
            {"prompt_tokens_per_second": 0},
            {"stall_seconds": float("inf")},
        ],
    )
    def test_rejects_values_no_schedule_can_honour(self, changes: dict[str, float]) -> None:
        """A zero rate or a negative value fails when the script is built, naming the field."""
        with pytest.raises(ValueError, match=next(iter(changes))):
            ModelScript(**changes)  # type: ignore[arg-type]  # values are the point here


class TestLoadScripts:
    def test_loads_the_yaml_shape(self) -> None:
        """Fields from YAML override defaults, fault names become Fault, null means defaults."""
        scripts = load_scripts(yaml.safe_load(YAML_SCRIPTS))
        assert list(scripts) == ["llama3.2:1b", "broken:latest", "plain"]
        assert scripts["llama3.2:1b"].tokens_per_second == 120.0
        assert scripts["llama3.2:1b"].tokens == 32
        assert scripts["broken:latest"].fault == Fault.TRUNCATE
        assert ModelScript() == scripts["plain"]

    def test_unknown_field_names_model_and_field(self) -> None:
        """A typo in a field is an error naming the model and the field."""
        with pytest.raises(ValueError, match=r"model 'm:1b': unknown field 'tokenz'"):
            load_scripts({"models": {"m:1b": {"tokenz": 3}}})

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("tokens", "many"),
            ("tokens", 2.5),
            ("report_counts", "yes"),
            ("fault", "explode"),
            ("first_token_delay", True),
        ],
    )
    def test_wrong_types_are_rejected(self, field: str, value: object) -> None:
        """A value of the wrong type is an error naming the model and the field."""
        with pytest.raises(ValueError, match=rf"model 'm': field '{field}'"):
            load_scripts({"models": {"m": {field: value}}})

    def test_unknown_top_level_key_is_rejected(self) -> None:
        """Only the documented shape is accepted, so a misplaced key is not silently ignored."""
        with pytest.raises(ValueError, match="unknown top-level"):
            load_scripts({"modles": {}})

    def test_integral_floats_are_accepted_as_ints(self) -> None:
        """JSON numbers like 3.0 are fine for integer fields (JSON has one number type)."""
        assert load_scripts({"models": {"m": {"tokens": 3.0}}})["m"].tokens == 3


class TestApplyOverrides:
    def test_merges_over_the_base(self) -> None:
        """Overrides change only the named fields and keep the rest of the base script."""
        base = ModelScript(tokens=7, thinking_tokens=2)
        merged = apply_overrides(base, {"tokens_per_second": 10, "fault": None}, "m")
        assert (merged.tokens, merged.thinking_tokens, merged.tokens_per_second) == (7, 2, 10.0)

    def test_invalid_value_names_the_model(self) -> None:
        """A value the script rejects is reported with the model name."""
        with pytest.raises(ValueError, match=r"^model 'x': field 'tokens_per_second': .* than 0$"):
            apply_overrides(ModelScript(), {"tokens_per_second": 0}, "x")

    def test_one_line_per_problem(self) -> None:
        """Several problems are reported together, one line each, each naming model and field."""
        with pytest.raises(ValueError, match=r"^model ") as info:
            apply_overrides(
                ModelScript(), {"tokens": "x", "fault": "boom", "stall_seconds": -1}, "m"
            )
        lines = str(info.value).splitlines()
        assert len(lines) == 3
        assert all(line.startswith("model 'm': field '") for line in lines)
        assert "one of busy, http_500" in str(info.value)


class TestScriptToDict:
    def test_round_trips_through_load_scripts(self) -> None:
        """The control API's JSON form loads back into the same script."""
        script = ModelScript(fault=Fault.MALFORMED, fault_after=2, eval_duration=0.5)
        data = script_to_dict(script)
        assert data["fault"] == "malformed"
        assert script == load_scripts({"models": {"m": data}})["m"]


class TestDemoScripts:
    def test_demo_models_have_their_documented_character(self) -> None:
        """The demo set has a fast GPU model, a thinking model, a CPU model and a flaky one."""
        assert {"llama3.2:1b", "qwen3:0.6b", "tinyllama:cpu", "flaky:latest"} == set(DEMO_SCRIPTS)
        assert DEMO_SCRIPTS["qwen3:0.6b"].thinking_tokens == 8
        assert DEMO_SCRIPTS["tinyllama:cpu"].first_token_delay >= 0.5
        assert DEMO_SCRIPTS["tinyllama:cpu"].tokens_per_second < 10
        flaky = DEMO_SCRIPTS["flaky:latest"]
        assert (flaky.fault, flaky.fault_after) == (Fault.MID_STREAM_ERROR, 5)
