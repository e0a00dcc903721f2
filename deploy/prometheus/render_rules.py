#!/usr/bin/env python3
"""Render the exporter's Prometheus recording and alerting rules from one set of parameters.

One source, two outputs next to this script:

* ``ollama-probe-exporter.rules.yml``: a plain rules file (``rule_files:``, promtool);
* ``prometheusrule.yaml``: the same groups as a prometheus-operator ``PrometheusRule``.

Usage::

    python deploy/prometheus/render_rules.py              # rewrite both files here
    python deploy/prometheus/render_rules.py --check      # exit 1 if they are out of date
    python deploy/prometheus/render_rules.py --output-dir /tmp/rules \\
        --set ttft_slo_seconds=2.5 --set throughput_drop_ratio=0.6 --floor llama3.2:1b=40

Recording rules follow ``level:metric:operations``. The level is the labels kept, and the
operations name their window (``rate30m``), so changing a window renames the series: the
dashboard queries the default names. Everything here works on Prometheus 2.42 and 3.x.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RULES_FILE = "ollama-probe-exporter.rules.yml"
PROMETHEUS_RULE_FILE = "prometheusrule.yaml"
DEFAULT_RUNBOOK_URL = (
    "https://github.com/ollama-probe-exporter/ollama-probe-exporter/blob/main/docs/alerting.md"
)

JOB = "job, target, model, probe"
"""The labels every per-job rule keeps: one series per (target, model, probe) and scrape job."""
MODEL = "job, target, model"
"""Cold loads are a property of a model on a target, whichever probe saw them."""

COLD_LOAD_LE = "1.0"
"""A probe whose load_duration is above 1 s (outside ``le="1.0"``) is a cold load."""

_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


@dataclass(frozen=True)
class Params:
    """Every tunable of the rules; the defaults are what ships.

    Fields:
        job_regex: regex for the scrape job(s) of the exporter, used by the ``up``/``absent``
            staleness rules only (the probe metrics need no job filter: their names are ours).
        window: range of the rates, means and quantiles (with one probe a minute, 30m holds
            30 probes, so one outlier does not move a p95).
        failure_window: range of the failure ratio.
        baseline_window: how far back the throughput baseline (a median) looks.
        baseline_interval: how often the baseline is re-evaluated (it reads
            ``baseline_window`` of samples per series, so not every evaluation); keep it well
            under the 5 m lookback.
        throughput_drop_ratio: alert when tokens/s falls below this fraction of the baseline.
        throughput_drop_for: how long the drop must last.
        floors: per-model absolute tokens/s floors rendered as recording rules
            (``model:ollama_probe_tokens_per_second:floor``); users may define more elsewhere.
        failure_ratio: alert when the share of failed probes over ``failure_window`` is above.
        failing_for: how long the failure ratio must stay above the threshold.
        ttft_slo_seconds: TTFT p95 above this is a breach; pick a TTFT bucket boundary.
        ttft_for: how long the TTFT p95 must stay above the SLO.
        stale_after: no probe finished for this long is stale; at least 3 x the longest probe
            interval, and more than the longest interval plus its timeout.
        exporter_down_for: how long ``up == 0`` (or no ``up`` at all) lasts before alerting.
        min_probes: the TTFT and cold-load alerts need this many probes in ``window``: a
            p95 or a share of fewer probes is decided by one probe (the cold first probe
            after a start-up). 20 is the least for which one outlier cannot move a p95.
        resident_models: regex of the models that should stay loaded (cold-load alert).
        cold_load_ratio: alert when more than this share of probes over ``window`` was cold.
        cold_load_for: how long the cold-load share must stay above the threshold.
        runbook_url: the alerting docs page; each alert links to its own section.
        group_prefix: prefix of the rule group names.
    """

    job_regex: str = ".*ollama-probe.*"
    window: str = "30m"
    failure_window: str = "10m"
    baseline_window: str = "7d"
    baseline_interval: str = "2m"
    throughput_drop_ratio: float = 0.7
    throughput_drop_for: str = "15m"
    floors: tuple[tuple[str, float], ...] = ()
    failure_ratio: float = 0.2
    failing_for: str = "5m"
    ttft_slo_seconds: float = 5.0
    ttft_for: str = "15m"
    stale_after: str = "15m"
    exporter_down_for: str = "5m"
    min_probes: int = 20
    resident_models: str = ".+"
    cold_load_ratio: float = 0.05
    cold_load_for: str = "5m"
    runbook_url: str = DEFAULT_RUNBOOK_URL
    group_prefix: str = "ollama-probe-exporter"

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            is_duration = field.name.endswith(("window", "interval", "for", "after"))
            if is_duration and not _DURATION.match(value):
                raise ValueError(f"{field.name}: not a Prometheus duration: {value!r}")
        for name in ("throughput_drop_ratio", "failure_ratio", "cold_load_ratio"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name}: must be between 0 and 1")


@dataclass(frozen=True)
class Rule:
    """One rule plus the comment printed above it in the rules file."""

    body: dict[str, Any]
    comment: str = ""


@dataclass(frozen=True)
class Group:
    """A rule group; ``interval`` overrides the global evaluation interval."""

    name: str
    rules: tuple[Rule, ...]
    interval: str | None = None


class Names:
    """The recording rule names for a set of parameters (public: the dashboard uses them)."""

    def __init__(self, p: Params) -> None:
        w, fw = p.window, p.failure_window
        self.runs = f"job_target_model_probe:ollama_probe_runs:rate{fw}"
        self.errors = f"job_target_model_probe:ollama_probe_errors:rate{fw}"
        self.errors_by_reason = f"job_target_model_probe_reason:ollama_probe_errors:rate{fw}"
        self.error_ratio = f"job_target_model_probe:ollama_probe_errors_per_runs:ratio_rate{fw}"
        self.tokens = f"job_target_model_probe:ollama_probe_tokens_per_second:mean_rate{w}"
        self.baseline = (
            f"job_target_model_probe:ollama_probe_tokens_per_second:"
            f"median{p.baseline_window}_mean_rate{w}"
        )
        self.floor = "model:ollama_probe_tokens_per_second:floor"
        self.server_tokens = (
            f"job_target_model_probe:ollama_probe_server_tokens_per_second:ratio_rate{w}"
        )
        self.prompt_tokens = (
            f"job_target_model_probe:ollama_probe_prompt_tokens_per_second:mean_rate{w}"
        )
        self.cold_loads = f"job_target_model:ollama_probe_cold_loads:rate{w}"
        self.cold_ratio = f"job_target_model:ollama_probe_cold_loads_per_probes:ratio_rate{w}"
        self.window = w

    def quantile(self, metric: str, q: int, level: str = "job_target_model_probe") -> str:
        """The name of the recorded ``q``-th percentile of histogram ``metric``."""
        return f"{level}:{metric}:p{q}_rate{self.window}"


QUANTILE_METRICS = (
    "ollama_probe_time_to_first_token_seconds",
    "ollama_probe_time_per_output_token_seconds",
    "ollama_probe_duration_seconds",
)


def _num(value: float) -> str:
    """A float as PromQL and humans write it: 0.7, 5, 2.5, 900."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _percent(value: float) -> str:
    return f"{value * 100:g}%"


