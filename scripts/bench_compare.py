"""Before and after, side by side: a Markdown table of two or more `scripts/bench` results (deployed form).

    python -m scripts.bench_compare NAME=.local/bench/before/latest.json NAME=.local/bench/after/latest.json

Rows: the ratios and freshness of the deployed instance, then its CPU seconds per 1000 orders by row
(total at the bench's rate, and the orders' own: less each row's CPU at rest), the rows any run measured
above 0.05 s, most costly first in the first run; the last column is the last run over the first.
"""
from __future__ import annotations

import json
from pathlib import Path

import click


def _fmt(v: float | None, digits: int = 2) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def table(runs: dict[str, dict]) -> str:
    names = list(runs)
    dep = {n: r["deployed"] for n, r in runs.items()}
    rows: list[tuple[str, list[float | None]]] = [
        ("command_ratio (ours / floor)", [d["command_ratio"] for d in dep.values()]),
        ("ours, orders/s", [d["command"][str(d["ratios_at_concurrency"])]["ours"]["orders_per_s"]["median"]
                            for d in dep.values()]),
        ("freshness p50, ms", [d["freshness_ms"]["p50"]["median"] for d in dep.values()]),
        ("freshness p99, ms", [d["freshness_ms"]["p99"]["median"] for d in dep.values()]),
        ("freshness_p99_ratio", [d["freshness_p99_ratio"] for d in dep.values()]),
        ("the raw baseline's freshness p99, ms",
         [((r.get("freshness_baseline_ms") or {}).get("p99") or {}).get("median") for r in runs.values()]),
        ("created -> acknowledged by Kafka p50, ms", [d["published_ms"]["p50"]["median"] for d in dep.values()]),
        ("projection_ratio (host consumer)", [r["projection_ratio"] for r in runs.values()]),
        ("CPU s / 1000 orders, all rows", [d["cpu_s_per_1000_orders_total"] for d in dep.values()]),
        ("CPU s / 1000 orders, the orders' own", [d.get("cpu_s_per_1000_orders_marginal_total") for d in dep.values()]),
    ]
    first = dep[names[0]]["cpu_s_per_1000_orders"]
    seen = list(first) + [k for d in dep.values() for k in d["cpu_s_per_1000_orders"] if k not in first]
    for row in dict.fromkeys(seen):
        values = [d["cpu_s_per_1000_orders"].get(row) for d in dep.values()]
        if max(v or 0 for v in values) >= 0.05:
            rows.append((f"CPU {row}", values))
    for part in ("command", "projection"):   # the floors at the same rate (runs since they were measured)
        floors = [(d.get("floors") or {}).get(part) or {} for d in dep.values()]
        tables = [f.get("cpu_s_per_1000_orders") or {} for f in floors]
        for row in dict.fromkeys(k for t in tables for k in t):
            rows.append((f"floor of the {part}: CPU {row}", [t.get(row) for t in tables]))
    out = ["| figure | " + " | ".join(names) + " | last / first |", "|---" * (len(names) + 2) + "|"]
    for label, values in rows:
        change = (f"{values[-1] / values[0]:.2f}" if values[0] and values[-1] is not None else "")
        out.append(f"| {label} | " + " | ".join(_fmt(v, 1 if "ms" in label or "orders/s" in label else 2)
                                                 for v in values) + f" | {change} |")
    return "\n".join(out)


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, help=__doc__)
@click.argument("runs", nargs=-1, required=True)
def main(runs: tuple[str, ...]) -> None:
    loaded = {}
    for arg in runs:
        name, _, path = arg.rpartition("=")
        loaded[name or Path(path).parent.name] = json.loads(Path(path).read_text())
    click.echo(table(loaded))


if __name__ == "__main__":
    main()
