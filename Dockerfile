# syntax=docker/dockerfile:1
# amfeishu: Prometheus Alertmanager webhooks → Feishu (Lark) cards.
#
#   docker build -t amfeishu .
#   docker run --read-only --tmpfs /tmp -v amfeishu-data:/var/lib/amfeishu \
#     -v "$PWD/amfeishu.yml:/etc/amfeishu/config.yml:ro" -p 8064:8064 amfeishu
#
# The builder stage builds the wheel and installs it, with its dependencies,
# into a venv; the final stage gets that venv only: no compiler, no pip cache,
# no source tree. tests/helm/test_dockerfile.py builds the same wheel from the
# same files and starts it the way ENTRYPOINT/CMD do.

FROM python:3.12.12-slim-trixie AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY helm/image-constraints.txt ./
COPY amfeishu/ amfeishu/
COPY templates/ templates/

# The redis extra: replicaCount > 1 in the Helm chart shares state through Redis.
# Every dependency at the exact version of the lock file (`make constraints`
# writes it), so two builds of one commit install the same packages.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/amfeishu \
    && /opt/amfeishu/bin/pip install --no-cache-dir --constraint image-constraints.txt \
       "$(find /wheels -name 'amfeishu-*.whl')[redis]"


FROM python:3.12.12-slim-trixie

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="amfeishu" \
      org.opencontainers.image.description="Prometheus Alertmanager webhooks to Feishu (Lark) interactive cards: deduplicated, grouped, signed, rate-limited, never lost." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/amfeishu/amfeishu" \
      org.opencontainers.image.url="https://github.com/amfeishu/amfeishu" \
      org.opencontainers.image.documentation="https://github.com/amfeishu/amfeishu/blob/main/docs/kubernetes.md" \
      org.opencontainers.image.base.name="docker.io/library/python:3.12.12-slim-trixie"

# Bytecode was compiled in the builder; at run time nothing is written but
# the outbox (/var/lib/amfeishu) and temporary files (/tmp): the root
# filesystem can be read-only.
ENV PATH="/opt/amfeishu/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    AMFEISHU_REVISION="${REVISION}"

RUN groupadd --system --gid 10001 amfeishu \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/amfeishu --shell /usr/sbin/nologin amfeishu \
    && mkdir -p /etc/amfeishu /var/lib/amfeishu \
    && chown 10001:10001 /var/lib/amfeishu \
    && chmod 0750 /var/lib/amfeishu

COPY --from=builder /opt/amfeishu /opt/amfeishu

USER 10001:10001
WORKDIR /var/lib/amfeishu
VOLUME ["/var/lib/amfeishu"]
EXPOSE 8064

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8064/-/healthy', timeout=3).status != 200)"]

ENTRYPOINT ["amfeishu"]
CMD ["serve", "--config", "/etc/amfeishu/config.yml"]