def _rate_ratio(numerator: str, denominator: str, by: str, window: str) -> str:
    """Sum each side first, then divide; a zero denominator gives no sample instead of NaN."""
    return (
        f"sum by ({by}) (rate({numerator}[{window}]))\n"
        f"  / (sum by ({by}) (rate({denominator}[{window}])) > 0)"
    )


def _quantile(q: int, metric: str, by: str, window: str) -> str:
    """A quantile per ``by``; ``>= 0`` drops the NaN of a window without observations."""
    return (
        f"histogram_quantile({q / 100:g},\n"
        f"  sum by ({by}, le) (rate({metric}_bucket[{window}])))\n"
        "  >= 0"
    )


def _query_value(expr_fmt: str, labels: Sequence[str], pipe: str) -> str:
    """A Go template fragment that runs ``expr_fmt`` (printf-style, %q per label) in Prometheus."""
    args = " ".join(f"$labels.{name}" for name in labels)
    return (
        f'{{{{ with printf "{expr_fmt}" {args} | query }}}}'
        f"{{{{ . | first | {pipe} }}}}{{{{ end }}}}"
    )


def _job_selector(metric: str) -> str:
    """A PromQL selector string for ``metric`` of the alert's own job, for templates."""
    return f"{metric}{{job=%q,target=%q,model=%q,probe=%q}}"


