# The orders function's image. Build it into minikube's node with
#   minikube image build -t dev.local/orders:0.1.0 .
# (docs/deploy-minikube.md). Everything the image needs is in this repository.
FROM python:3.11-slim

# PYTHONUNBUFFERED: logs reach `kubectl logs` line by line, not when a buffer fills.
# PYTHONPATH: /app holds function/ as a package, so `python -m function.migrate` works.
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

WORKDIR /app

# A numeric uid, so the kubelet can verify the Service's runAsNonRoot.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY Procfile ./
COPY function/ function/
COPY postgres/migrations/ postgres/migrations/

# Bytecode compiled now, not on every cold start (the app files belong to root, so the
# running user could not write .pyc files anyway).
RUN python -m compileall -q function

USER 10001:10001

# Knative passes PORT (8080 unless the Service says otherwise); functions-framework
# listens on $PORT by itself, so the command needs no --port.
EXPOSE 8080

# Exec form: gunicorn (inside functions-framework) is PID 1 and gets SIGTERM directly;
# its uvicorn worker finishes in-flight requests before the pod goes. The Procfile's
# web: line (the ASGI stack, --asgi), less --port. WORKERS comes from the environment.
CMD ["functions-framework", "--asgi", "--source=function/main.py", "--target=handle"]
