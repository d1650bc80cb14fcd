"""The documentation: the charts' values tables are current, every values property is described,
and the links and paths the markdown files name exist.  Pure file checks: no stack needed."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from scripts import chart_docs

ROOT = Path(__file__).resolve().parents[1]
CHARTS = chart_docs.charts()
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *(c / "README.md" for c in CHARTS)]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
PATH = re.compile(r"`((?:charts|k8s|docs|tests|scripts|app|consumer)/[\w./-]+)`")


def prose(text: str) -> str:
    """The text without its fenced code blocks."""
    return re.sub(r"^[ \t]*```.*?^[ \t]*```[^\n]*", "", text, flags=re.S | re.M)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings (a repeated heading gets -1, -2, ...)."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in prose(path.read_text()).splitlines():
        if m := re.match(r"#{1,6}\s+(.*)", line):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            n = counts.get(slug, 0)
            counts[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def test_docs_folder_exists_and_the_charts_are_found():
    assert (ROOT / "docs").is_dir()
    assert {c.name for c in CHARTS} == {"simplecqrs", "simplecqrs-operator"}


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_every_values_property_has_a_description(chart):
    schema, _ = chart_docs.load(chart)
    assert chart_docs.undocumented(schema) == [], f"{chart.name}/values.schema.json: describe these properties"


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_chart_readme_values_table_is_current(chart):
    readme = (chart / "README.md").read_text()
    assert readme.count(chart_docs.BEGIN) == 1 and readme.count(chart_docs.END) == 1, "one values block"
    assert chart_docs.render(readme, chart_docs.table(chart)) == readme, \
        f"charts/{chart.name}/README.md is stale: run `python -m scripts.chart_docs`"


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_the_values_table_has_a_row_per_property_with_its_default(chart):
    schema, values = chart_docs.load(chart)
    table = chart_docs.table(chart)
    for path, node, value in chart_docs.properties(schema, values):
        (row,) = [line for line in table.splitlines() if line.startswith(f"| `{path}` |")]
        if value is not chart_docs.UNSET and "properties" not in node:
            assert json.dumps(value, ensure_ascii=False).replace("|", "\\|") in row, row


def test_check_mode_reports_a_stale_table_and_a_missing_description(tmp_path):
    chart = tmp_path / "demo"
    chart.mkdir()
    schema = {"type": "object", "properties": {
        "replicas": {"type": "integer", "description": "Pods."},
        "image": {"type": "object", "description": "The image.",
                  "properties": {"tag": {"type": "string", "description": "Its tag."}}}}}
    (chart / "values.schema.json").write_text(json.dumps(schema))
    (chart / "values.yaml").write_text("replicas: 2\nimage:\n  tag: dev\n")
    (chart / "README.md").write_text(f"# demo\n\n{chart_docs.BEGIN}\nold\n{chart_docs.END}\nafter\n")
    assert any("stale" in p for p in chart_docs.problems(chart))

    (chart / "README.md").write_text(chart_docs.render((chart / "README.md").read_text(), chart_docs.table(chart)))
    assert chart_docs.problems(chart) == []
    text = (chart / "README.md").read_text()
    assert "| `image.tag` | string | `\"dev\"` | Its tag. |" in text and text.endswith("after\n")

    (chart / "values.yaml").write_text("replicas: 3\nimage:\n  tag: dev\n")
    assert any("stale" in p for p in chart_docs.problems(chart))
    schema["properties"]["image"]["properties"]["tag"].pop("description")
    (chart / "values.schema.json").write_text(json.dumps(schema))
    assert any("image.tag has no description" in p for p in chart_docs.problems(chart))


def test_the_generator_agrees_with_the_repository():
    assert chart_docs.main(["--check"]) == 0


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(doc):
    for target in LINK.findall(prose(doc.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        assert dest.exists(), f"{doc.relative_to(ROOT)} links to {target}, which does not exist"
        if anchor:
            assert dest.suffix == ".md", f"{doc.relative_to(ROOT)}: an anchor into {file}"
            assert anchor in anchors(dest), f"{doc.relative_to(ROOT)} links to {target}: no such heading"


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_repository_paths_exist(doc):
    for path in set(PATH.findall(doc.read_text())):
        if "<" in path or path.endswith(".env"):
            continue
        assert (ROOT / path.rstrip("/")).exists(), f"{doc.relative_to(ROOT)} names {path}, which does not exist"


def test_readme_links_every_docs_file():
    readme = (ROOT / "README.md").read_text()
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{doc.name}" in readme, f"the README does not link docs/{doc.name}"


# The README's delivery sections (moved from the delivery tests: the same timeout as theirs).
@pytest.mark.timeout(900)
def test_delivery_docs_name_existing_files_and_say_what_is_not_verified():
    text = (ROOT / "README.md").read_text()
    for heading in ("## Run it on kind", "## Run it on minikube"):
        assert heading in text, heading
    for path in set(re.findall(r"`((?:charts|k8s|docs|tests|scripts)/[\w./-]+)`", text)):
        if "<" in path or path.endswith(".env"):
            continue
        assert (ROOT / path.rstrip("/")).exists(), f"the README names {path}, which does not exist"
    assert "kubelet" in text, "say plainly what the suite cannot verify here"
