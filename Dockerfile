# The orders function's image. Build it into minikube's node with
#   minikube image build -t dev.local/orders:0.1.0 .
# (docs/deploying.md); docs/image.md says how it is locked, built and checked.
# Everything the image needs is in this repository.
#
# Two stages: the first installs requirements-lock.txt (exact versions, every file's hash
# checked) into a virtual environment; the second copies that environment onto a clean
# base, so pip, its caches and the build stage's layers never reach the running image.

FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# The lock, not requirements.txt: what `make test` passed with is what ships. A wheelhouse
# mounted at /wheels (podman build -v "$PWD/.local/image/wheels:/wheels:ro" ..., filled by
# `pip download --require-hashes -r requirements-lock.txt`) is used instead of the index:
# an air-gapped build, and the tests' build. --only-binary: no compiler is needed or used.
COPY requirements-lock.txt /tmp/
RUN python -m venv /opt/venv \
 && if [ -d /wheels ]; then set -- --no-index --find-links /wheels; fi \
 && /opt/venv/bin/pip install --require-hashes --only-binary :all: "$@" -r /tmp/requirements-lock.txt \
 && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools

FROM python:3.11-slim

# PYTHONUNBUFFERED: logs reach `kubectl logs` line by line, not when a buffer fills.
# PYTHONPATH: /app holds function/ as a package, so `python -m function.migrate` works.
ENV PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PATH=/opt/venv/bin:$PATH

# The base's own installer goes too: nothing in the running image can install packages.
RUN if python -c "import pip" 2>/dev/null; then python -m pip uninstall --yes --quiet pip setuptools wheel; fi

# A numeric uid, so the kubelet can verify the Service's runAsNonRoot. No home directory:
# the root filesystem is read-only (knative/service.yaml); what writes goes to /tmp and
# /dev/shm.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
COPY Procfile ./
COPY function/ function/
COPY postgres/migrations/ postgres/migrations/

# Bytecode compiled now, not on every cold start (the app files belong to root and the
# root filesystem is read-only, so the running user could not write .pyc files anyway).
RUN python -m compileall -q function

USER 10001:10001

# Knative passes PORT (8080 unless the Service says otherwise); functions-framework
# listens on $PORT by itself, so the command needs no --port.
EXPOSE 8080

# Exec form: gunicorn (inside functions-framework) is PID 1 and gets SIGTERM directly;
# its uvicorn worker finishes in-flight requests before the pod goes. The Procfile's
# web: line (the ASGI stack, --asgi), less --port. WORKERS comes from the environment.
CMD ["functions-framework", "--asgi", "--source=function/main.py", "--target=handle"]