JOB_LABELS = ("job", "target", "model", "probe")
WHO = "{{ $labels.model }} on {{ $labels.target }} (probe {{ $labels.probe }})"


def _record(name: str, expr: str, comment: str) -> Rule:
    return Rule({"record": name, "expr": expr}, comment)


def recording_rules(p: Params) -> Group:
    """Rates, ratios, means and quantiles per job, for the dashboard and the alerts."""
    n = Names(p)
    fw, w = p.failure_window, p.window
    load = "ollama_probe_load_duration_seconds"
    rules = [
        _record(
            n.runs,
            f"sum by ({JOB}) (rate(ollama_probe_runs_total[{fw}]))",
            "Probes finished per second (success or failure).",
        ),
        _record(
            n.errors,
            f"sum by ({JOB}) (rate(ollama_probe_errors_total[{fw}]))",
            "Failed probes per second, all reasons.",
        ),
        _record(
            n.errors_by_reason,
            f"sum by ({JOB}, reason) (rate(ollama_probe_errors_total[{fw}]))",
            "Failed probes per second by reason (the Errors row, the top reason of an alert).",
        ),
        _record(
            n.error_ratio,
            f"{n.errors}\n  / ({n.runs} > 0)",
            "Share of finished probes that failed (0-1); no sample while no probe finished.",
        ),
        _record(
            n.tokens,
            _rate_ratio(
                "ollama_probe_tokens_per_second_sum", "ollama_probe_tokens_per_second_count", JOB, w
            ),
            "Client decode rate (tokens/s), mean over the window's probes: the headline number.",
        ),
        _record(
            n.server_tokens,
            _rate_ratio(
                "ollama_probe_output_tokens_total", "ollama_probe_server_eval_seconds_total", JOB, w
            ),
            "Server decode rate (tokens/s), token-weighted: sum(eval_count) / sum(eval_duration).",
        ),
        _record(
            n.prompt_tokens,
            _rate_ratio(
                "ollama_probe_prompt_tokens_per_second_sum",
                "ollama_probe_prompt_tokens_per_second_count",
                JOB,
                w,
            ),
            "Prefill rate (prompt tokens/s), mean over the window's probes.",
        ),
    ]
    rules += [
        _record(
            n.quantile(metric, q),
            _quantile(q, metric, JOB, w),
            f"p{q} of {metric} over the window; no sample (not NaN) without probes.",
        )
        for metric in QUANTILE_METRICS
        for q in (50, 95)
    ]
    rules += [
        _record(
            n.quantile(load, q, "job_target_model"),
            _quantile(q, load, MODEL, w),
            f"p{q} of the server-reported load duration per model; no sample without probes.",
        )
        for q in (50, 95)
    ]
    loads = f"sum by ({MODEL}) (rate({load}_count[{w}]))"
    rules += [
        _record(
            n.cold_loads,
            f'{loads}\n  - sum by ({MODEL}) (rate({load}_bucket{{le="{COLD_LOAD_LE}"}}[{w}]))',
            f"Cold loads per second: probes whose load_duration was above {COLD_LOAD_LE} s.",
        ),
        _record(
            n.cold_ratio,
            f"{n.cold_loads}\n  / ({loads} > 0)",
            "Share of successful probes that were cold loads (0-1).",
        ),
    ]
    return Group(f"{p.group_prefix}.recording", tuple(rules))


