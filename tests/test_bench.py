"""`scripts/bench --quick --infra-only` runs end to end and writes well-formed JSON with every figure
(the deployed form, the default, runs against an instance's pods in tests/test_cluster.py).

No timing threshold here: the figures are measured, never asserted (README, "Performance")."""
from __future__ import annotations

import json
import math
import subprocess

import pytest

from scripts.stack import paths

pytestmark = pytest.mark.slow


def test_bench_quick_writes_every_figure(stack, tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run([str(paths.ROOT / "scripts" / "bench"), "--quick", "--infra-only", "--out", str(out)],
                         capture_output=True, text=True, timeout=600, cwd=paths.ROOT)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads(out.read_text())
    def positive(x) -> bool:
        return isinstance(x, float) and math.isfinite(x) and x > 0

    for key in ("command_ratio", "db_ratio", "projection_ratio", "freshness_p99_ratio", "vs_naive_ratio"):
        assert positive(result[key]), key
    assert set(result["relays"]) == {"binlog", "poll"}, "both outbox relays measured in one run"
    for relay, r in result["relays"].items():
        for key in ("command_ratio", "db_ratio", "vs_naive_ratio", "freshness_p99_ratio", "freshness_p50_ratio"):
            assert positive(r[key]), (relay, key)
        assert r["write_store_per_order"]["Innodb_rows_inserted"] >= 3, (relay, "outbox, customer and order rows")
        assert r["write_store_per_order"]["binlog_bytes"] > 0, relay
        assert r["cpu_s_per_1000_orders"]["relay"] > 0 and r["cpu_s_per_1000_orders"]["api"] > 0, relay
        # Created -> acknowledged by Kafka, off the relay's histogram: a part of created -> projected.
        published, fresh = r["published_ms"]["p50"]["median"], r["freshness_ms"]["p50"]["median"]
        assert positive(published) and published <= fresh, (relay, r["published_ms"], r["freshness_ms"])
    # The binlog relay marks no row; the poller marks each event published.
    assert result["relays"]["binlog"]["write_store_per_order"]["Innodb_rows_updated"] < \
        result["relays"]["poll"]["write_store_per_order"]["Innodb_rows_updated"]
    # The outbox row kept and pruned later against inserted and deleted in its transaction: each
    # deletes its row once per order, the prune counted in.
    cost = result["outbox_row_cost"]
    assert set(cost) == {"keep", "insert_delete"}
    for variant, c in cost.items():
        assert c["Innodb_rows_inserted"] >= 3 and c["Innodb_rows_deleted"] >= 1, (variant, c)
        assert c["Innodb_os_log_written"] > 0 and c["binlog_bytes"] > 0 and c["orders_per_s_one_connection"] > 0
    assert set(result["scaling"]["events_per_s"]) == {"1", "2"}
    assert all(v["median"] > 0 for v in result["scaling"]["events_per_s"].values())
    assert out.with_suffix(".png").stat().st_size > 1000
    assert "command_ratio" in out.with_suffix(".txt").read_text()


def test_bench_compare_tables_two_runs_side_by_side():
    """scripts/bench_compare: the deployed form's figures and CPU rows, first and last run with their ratio."""
    from scripts.bench_compare import table

    def run(api: float, kafka: float) -> dict:
        spread = lambda v: {"median": v}  # noqa: E731
        return {"projection_ratio": 0.9, "deployed": {
            "command_ratio": 0.5, "ratios_at_concurrency": 8, "command": {"8": {"ours": {"orders_per_s": spread(400.0)}}},
            "freshness_ms": {"p50": spread(50.0), "p99": spread(150.0)}, "freshness_p99_ratio": 3.5,
            "published_ms": {"p50": spread(20.0)}, "cpu_s_per_1000_orders_total": api + kafka,
            "cpu_s_per_1000_orders_marginal_total": api + kafka - 1,
            "cpu_s_per_1000_orders": {"pod:api": api, "pod:kafka/kafka": kafka, "host:quiet": 0.01}}}

    after = run(1.0, 3.0)
    after["freshness_baseline_ms"] = {"p99": {"median": 100.0}}
    after["deployed"]["floors"] = {"command": {"cpu_s_per_1000_orders": {"host:bench-floor": 0.8}}}
    lines = table({"before": run(2.0, 3.0), "after": after}).splitlines()
    assert lines[0] == "| figure | before | after | last / first |"
    assert "| the raw baseline's freshness p99, ms |  | 100.0 |  |" in lines, "a run before the row existed: blank"
    assert "| floor of the command: CPU host:bench-floor |  | 0.80 |  |" in lines
    assert "| CPU pod:api | 2.00 | 1.00 | 0.50 |" in lines
    assert "| CPU s / 1000 orders, all rows | 5.00 | 4.00 | 0.80 |" in lines
    assert not any("host:quiet" in line for line in lines), "rows under 0.05 s left out"
