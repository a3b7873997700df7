"""The README and the minikube guide agree with each other and with the tools they call:
the same waits and event attributes, no `export HOST` (functions-framework binds to it),
and every `python -m demo` line parses with the demo's own options."""

from __future__ import annotations

import re
import shlex

from demo.__main__ import _parser as demo_parser
from devserver.copies import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()
GUIDE = (PROJECT_ROOT / "docs" / "deploy-minikube.md").read_text()
DEMO_DOC = (PROJECT_ROOT / "docs" / "demo-and-bench.md").read_text()


def minikube_block() -> str:
    section = README.split("## Deploy to minikube", 1)[1]
    return section.split("```bash", 1)[1].split("```", 1)[0]


def demo_commands(text: str) -> list[list[str]]:
    joined = re.sub(r"\\\n\s*", " ", text)
    commands = []
    for line in joined.splitlines():
        if "python -m demo" in line:
            words = shlex.split(line.split("python -m demo", 1)[1].split("#", 1)[0])
            commands.append([w for w in words if not w.startswith("$(")])
    return commands


def test_the_readme_waits_for_what_the_guide_waits_for() -> None:
    for wait in ("-n kourier-system --for=condition=Available", "broker/default trigger/orders-create"):
        assert wait in GUIDE
        assert wait in minikube_block()


def test_the_readme_event_carries_an_idempotency_key_like_the_guide() -> None:
    assert "ce-idempotencykey:" in GUIDE
    assert "ce-idempotencykey:" in minikube_block()


def test_no_document_exports_host_which_make_run_would_then_bind_to() -> None:
    for text in (README, GUIDE, DEMO_DOC):
        assert not re.search(r"export (\w+=\S+ )*HOST=", text)


def test_every_demo_command_in_the_docs_parses_and_plots_outside_the_repository_root() -> None:
    commands = demo_commands(README) + demo_commands(GUIDE) + demo_commands(DEMO_DOC)
    assert len(commands) >= 5
    for words in commands:
        options = demo_parser().parse_args(words)
        if options.plot is not None:
            assert options.plot.parent != PROJECT_ROOT and str(options.plot.parent) not in ("", ".")