def baseline_rules(p: Params) -> Group:
    """The 7-day median of the client decode rate: expensive, so evaluated less often."""
    n = Names(p)
    rule = Rule(
        {
            "record": n.baseline,
            "expr": f"quantile_over_time(0.5, {n.tokens}[{p.baseline_window}])",
        },
        "Median of the client decode rate over the baseline window (robust to short dips).",
    )
    return Group(f"{p.group_prefix}.baseline", (rule,), interval=p.baseline_interval)


def floor_rules(p: Params) -> Group | None:
    """Per-model absolute tokens/s floors, if any were given."""
    if not p.floors:
        return None
    rules = tuple(
        Rule(
            {
                "record": Names(p).floor,
                "expr": f"vector({_num(value)})",
                "labels": {"model": model},
            },
            f"Lowest acceptable client tokens/s for {model}.",
        )
        for model, value in p.floors
    )
    return Group(f"{p.group_prefix}.floors", rules)


def _alert(
    name: str,
    expr: str,
    *,
    duration: str,
    severity: str,
    summary: str,
    description: str,
    runbook: str,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"alert": name, "expr": expr}
    if duration not in ("0s", "0m"):
        body["for"] = duration
    body["labels"] = {"severity": severity, **(labels or {})}
    body["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook_url": f"{runbook}#{name.lower()}",
    }
    return body


def _throughput_alerts(p: Params) -> list[Rule]:
    n = Names(p)
    drop = _percent(p.throughput_drop_ratio)
    now = _query_value(_job_selector(n.tokens), JOB_LABELS, "value | humanize")
    baseline = _query_value(_job_selector(n.baseline), JOB_LABELS, "value | humanize")
    floor = _query_value(f"{n.floor}{{model=%q}}", ("model",), "value | humanize")
    return [
        Rule(
            _alert(
                "OllamaProbeThroughputDrop",
                f"{n.tokens}\n  / {n.baseline}\n  < {_num(p.throughput_drop_ratio)}",
                duration=p.throughput_drop_for,
                severity="warning",
                summary=f"{WHO}: tokens/s below {drop} of its {p.baseline_window} median",
                description=(
                    f"Client decode rate over the last {p.window} is {now} tokens/s, "
                    f"{{{{ $value | humanizePercentage }}}} of its {p.baseline_window} median "
                    f"({baseline} tokens/s); below {drop} for {p.throughput_drop_for}."
                ),
                runbook=p.runbook_url,
                labels={"comparison": f"{p.baseline_window}_median"},
            ),
            "Headline alert: a (target, model, probe) decodes slower than its own baseline.",
        ),
        Rule(
            _alert(
                "OllamaProbeThroughputDrop",
                f"{n.tokens}\n  < on (model) group_left ()\n  {n.floor}",
                duration=p.throughput_drop_for,
                severity="warning",
                summary=f"{WHO}: tokens/s below the floor set for the model",
                description=(
                    f"Client decode rate over the last {p.window} is "
                    f"{{{{ $value | humanize }}}} tokens/s, below the floor of {floor} "
                    f"tokens/s set for {{{{ $labels.model }}}} (for {p.throughput_drop_for})."
                ),
                runbook=p.runbook_url,
                labels={"comparison": "floor"},
            ),
            "The same against an absolute per-model floor; silent for models without one.",
        ),
    ]


