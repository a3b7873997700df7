"""The function's image, built from the repository's Dockerfile with podman, and copies of
it run the way Knative runs them: PORT and K_SERVICE / K_REVISION / K_CONFIGURATION set, a
read-only root filesystem with /tmp as its only writable directory (the Service's
emptyDir) besides /dev/shm, the image's own user, SIGTERM then a grace period to stop.

Shared by the image tests and the bench's container cold start. podman runs with
devserver/containers.conf (through CONTAINERS_CONF, for these commands only). Where no
python:3.11-slim image is present (no registry is reachable here), a stand-in of that name
is made once from Debian's packages with debootstrap and stays in podman's image store.
The build reads a wheelhouse downloaded on the host with the lock file's hashes, so it
needs no index and no trust store inside the build.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from .copies import PROJECT_ROOT, FunctionCopy
from .servers import free_port

BASE_IMAGE = "python:3.11-slim"
IMAGE = "localhost/orders:test"
INSTALL = "apt-get install podman runc debootstrap"
CONTAINERS_CONF = Path(__file__).resolve().parent / "containers.conf"
LOCK = PROJECT_ROOT / "requirements-lock.txt"
CACHE = PROJECT_ROOT / ".local" / "image"  # out of `git status`, kept between runs
# What Knative sets in every revision's container (besides PORT).
KNATIVE_ENV = {"K_SERVICE": "orders", "K_CONFIGURATION": "orders", "K_REVISION": "orders-00001"}
GRACE_SECONDS = 30.0  # knative/service.yaml's timeoutSeconds, also the pod's grace period
BUILD_TIMEOUT_SECONDS = 900.0
# The stand-in: Debian 12's Python 3.11 with what the Dockerfile uses (venv, useradd).
DEBOOTSTRAP_PACKAGES = "python3,python3-venv,passwd,ca-certificates"
PATH_IN_IMAGE = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def missing_tools() -> list[str]:
    """What is needed and not installed: podman with runc, and debootstrap while the base
    image has to be made here."""
    missing = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
    if not missing and not base_image_present():
        if _debootstrap() is None:
            missing.append("debootstrap")
        elif os.geteuid() != 0:
            missing.append("root for debootstrap (or a local python:3.11-slim image)")
    return missing


def _debootstrap() -> str | None:
    return shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")


def podman(*args: str, timeout: float = 120.0, check: bool = True) -> str:
    """One podman command with our containers.conf; its output, or an error that shows it."""
    done = subprocess.run(["podman", *args], env=_podman_env(), capture_output=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:2])} failed ({done.returncode}): "
                           f"{done.stderr.decode(errors='replace')[-2000:]}")
    return done.stdout.decode(errors="replace")


def _podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def base_image_present() -> bool:
    if shutil.which("podman") is None:
        return False
    return subprocess.run(["podman", "image", "exists", BASE_IMAGE], env=_podman_env()).returncode == 0


def ensure_base_image() -> str:
    """"present", or "stand-in made" after the one-off debootstrap (~1-2 min)."""
    if base_image_present():
        return "present"
    CACHE.mkdir(parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix="base-rootfs-", dir=CACHE))
    try:
        subprocess.run(
            [_debootstrap() or "debootstrap", "--variant=minbase", f"--include={DEBOOTSTRAP_PACKAGES}", "bookworm",
             str(rootfs), debian_mirror()],
            check=True, capture_output=True, timeout=900,
        )
        (rootfs / "usr/bin/python").symlink_to("python3")  # the name python:3.11-slim answers to
        for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()  # Debian's guard against pip in the system Python; the build uses a venv
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            subprocess.run(["podman", "import", "--change", f"ENV PATH={PATH_IN_IMAGE}", "--change",
                            'CMD ["python3"]', "-", BASE_IMAGE],
                           stdin=tar.stdout, env=_podman_env(), check=True, capture_output=True, timeout=600)
        finally:
            tar.wait()
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return "stand-in made"


def debian_mirror() -> str:
    """The machine's own Debian mirror (from its apt sources), else Debian's CDN."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        try:
            text = source.read_text()
        except OSError:
            continue
        for url in re.findall(r"(?:URIs:|^deb)\s+(https?://\S+)", text, flags=re.MULTILINE):
            if url.rstrip("/").endswith("/debian"):
                return url
    return "http://deb.debian.org/debian"


