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
