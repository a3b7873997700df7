"""Dockerfile: starts the function exactly as the Procfile's web: line does, as non-root."""

from __future__ import annotations

import json
import shlex

from .manifests import REPO


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def arguments_of(keyword: str) -> list[str]:
    return [arguments for name, arguments in instructions() if name == keyword]


def flags(command: list[str]) -> dict[str, str]:
    return dict(arg[2:].split("=", 1) for arg in command if arg.startswith("--") and "=" in arg)


def test_the_image_cmd_runs_the_procfile_web_process():
    (web,) = [line for line in (REPO / "Procfile").read_text().splitlines()
              if line.startswith("web:")]
    procfile = shlex.split(web.removeprefix("web:"))
    (cmd,) = arguments_of("CMD")
    image = json.loads(cmd)  # exec form: a JSON array, so gunicorn is PID 1
    assert image[0] == procfile[0] == "functions-framework"
    assert flags(image)["source"] == flags(procfile)["source"] == "function/main.py"
    assert flags(image)["target"] == flags(procfile)["target"] == "handle"
    # The same stack too: every flag but the port, which Knative passes as PORT.
    assert [a for a in image[1:] if not a.startswith("--port")] == [a for a in procfile[1:] if not a.startswith("--port")]
    assert "--asgi" in image


def test_the_image_leaves_the_port_to_the_port_variable():
    (cmd,) = arguments_of("CMD")
    assert not [arg for arg in json.loads(cmd) if arg.startswith("--port")]


def test_the_image_runs_as_a_numeric_non_root_user():
    users = arguments_of("USER")
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0  # numeric, so the kubelet can check runAsNonRoot
    names = [name for name, _ in instructions()]
    assert names.index("USER") < names.index("CMD")


def test_the_image_is_python_311_slim():
    (base,) = arguments_of("FROM")
    assert base.split(" ")[0] == "python:3.11-slim"


def test_the_image_installs_requirements_without_a_cache_and_compiles_bytecode():
    runs = " ".join(arguments_of("RUN"))
    assert "pip install --no-cache-dir -r requirements.txt" in runs
    assert "python -m compileall" in runs
    assert "PYTHONUNBUFFERED=1" in " ".join(arguments_of("ENV"))


def test_the_image_copies_the_function_its_migrations_and_the_procfile():
    sources = {arguments.split()[0] for arguments in arguments_of("COPY")}
    assert {"requirements.txt", "Procfile", "function/", "postgres/migrations/"} <= sources


def test_dockerignore_lets_in_everything_the_dockerfile_copies():
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"  # an allow-list: nothing else reaches the build
    for arguments in arguments_of("COPY"):
        assert f"!{arguments.split()[0]}" in lines
