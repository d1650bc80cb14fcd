"""No literal passwords in what is delivered: the charts, the plain manifests, skaffold.yaml, the Dockerfile."""
from __future__ import annotations

import re

import pytest
from support import APP_CHART, OPERATOR_CHART, ROOT

pytestmark = pytest.mark.timeout(900)


def test_no_literal_passwords_in_delivery_files():
    """Every password value is generated (helm), read from a Secret, or a local git-ignored file."""
    files = [*APP_CHART.rglob("*.yaml"), *OPERATOR_CHART.rglob("*.yaml"), *(ROOT / "k8s" / "dev").rglob("*.yaml"),
             *APP_CHART.rglob("*.tpl"), ROOT / "skaffold.yaml", ROOT / "Dockerfile"]
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if line.strip().startswith("#"):
                continue
            m = re.search(r"(?i)password\w*\s*[:=]\s*(\S+)", line)
            if m:
                assert m.group(1).startswith(("{{", '"{{')), f"{f}:{n}: a literal password? {line.strip()}"
    gitignore = (ROOT / "k8s" / "dev" / "base" / "secrets" / ".gitignore").read_text()
    assert "*.env" in gitignore.splitlines()   # (the folder exists in a clone: the README's printf writes into it)