def wheelhouse() -> Path:
    """Every file the lock names for the image's Python and machine, downloaded on the host
    with its hash checked; kept per lock file, so a new lock downloads afresh. Markers are
    dropped first: pip judges them by the host's Python, not the image's (Debian's 3.11.2
    needs async-timeout, a newer 3.11 does not), and the image's pip judges them again."""
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:12]
    folder = CACHE / f"wheels-{digest}"
    if (folder / ".complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    unmarked = folder / "requirements-any-python.txt"
    unmarked.write_text(re.sub(r" ; [^\\\n]*", " ", LOCK.read_text()))
    arch = platform.machine()
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(36, 16, -1)] + [f"manylinux2014_{arch}"]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--require-hashes", "--only-binary", ":all:",
         "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
         *(option for name in platforms for option in ("--platform", name)),
         "--dest", str(folder), "-r", str(unmarked)],
        check=True, timeout=600, stdout=subprocess.DEVNULL,
    )
    unmarked.unlink()
    (folder / ".complete").touch()
    return folder


def build_image(tag: str = IMAGE) -> float:
    """The repository's Dockerfile built as is, from the wheelhouse; seconds it took."""
    ensure_base_image()
    wheels = wheelhouse()
    started = time.perf_counter()
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "build.log", "wb") as log:
        done = subprocess.run(
            ["podman", "build", "--pull=never", "-v", f"{wheels}:/wheels:ro", "-t", tag, str(PROJECT_ROOT)],
            env=_podman_env(), stdout=log, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_SECONDS,
        )
    if done.returncode != 0:
        raise RuntimeError(f"podman build failed; see {CACHE / 'build.log'}")
    return time.perf_counter() - started


def image_size_bytes(tag: str = IMAGE) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", tag).strip())


class ContainerCopy(FunctionCopy):
    """One container of the image on the host's network (so it reaches the test's own
    PostgreSQL and Redis on 127.0.0.1), listening on its own port. Stopping it is what the
    kubelet does: SIGTERM to PID 1, then SIGKILL once the grace period is over."""

    def __init__(self, env: Mapping[str, str], *, log: Path, image: str = IMAGE, port: int | None = None) -> None:
        self.name = f"orders-test-{uuid.uuid4().hex[:10]}"
        self.image = image
        port = port or free_port()
        # HOST keeps it on loopback: with the host's network, 0.0.0.0 would be every interface.
        self._container_env = {**env, **KNATIVE_ENV, "PORT": str(port), "HOST": "127.0.0.1"}
        super().__init__(self._container_env, port=port, log=log, command="podman run")

    def run_arguments(self) -> list[str]:
        env = [option for name, value in self._container_env.items() for option in ("--env", f"{name}={value}")]
        return ["podman", "run", "--rm", "--name", self.name, "--network", "host",
                "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp", *env, self.image]

    def start(self, *, wait: bool = True) -> ContainerCopy:
        assert self._log is not None
        with open(self._log, "ab") as output:
            self.process = subprocess.Popen(self.run_arguments(), env=_podman_env(), stdout=output,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def signal(self, signum: int) -> None:
        """To the container's PID 1 (gunicorn), as the kubelet sends it."""
        if self.running:
            podman("kill", "--signal", str(int(signum)), self.name, check=False)

    def kill(self) -> None:
        podman("kill", "--signal", "KILL", self.name, check=False)
        if self.process is not None:
            self.process.wait()

    def exec(self, *command: str) -> str:
        return podman("exec", self.name, *command)

    def started_at(self) -> float:
        """When the container's process started, in the host's epoch seconds."""
        stamp = podman("inspect", "--format", "{{.State.StartedAt.UnixNano}}", self.name).strip()
        return int(stamp) / 1e9


def remove_images(tags: Sequence[str]) -> None:
    for tag in tags:
        podman("rmi", "--force", tag, check=False)
