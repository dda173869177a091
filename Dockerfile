# smtpgate in a container: built in one stage, run from a slim one as an unprivileged user.
#   docker build -t smtpgate .          docker compose up -d   (compose.yaml: with PostgreSQL and Redis)
# Nothing secret is baked in: keys, certificates and the database are made at first start
# in the /var/lib/smtpgate volume; the database password comes from a Docker secret.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/smtpgate
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN /opt/smtpgate/bin/pip install . && /opt/smtpgate/bin/smtpgate --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="smtpgate" \
      org.opencontainers.image.description="SMTP submission gateway" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10587 smtpgate \
 && useradd --system --uid 10587 --gid smtpgate --home-dir /var/lib/smtpgate --no-create-home \
            --shell /usr/sbin/nologin smtpgate \
 && install -d -o smtpgate -g smtpgate -m 0700 /var/lib/smtpgate
COPY --from=build /opt/smtpgate /opt/smtpgate
COPY deploy/docker/entrypoint.sh /usr/local/bin/smtpgate-entrypoint
ENV PATH=/opt/smtpgate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SMTPGATE_DATA=/var/lib/smtpgate \
    SMTPGATE_CONFIG=/var/lib/smtpgate/smtpgate.toml
USER smtpgate:smtpgate
WORKDIR /var/lib/smtpgate
VOLUME ["/var/lib/smtpgate"]
# Unprivileged ports inside; compose.yaml publishes them as 587 and 465.
EXPOSE 2587 2465
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8025/healthz', timeout=4).status != 200)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["smtpgate-entrypoint"]
CMD ["serve"]
