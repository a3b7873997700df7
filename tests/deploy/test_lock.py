"""requirements-lock.txt, what the image installs, agrees with requirements.txt, what the
project asks for: a changed range without `make lock` fails here, offline."""

from __future__ import annotations

import re

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .manifests import REPO


def asked() -> dict[str, Requirement]:
    """requirements.txt's requirements by normalised name."""
    requirements = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            requirement = Requirement(text)
            requirements[str(canonicalize_name(requirement.name))] = requirement
    return requirements


def locked() -> dict[str, tuple[str, list[str], set[str]]]:
    """{name: (version, hashes, what pulled it in)} from the lock."""
    entries: dict[str, tuple[str, list[str], set[str]]] = {}
    text = (REPO / "requirements-lock.txt").read_text()
    for block in re.split(r"\n(?=\S)", text):
        pin = re.match(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)", block)
        if pin is None:
            continue
        via = set(re.findall(r"#\s+(?:via\s+)?(-r requirements\.txt|[A-Za-z0-9._-]+)\s*$", block, re.MULTILINE))
        entries[canonicalize_name(pin[1])] = (pin[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", block), via)
    return entries


def test_every_requirement_is_locked_at_a_version_its_range_allows():
    lock = locked()
    for name, requirement in asked().items():
        assert name in lock, f"{name} is in requirements.txt but not in the lock: run `make lock`"
        version = lock[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"the lock has {name}=={version}, outside requirements.txt's {requirement.specifier}: run `make lock`")


def test_nothing_is_locked_for_a_requirement_that_was_removed():
    named = set(asked())
    for name, (_, _, via) in locked().items():
        if "-r requirements.txt" in via:
            assert name in named, f"the lock keeps {name} for requirements.txt, which no longer asks for it: run `make lock`"


def test_every_locked_package_has_a_hash_so_the_image_can_require_them():
    lock = locked()
    assert len(lock) > len(asked())  # dependencies too, not just the direct requirements
    assert all(hashes for _, hashes, _ in lock.values())


def test_the_lock_says_how_to_remake_it():
    assert "make lock" in (REPO / "requirements-lock.txt").read_text().split("\n", 3)[1]
    assert any(line.startswith("lock:") for line in (REPO / "Makefile").read_text().splitlines())
