"""Dockerfile, read offline: starts the function exactly as the Procfile's web: line does, as
non-root, from the lock file, in two stages. tests/deploy/test_container.py builds and runs it."""

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


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each FROM ... stage, in order."""
    result: list[list[tuple[str, str]]] = []
    for name, arguments in instructions():
        if name == "FROM":
            result.append([])
        result[-1].append((name, arguments))
    return result


def test_both_stages_are_python_311_slim():
    bases = [arguments.split(" ")[0] for arguments in arguments_of("FROM")]
    assert bases == ["python:3.11-slim", "python:3.11-slim"]


def test_the_build_stage_installs_exactly_the_lock_with_hashes_and_no_cache():
    build, final = stages()
    runs = " ".join(arguments for name, arguments in build if name == "RUN")
    assert "--require-hashes" in runs and "-r /tmp/requirements-lock.txt" in runs
    assert "requirements.txt" not in runs.replace("requirements-lock.txt", "")
    assert "PIP_NO_CACHE_DIR=1" in " ".join(arguments for name, arguments in build if name == "ENV")
    assert "--only-binary :all:" in runs  # wheels only: no compiler involved


def test_the_final_stage_takes_only_the_environment_from_the_build_and_keeps_no_pip():
    build, final = stages()
    copies_from_build = [arguments for name, arguments in final if name == "COPY" and arguments.startswith("--from=")]
    assert copies_from_build == ["--from=build /opt/venv /opt/venv"]
    assert "pip uninstall" in " ".join(arguments for name, arguments in build if name == "RUN")
    final_runs = " ".join(arguments for name, arguments in final if name == "RUN")
    assert "pip install" not in final_runs and "pip uninstall" in final_runs
    assert "python -m compileall" in final_runs
    assert "PYTHONUNBUFFERED=1" in " ".join(arguments for name, arguments in final if name == "ENV")


def test_the_image_copies_the_function_its_migrations_and_the_procfile():
    sources = {arguments.split()[0] for arguments in arguments_of("COPY")}
    assert {"requirements-lock.txt", "Procfile", "function/", "postgres/migrations/"} <= sources


def test_dockerignore_lets_in_everything_the_dockerfile_copies():
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"  # an allow-list: nothing else reaches the build
    for arguments in arguments_of("COPY"):
        if not arguments.startswith("--from="):
            assert f"!{arguments.split()[0]}" in lines
