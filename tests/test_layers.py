"""The import contracts of pyproject.toml ([tool.importlinter]) hold: `lint-imports` passes.

The imports of app, consumer and the operator flow one way: the API and the relays above the stores, the stores
above the event and the order's contract; no cycles; the two relays independent; the consumer
never reaches the command side.  No store involved.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")   # the venv's, beside its python
    out = subprocess.run([str(lint_imports), "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
