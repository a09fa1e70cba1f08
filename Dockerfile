# peakwatch for a cluster: one image, every component (`peakwatch collector|processor|api|notifier|db
# migrate|users|devices`), with the Kafka bus. docs/deploy.md runs it with deploy/compose and deploy/k8s.
#
#   docker build -t peakwatch:0.1.0 .
#
# Two stages: the first installs into a virtual environment (pip, setuptools and the source tree stay
# there), the second copies only that environment. Every dependency ships a wheel for CPython 3.11 on
# x86_64 and aarch64, so no compiler is needed in either stage.

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/peakwatch
WORKDIR /src
COPY . .
RUN /opt/peakwatch/bin/pip install ".[kafka]"

FROM python:3.11-slim-bookworm
# A fixed numeric uid: Kubernetes' runAsNonRoot can only verify a numeric USER, and docs/deploy.md's
# securityContext and volume ownership name it. The home is the data directory, so that anything a
# library writes under ~ lands on the one writable volume (read-only root filesystem in deploy/k8s).
RUN groupadd --system --gid 10001 peakwatch \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/peakwatch --create-home \
        --shell /usr/sbin/nologin peakwatch
COPY --from=build /opt/peakwatch /opt/peakwatch
ENV PATH=/opt/peakwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PEAKWATCH_DATA_DIR=/var/lib/peakwatch
USER 10001:10001
WORKDIR /var/lib/peakwatch
# The API (`peakwatch api --api-host 0.0.0.0 --api-port 8000`); the other components listen on nothing.
EXPOSE 8000
ENTRYPOINT ["peakwatch"]
CMD ["--help"]
