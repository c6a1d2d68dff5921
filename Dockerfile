# edgeproxy: a caching CDN edge (aiohttp + uvloop).
#
#   docker build -t edgeproxy .
#   docker run --rm -p 8080:8080 edgeproxy            # serves the demo site from /etc/edgeproxy/site
#   docker run --rm -p 8080:8080 -v "$PWD/my.yaml:/etc/edgeproxy/edge.yaml:ro" edgeproxy
#
# Two stages: the first builds a virtualenv with the package and its dependencies,
# the second copies only that virtualenv, so the source tree and build files stay out of the image.

# ---- build stage -------------------------------------------------------------------------------
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy/ ./proxy/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir .

# ---- runtime stage -----------------------------------------------------------------------------
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 edgeproxy \
    && useradd --system --uid 10001 --gid edgeproxy --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin edgeproxy

COPY --from=build /opt/venv /opt/venv

# The demo configuration: `root:` paths resolve relative to the config file's folder,
# so the demo site lives beside it at /etc/edgeproxy/site. Owned by root, read-only for the server.
COPY config/edge.yaml /etc/edgeproxy/edge.yaml
COPY config/site/ /etc/edgeproxy/site/

USER 10001:10001
WORKDIR /etc/edgeproxy
EXPOSE 8080

# No curl in the slim image: python's urllib does the probe (a non-2xx/3xx answer or no answer
# raises, which exits non-zero).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/', timeout=4).close()"]

# --listen overrides server.listen: config/edge.yaml listens on 127.0.0.1 (right on a laptop, unreachable
# from outside a container). A config mounted over edge.yaml is served on 0.0.0.0:8080 too; to use its
# own server.listen, run the image with a command of your own (`edgeproxy serve --config ...`).
CMD ["edgeproxy", "serve", "--config", "/etc/edgeproxy/edge.yaml", "--listen", "0.0.0.0:8080"]
