"""Copy the contracts the plain manifests hold (k8s/) into the operator chart, which ships them.

k8s/ is their one source: `kubectl apply -k k8s/` reads them there, and a chart must hold real files
(no symlinks: they break on checkouts without symlink support and in tools that refuse links).
tests/test_charts.py fails when a copy differs from its source; then run:

    .venv/bin/python -m scripts.sync_charts
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "simplecqrs-operator"
# source in k8s/ -> its copy in the chart
COPIES = {
    ROOT / "k8s" / "crd" / "orderservice.yaml": CHART / "crds" / "orderservice.yaml",
    ROOT / "k8s" / "operator" / "rbac.yaml": CHART / "files" / "rbac.yaml",
    ROOT / "k8s" / "operator" / "rbac-namespaced.yaml": CHART / "files" / "rbac-namespaced.yaml",
    ROOT / "k8s" / "operator" / "rbac-tenants.yaml": CHART / "files" / "rbac-tenants.yaml",
}


def stale() -> list[Path]:
    """The copies that are missing, links, or differ from their source."""
    return [dst for src, dst in COPIES.items()
            if dst.is_symlink() or not dst.is_file() or dst.read_bytes() != src.read_bytes()]


def main() -> int:
    for src, dst in COPIES.items():
        if dst in stale():
            dst.unlink(missing_ok=True)
            shutil.copyfile(src, dst)
            print(f"{dst.relative_to(ROOT)} <- {src.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
