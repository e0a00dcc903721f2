"""Tests for exporter.simulator.responses: Ollama body builders, without a server."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from exporter.simulator.responses import (
    Metrics,
    context_json,
    done_body,
    done_metrics,
    full_name,
    rfc3339_nano,
    text_line,
    token_text,
)


class TestRfc3339Nano:
    @pytest.mark.parametrize(
        ("unix_ns", "expected"),
        [
            (1_795_424_401_402_113_877, "2026-11-23T09:00:01.402113877Z"),
            (1_795_424_401_500_000_000, "2026-11-23T09:00:01.5Z"),
            (1_795_424_401_000_000_000, "2026-11-23T09:00:01Z"),
        ],
    )
    def test_formats_like_go(self, unix_ns: int, expected: str) -> None:
        """UTC with up to 9 fractional digits and trailing zeros dropped, like RFC3339Nano."""
        assert expected == rfc3339_nano(unix_ns)
        assert datetime.fromisoformat(expected).utcoffset() is not None


class TestTokenText:
    def test_thinking_words_come_first_then_answer_words(self) -> None:
        """Thinking tokens and answer tokens each start at the beginning of their word list."""
        assert [token_text(i, 2) for i in range(4)] == ["Okay", ",", "Waves", " roll"]


class TestTextLine:
    def test_generate_thinking_line_has_empty_response(self) -> None:
        """A generate thinking chunk carries text in "thinking" and "" in "response"."""
        obj = json.loads(text_line("generate", "m", 0, 1))
        assert list(obj) == ["model", "created_at", "response", "thinking", "done"]
        assert (obj["response"], obj["thinking"], obj["done"]) == ("", "Okay", False)

    def test_lines_are_compact_and_newline_terminated(self) -> None:
        """Each line is compact JSON plus one newline, as Go's encoder writes it."""
        line = text_line("chat", "m", 0, 0)
        assert line.endswith(b"}\n")
        assert b", " not in line
        assert b'"message":{"role":"assistant","content":"Waves"}' in line


class TestDoneBody:
    def test_context_is_spliced_after_done_reason(self) -> None:
        """The pre-encoded context lands between done_reason and the metrics."""
        body = done_body("generate", "m", "stop", {"eval_count": 3}, context=b"[1,2]")
        obj = json.loads(body)
        assert list(obj)[:6] == [
            "model",
            "created_at",
            "response",
            "done",
            "done_reason",
            "context",
        ]
        assert obj["context"] == [1, 2]
        assert obj["eval_count"] == 3

    def test_no_metrics_still_valid_json(self) -> None:
        """With every metric omitted the object is still well formed."""
        obj = json.loads(done_body("chat", "m", "length", {}))
        assert list(obj) == ["model", "created_at", "message", "done", "done_reason"]


class TestDoneMetrics:
    def test_zero_values_are_omitted(self) -> None:
        """Ollama omits zero metrics, so a zero load and prompt time leave no key."""
        metrics = done_metrics(Metrics(123, 0, 0, 0, 5, 100_000_000))
        assert metrics == {"total_duration": 123, "eval_count": 5, "eval_duration": 100_000_000}

    def test_report_counts_false_keeps_only_total_and_load(self) -> None:
        """A stripping proxy leaves the total and load durations only."""
        metrics = done_metrics(Metrics(9, 8, 7, 6, 5, 4), report_counts=False)
        assert metrics == {"total_duration": 9, "load_duration": 8}


class TestContextJson:
    def test_length_and_size(self) -> None:
        """The array has the requested length at roughly 7 bytes per token id."""
        raw = context_json(1000)
        assert len(json.loads(raw)) == 1000
        assert 6000 < len(raw) < 8000


class TestFullName:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("llama3", "llama3:latest"),
            ("llama3.2:1b", "llama3.2:1b"),
            ("hf.co/org/repo", "hf.co/org/repo:latest"),
            ("localhost:5000/m", "localhost:5000/m:latest"),
        ],
    )
    def test_adds_latest_only_when_untagged(self, name: str, expected: str) -> None:
        """A missing tag means :latest; a registry port is not a tag."""
        assert expected == full_name(name)
