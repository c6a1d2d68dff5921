# edgeproxy: a caching CDN edge (asyncio + uvloop).
#
#   docker build -t edgeproxy .
#   docker run --rm -p 8080:8080 edgeproxy            # serves the demo site (proxy/demo/container.yaml)
#   docker run --rm -p 8080:8080 -v "$PWD/my.yaml:/etc/edgeproxy/edge.yaml:ro" edgeproxy
#
# Two stages: the first builds a virtualenv with the package and its dependencies, the second copies only
# that virtualenv. The dependencies are installed in their own layer from pyproject.toml alone, so a change
# to the code reinstalls only the package (`pip install --no-deps`), not aiohttp, redis, pydantic, ...
#
# Base images are pinned by digest, so a rebuild gets the same bytes. To bump (e.g. for security fixes):
#   docker pull python:3.11-slim-bookworm
#   docker image inspect --format '{{index .RepoDigests 0}}' python:3.11-slim-bookworm
# and replace the tag and the sha256 below (both FROM lines, and the origin service in docker-compose.yml).
ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16

# ---- build stage -------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
# Layer 1: the dependencies, read from pyproject.toml (cached until pyproject.toml changes).
COPY pyproject.toml ./
RUN python -m venv /opt/venv \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
       > /tmp/requirements.txt \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt
# Layer 2: the package itself, without touching the dependencies.
COPY README.md ./
COPY proxy/ ./proxy/
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps .

# ---- runtime stage -----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 edgeproxy \
    && useradd --system --uid 10001 --gid edgeproxy --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin edgeproxy

COPY --from=build /opt/venv /opt/venv

# The image's configuration: `root:` paths resolve relative to the config file's folder, so the demo site
# lives beside it at /etc/edgeproxy/site. Owned by root, read-only for the server.
COPY proxy/demo/container.yaml /etc/edgeproxy/edge.yaml
COPY proxy/demo/site/ /etc/edgeproxy/site/

USER 10001:10001
WORKDIR /etc/edgeproxy
EXPOSE 8080

# Liveness from the admin listener's GET /healthz (no token, reveals nothing; never goes to an origin, so a
# down origin does not mark the edge unhealthy). No curl in the slim image: python's urllib does the probe
# (a non-2xx answer or no answer raises, which exits non-zero). A mounted config keeps an admin listener on
# port 9090 for it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9090/healthz', timeout=4).close()"]

# SIGTERM stops accepting and lets in-flight requests finish for up to 30 s (proxy/app.py SHUTDOWN_GRACE):
# give the container at least that long before it is killed (`docker stop -t 40`, compose
# `stop_grace_period: 40s`, Kubernetes `terminationGracePeriodSeconds: 40`).
STOPSIGNAL SIGTERM

# No --listen: the config decides where the edge listens (proxy/demo/container.yaml, or the one mounted over it).
CMD ["edgeproxy", "serve", "--config", "/etc/edgeproxy/edge.yaml"]
