# simplecqrs: ONE image, four entry points (API, outbox relay, consumer, operator).
#
# Why one image and not four: the API, the relay, the consumer and the operator share one
# pinned dependency list (pyproject.toml [project].dependencies) and one code base
# (the relay, the consumer and the operator import app.*: settings, migrations,
# read-model schema).  One image means one build, one scan, one tag that skaffold
# and the charts pass around, and an OrderService whose api.image and
# consumer.image are the same reference; the few MB of kopf/kubernetes the API
# does not need are a fair price.  The process is chosen by the pod's `command`,
# a subcommand of the one command line `simplecqrs` (app/cli.py; `simplecqrs --help`):
#
#   API       simplecqrs api        (default CMD; execs gunicorn -c python:app.gunicorn_conf app.wsgi:app)
#   relay     simplecqrs relay      (outbox -> Kafka, its own process)
#   consumer  simplecqrs consume
#   operator  simplecqrs operator
#
# and the tools `simplecqrs audit`, `simplecqrs rebuild-read-model`, `simplecqrs seed`.
# The labels io.simplecqrs.entrypoint.* below name the same commands; the test
# suite (tests/test_image.py) builds this image for real and runs each one.
#
# No `# syntax=` line: it would make BuildKit pull a Dockerfile frontend image
# (docker/dockerfile) from Docker Hub before anything else, and builds must
# also work where no registry is reachable.  The frontend built into Docker
# 20.10+ already supports everything used here (RUN --mount=type=cache and
# type=secret).
#
# Base image: PYTHON_IMAGE, the public python image by default.  Without a
# registry, `python -m scripts.stack.images build` passes
# --build-arg PYTHON_IMAGE=simplecqrs-base:bookworm, a Debian bookworm minbase
# root with Debian's python3 (3.11) and python3-venv made by debootstrap and
# `docker import`ed (see scripts/stack/images.py).  Both provide `python`,
# groupadd/useradd and a Python 3.11 that the venv links to in either stage.
#
# HTTPS behind an intercepting proxy: give the proxy's CA bundle as the build
# secret `ca` (`--secret id=ca,src=/etc/ssl/certs/ca-certificates.crt`); pip
# then uses it for that one step.  It is mounted, never copied into a layer.
# Without the secret (a normal machine) pip uses its own certificates.
#
# Signals: every entry point is exec-form, so the Python process is PID 1 and
# receives SIGTERM itself (`simplecqrs api` execs gunicorn in its own place).
# gunicorn's master stops its workers gracefully (GUNICORN_GRACEFUL_TIMEOUT),
# the relay and the consumer install SIGTERM handlers that finish the batch in
# hand and close Kafka/MySQL/Cassandra, and kopf stops its handlers on SIGTERM.
# gunicorn reaps its own workers, and nothing else forks, so no init process is
# needed.  Give pods a terminationGracePeriodSeconds above
# GUNICORN_GRACEFUL_TIMEOUT (the charts do).
#
# Health: the API serves /healthz and /readyz on API_BIND (0.0.0.0:8080 here),
# the relay on OUTBOX_METRICS_HOST:OUTBOX_METRICS_PORT (0.0.0.0:9101), the
# consumer on CONSUMER_METRICS_HOST:CONSUMER_METRICS_PORT (0.0.0.0:9102), each
# with /metrics; the operator serves kopf's liveness endpoint.  There is no
# Dockerfile HEALTHCHECK: one would be wrong for three of the four entry points
# and Kubernetes ignores it; the pod specs carry the probes.

# A slim Debian base pinned to a patch release; bump deliberately (and pin by
# digest in a registry mirror if you need byte-for-byte rebuilds).  Override
# with --build-arg PYTHON_IMAGE=... (see above).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---------------------------------------------------------------- dependencies
FROM ${PYTHON_IMAGE} AS deps
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    VIRTUAL_ENV=/opt/venv
WORKDIR /build
# Only pyproject.toml: a source change never invalidates the dependency layers,
# so `skaffold dev` rebuilds after a Python edit take seconds.
COPY pyproject.toml ./
# The runtime requirements are exactly pyproject's pinned [project].dependencies
# (tomllib is in the standard library since 3.11).
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('requirements.txt', 'w').write(chr(10).join(deps) + chr(10))"
RUN python -m venv "$VIRTUAL_ENV"
# Wheels only: every dependency ships manylinux wheels for amd64 and arm64, so
# no compiler is needed in this stage either, and a missing wheel fails the
# build loudly instead of silently compiling.
# PIP_CERT only when the optional `ca` secret was given (see above).
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && "$VIRTUAL_ENV/bin/python" -m pip install --only-binary=:all: -r requirements.txt
RUN "$VIRTUAL_ENV/bin/python" -m pip check
# The command line: each entry of pyproject's [project.scripts] (`simplecqrs = "app.cli:main"`) becomes an
# executable in the venv, as pip makes console scripts, without installing the project (its code is /app,
# on PYTHONPATH, copied last).
RUN python -c "import tomllib; s = tomllib.load(open('pyproject.toml', 'rb'))['project']['scripts']; print(chr(10).join(' '.join([n, *t.split(':')]) for n, t in s.items()))" > scripts.txt \
 && while read -r name module func; do \
      printf '#!%s/bin/python\nimport sys\nfrom %s import %s\nsys.exit(%s())\n' "$VIRTUAL_ENV" "$module" "$func" "$func" > "$VIRTUAL_ENV/bin/$name" \
      && chmod 0755 "$VIRTUAL_ENV/bin/$name" || exit 1; \
    done < scripts.txt

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
ARG GID=10001
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    API_BIND=0.0.0.0:8080 \
    GUNICORN_WORKERS=2 \
    GUNICORN_THREADS=4 \
    OUTBOX_METRICS_HOST=0.0.0.0 \
    OUTBOX_METRICS_PORT=9101 \
    CONSUMER_METRICS_HOST=0.0.0.0 \
    CONSUMER_METRICS_PORT=9102 \
    XDG_RUNTIME_DIR=/tmp
# A numeric, unprivileged user without a home or a shell; pods also set
# runAsNonRoot/runAsUser so Kubernetes can verify it without reading /etc/passwd.
RUN groupadd --system --gid "$GID" simplecqrs \
 && useradd --system --uid "$UID" --gid "$GID" --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin simplecqrs
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
# Source last (fast rebuilds); owned by root and read-only for the app user.
COPY app ./app
COPY consumer ./consumer
COPY k8s/operator/simplecqrs_operator ./simplecqrs_operator
LABEL org.opencontainers.image.title="simplecqrs" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.simplecqrs.entrypoint.api="simplecqrs api" \
      io.simplecqrs.entrypoint.relay="simplecqrs relay" \
      io.simplecqrs.entrypoint.consumer="simplecqrs consume" \
      io.simplecqrs.entrypoint.operator="simplecqrs operator"
USER ${UID}:${GID}
# API 8080 (HTTP + /metrics), relay 9101 and consumer 9102 (/healthz, /readyz,
# /metrics), operator 8080 (liveness) in its own pod.
EXPOSE 8080 9101 9102
# Read-only root filesystem in Kubernetes: gunicorn's worker files and control
# socket ($XDG_RUNTIME_DIR, not $HOME) and the Prometheus multiprocess directory
# go to /tmp, which the pods mount as emptyDir.
CMD ["simplecqrs", "api"]
