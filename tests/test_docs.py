"""The docs state facts the code must keep true: every setting the function reads is in
the README's configuration table and every variable there is read; every metric the README,
operations and design pages name is exported; every link between the pages lands on a file and a heading that exist;
every `python -m demo` line parses with the demo's own options. Texts are checked against
the code, never one copy of a text against another."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from prometheus_client import REGISTRY

import function.metrics  # noqa: F401  (registers the function's metrics)
from demo.__main__ import _parser as demo_parser
from devserver.copies import PROJECT_ROOT
from function.settings import REQUIRED, declarations

README = PROJECT_ROOT / "README.md"
PAGES = sorted((PROJECT_ROOT / "docs").glob("*.md"))
DOCS = [README, *PAGES]

# Read by functions-framework, gunicorn, prometheus-client or the OpenTelemetry SDK, not
# by function/settings.py, yet documented in the table because they change the function.
READ_BY_LIBRARIES = {"PORT", "PROMETHEUS_MULTIPROC_DIR", "OTEL_EXPORTER_OTLP_ENDPOINT",
                     "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED", "WORKERS"}


def configuration_rows() -> dict[str, str]:
    """Each variable the README's configuration table names -> its row's default cell."""
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for row in section.splitlines():
        if row.startswith("| `"):
            cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
            rows.update(dict.fromkeys(re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]), cells[-1]))
    return rows


def configuration_table() -> set[str]:
    return set(configuration_rows())


def variables_read_by_settings() -> set[str]:
    """The declared settings' variables, and those a reader of its own takes (JWT_*, OTEL_*)."""
    source = (PROJECT_ROOT / "function" / "settings.py").read_text()
    read_directly = set(re.findall(r"""env(?:\.get\(|\[|, )\s*"([A-Z][A-Z0-9_]+)\"""", source))
    return {declared.variable for _, declared, _ in declarations()} | read_directly


def as_documented(default: object) -> str:
    """A default as the README's table writes it: true, 5, 0.5, none."""
    if default is None or default == ():
        return "none"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def exported_metric_names() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        # a family with labels has no sample until a child exists: name them by type
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
    return names


def heading_anchors(text: str) -> set[str]:
    """GitHub's rule: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", text, flags=re.S), flags=re.M):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return anchors


def test_every_setting_the_function_reads_is_in_the_readme_table_and_every_row_is_read() -> None:
    documented, read = configuration_table(), variables_read_by_settings()
    assert read - documented == set(), "settings.py reads variables the README table leaves out"
    assert documented - read - READ_BY_LIBRARIES == set(), "the README table names variables nothing reads"


def test_the_readme_table_gives_every_declared_default() -> None:
    rows = configuration_rows()
    for name, declared, default in declarations():
        cell = rows[declared.variable]
        if default is REQUIRED:
            assert cell.startswith("required"), f"{declared.variable} is required, the README says {cell!r}"
        elif declared.read is None or default is None or default == ():
            first = re.split(r"[\s:;(]", cell, maxsplit=1)[0]
            assert first == as_documented(default), f"{declared.variable} ({name}) defaults to {default!r}, the README says {cell!r}"


def schema_object_names() -> set[str]:
    """Indexes, constraints and functions the migrations create (orders_pkey, ...): not metrics."""
    sql = " ".join(path.read_text() for path in (PROJECT_ROOT / "postgres" / "migrations").rglob("*.sql"))
    return set(re.findall(r"\borders_[a-z0-9_]+", sql))


def test_every_metric_the_docs_name_is_exported() -> None:
    exported = exported_metric_names()
    for page in (README, PROJECT_ROOT / "docs" / "operations.md", PROJECT_ROOT / "docs" / "design.md"):
        named = set(re.findall(r"\borders_[a-z_]+[a-z]\b", page.read_text())) - schema_object_names()
        # orders_order_duration_seconds_bucket and the like are samples of a family
        assert named - exported == set(), f"{page.name} names metrics that do not exist"


def test_the_operations_page_lists_every_exported_metric() -> None:
    operations = (PROJECT_ROOT / "docs" / "operations.md").read_text()
    ours = {family.name for family in REGISTRY.collect() if family.name.startswith("orders_")}
    missing = {name for name in ours if name not in operations}
    assert missing == set()


def test_every_relative_link_lands_on_a_file_and_heading_that_exist() -> None:
    for page in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked: Path = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name} links to {target}"
            if anchor:
                assert anchor in heading_anchors(linked.read_text()), f"{page.name} links to {target}"


def test_the_readme_gives_make_test_as_the_test_command() -> None:
    assert "make test" in README.read_text()


def test_no_document_exports_host_which_make_run_would_then_bind_to() -> None:
    for page in DOCS:
        assert not re.search(r"export (\w+=\S+ )*HOST=", page.read_text()), page.name


def demo_commands(text: str) -> list[list[str]]:
    joined = re.sub(r"\\\n\s*", " ", text)
    commands = []
    for line in joined.splitlines():
        if "python -m demo" in line:
            words = shlex.split(line.split("python -m demo", 1)[1].split("#", 1)[0])
            commands.append([w for w in words if not w.startswith("$(")])
    return commands


def test_every_demo_command_in_the_docs_parses_and_plots_outside_the_repository_root() -> None:
    commands = [words for page in DOCS for words in demo_commands(page.read_text())]
    assert len(commands) >= 5
    for words in commands:
        options = demo_parser().parse_args(words)
        if options.plot is not None:
            assert options.plot.parent != PROJECT_ROOT and str(options.plot.parent) not in ("", ".")