def _stale_alerts(p: Params) -> list[Rule]:
    up = f'up{{job=~"{p.job_regex}"}}'
    common = {"duration": p.exporter_down_for, "severity": "warning", "runbook": p.runbook_url}
    return [
        Rule(
            _alert(
                "OllamaProbeStale",
                f"time() - ollama_probe_last_run_timestamp_seconds > {_seconds(p.stale_after)}",
                **{**common, "duration": "0s"},
                summary=f"{WHO}: no probe finished for {p.stale_after}",
                description=(
                    "The last probe of this job finished {{ $value | humanizeDuration }} ago "
                    f"(threshold {p.stale_after}); the exporter on {{{{ $labels.instance }}}} "
                    "is up, but its probes of this job do not finish."
                ),
                labels={"cause": "no_recent_probe"},
            ),
            f"A job that has probed before, but not in the last {p.stale_after}.",
        ),
        Rule(
            _alert(
                "OllamaProbeStale",
                "ollama_probe_runs_total == 0",
                **{**common, "duration": p.stale_after},
                summary=f"{WHO}: no probe finished since the exporter started",
                description=(
                    f"The exporter on {{{{ $labels.instance }}}} has not finished a single "
                    f"probe of this job in {p.stale_after}."
                ),
                labels={"cause": "never_probed"},
            ),
            "A job that never finished a probe (so its last-run gauge does not exist yet).",
        ),
        Rule(
            _alert(
                "OllamaProbeStale",
                f"{up} == 0",
                **common,
                summary="ollama-probe-exporter {{ $labels.instance }} is down",
                description=(
                    "Prometheus cannot scrape {{ $labels.instance }} (job {{ $labels.job }}), "
                    "so no probe results arrive."
                ),
                labels={"cause": "exporter_down"},
            ),
            "The exporter is down or unreachable.",
        ),
        Rule(
            _alert(
                "OllamaProbeStale",
                f"absent({up})",
                **common,
                summary="ollama-probe-exporter is not scraped at all",
                description=(
                    f'No scrape target has job=~"{p.job_regex}", so no probe results arrive '
                    "(the exporter left service discovery, or its job has another name)."
                ),
                labels={"cause": "exporter_absent"},
            ),
            "The exporter vanished from service discovery.",
        ),
    ]


def _enough_probes(metric: str, by: str, p: Params) -> str:
    """``and`` only the series whose histogram saw at least ``min_probes`` probes in the window."""
    return (
        f"  and on ({by})\n  sum by ({by}) (increase({metric}_count[{p.window}])) >= {p.min_probes}"
    )


def alert_rules(p: Params) -> Group:
    """The alerts; each links to its runbook section in docs/alerting.md."""
    n = Names(p)
    top_reason = _query_value(
        f"topk(1, {_job_selector(n.errors_by_reason)})", JOB_LABELS, 'label "reason"'
    )
    failing = Rule(
        _alert(
            "OllamaProbeFailing",
            f"{n.error_ratio} > {_num(p.failure_ratio)}",
            duration=p.failing_for,
            severity="critical",
            summary=f"{WHO}: {{{{ $value | humanizePercentage }}}} of probes failing",
            description=(
                f"{{{{ $value | humanizePercentage }}}} of the probes finished in the last "
                f"{p.failure_window} failed (threshold {_percent(p.failure_ratio)}). "
                f"Most frequent reason: {top_reason}."
            ),
            runbook=p.runbook_url,
        ),
        "Too many failed probes; the description names the most frequent reason.",
    )
    ttft = Rule(
        _alert(
            "OllamaProbeTTFTHigh",
            f"{n.quantile(QUANTILE_METRICS[0], 95)} > {_num(p.ttft_slo_seconds)}\n"
            + _enough_probes(QUANTILE_METRICS[0], JOB, p),
            duration=p.ttft_for,
            severity="warning",
            summary=f"{WHO}: TTFT p95 above {_num(p.ttft_slo_seconds)}s",
            description=(
                f"Time to first token p95 over the last {p.window} is "
                "{{ $value | humanizeDuration }}, above the SLO of "
                f"{_num(p.ttft_slo_seconds)}s for {p.ttft_for}."
            ),
            runbook=p.runbook_url,
        ),
        "Time to first token p95 above the SLO.",
    )
    cold = Rule(
        _alert(
            "OllamaModelColdLoads",
            f'{n.cold_ratio}{{model=~"{p.resident_models}"}} > {_num(p.cold_load_ratio)}\n'
            + _enough_probes("ollama_probe_load_duration_seconds", MODEL, p),
            duration=p.cold_load_for,
            severity="warning",
            summary="{{ $labels.model }} on {{ $labels.target }} keeps being loaded from scratch",
            description=(
                f"{{{{ $value | humanizePercentage }}}} of the probes over the last {p.window} "
                f"found {{{{ $labels.model }}}} unloaded (load_duration above {COLD_LOAD_LE} s; "
                f"threshold {_percent(p.cold_load_ratio)})."
            ),
            runbook=p.runbook_url,
        ),
        "A model that should stay resident keeps being evicted and loaded again.",
    )
    rules = [*_throughput_alerts(p), failing, ttft, *_stale_alerts(p), cold]
    return Group(f"{p.group_prefix}.alerts", tuple(rules))


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def _seconds(duration: str) -> str:
    """A Prometheus duration as a number of seconds (for comparisons with time())."""
    total = sum(
        int(number) * _UNITS[unit]
        for number, unit in re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", duration)
    )
    return _num(total)


def groups(p: Params) -> list[Group]:
    """Every rule group for ``p``, in file order."""
    floors = floor_rules(p)
    return [
        recording_rules(p),
        baseline_rules(p),
        *([floors] if floors is not None else []),
        alert_rules(p),
    ]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so PromQL reads as written."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "".join(pad + line if line.strip() else line for line in text.splitlines(True))


def render_groups(p: Params, indent: int = 0) -> str:
    """The ``groups:`` document, with a comment above each rule."""
    out = ["groups:\n"]
    for group in groups(p):
        head: dict[str, Any] = {"name": group.name}
        if group.interval is not None:
            head["interval"] = group.interval
        out.append(_indent(_dump([head]), 2))
        out.append("    rules:\n")
        for rule in group.rules:
            if rule.comment:
                out.append(f"      # {rule.comment}\n")
            out.append(_indent(_dump([rule.body]), 6))
    return _indent("".join(out), indent)


HEADER = (
    "# Generated by deploy/prometheus/render_rules.py: edit the generator or its parameters,\n"
    "# then re-render (see docs/alerting.md). Recording rules are named level:metric:operations.\n"
)


def render_rules_file(p: Params) -> str:
    """The plain rules file (what ``rule_files:`` and promtool read)."""
    return HEADER + render_groups(p)


def render_prometheus_rule(p: Params, name: str = "ollama-probe-exporter") -> str:
    """The same groups as a prometheus-operator ``PrometheusRule``."""
    meta = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/name": "ollama-probe-exporter",
                "app.kubernetes.io/component": "rules",
            },
        },
    }
    return HEADER + _dump(meta) + "spec:\n" + render_groups(p, indent=2)


def outputs(p: Params) -> dict[str, str]:
    """File name → content of everything this script writes."""
    return {RULES_FILE: render_rules_file(p), PROMETHEUS_RULE_FILE: render_prometheus_rule(p)}


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    types = {f.name: f.type for f in dataclasses.fields(Params)}
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in types or key == "floors":
            raise SystemExit(f"--set {item!r}: expected NAME=VALUE with NAME one of Params' fields")
        values[key] = {"float": float, "int": int}.get(str(types[key]), str)(raw)
    return values


def _parse_floor(item: str) -> tuple[str, float]:
    model, sep, raw = item.rpartition("=")
    if not sep or not model:
        raise SystemExit(f"--floor {item!r}: expected MODEL=TOKENS_PER_SECOND")
    return model, float(raw)


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with ``--check``, compare) the rules file and the PrometheusRule."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--output-dir", type=Path, default=HERE)
    parser.add_argument("--check", action="store_true", help="exit 1 if the files differ")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--floor", action="append", default=[], metavar="MODEL=TOKENS_PER_SECOND")
    args = parser.parse_args(argv)
    params = Params(**_parse_set(args.set), floors=tuple(_parse_floor(f) for f in args.floor))
    stale = []
    for file_name, content in outputs(params).items():
        path = args.output_dir / file_name
        if args.check:
            if not path.exists() or path.read_text() != content:
                stale.append(str(path))
        else:
            path.write_text(content)
    if stale:
        print("out of date (run deploy/prometheus/render_rules.py):", *stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
