# syntax=docker/dockerfile:1
# Multi-stage build: a static bend binary on a distroless base, run as non-root.
#   docker build --build-arg VERSION=$(git describe --always) --build-arg COMMIT=$(git rev-parse HEAD) -t bend .
#   docker run --rm --stop-timeout 45 -p 127.0.0.1:9180:9180 \
#     -v $PWD/config.yaml:/etc/bend/config.yaml:ro -v bend-data:/var/lib/bend/data bend
# --stop-timeout must exceed shutdown_timeout (default 30s): `docker stop`
# sends SIGTERM, bend drains and commits, and only then would SIGKILL hurt.
# The admin server (dashboard, /metrics, /healthz, /readyz) listens on
# :9180 in the container (BEND_ADMIN_ADDR). On that non-loopback address the
# admin actions (POST /admin/reload, /debug/pprof/) answer 403 unless
# BEND_ADMIN_TOKEN is set; metrics and probes stay readable.
# The builder's Go version is go.mod's go line (a test checks they agree).
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/bendstream/bend/internal/buildinfo.version=${VERSION} -X github.com/bendstream/bend/internal/buildinfo.commit=${COMMIT}" -o /out/bend ./cmd/bend
# The state directory must belong to the non-root user: the embedded broker
# (used only when kafka.brokers is empty) writes ./data there.
RUN mkdir -p /out/state/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="bend" \
      org.opencontainers.image.description="Backpressure-aware stream ingestion pipeline: sources, Kafka, delay queue, enrichment, sinks" \
      org.opencontainers.image.source="https://github.com/bendstream/bend" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/bend /usr/local/bin/bend
COPY config.yaml /etc/bend/config.yaml
COPY --from=build --chown=nonroot:nonroot /out/state /var/lib/bend
WORKDIR /var/lib/bend
# The embedded broker's data directory (kafka.embedded.data_dir ./data):
# keep it across container restarts, or the backlog is lost.
VOLUME ["/var/lib/bend/data"]
USER nonroot:nonroot
ENV BEND_ADMIN_ADDR=:9180
EXPOSE 9180
# Ready: Kafka reachable and the consumer group joined (/readyz). The image
# has no shell or curl: bend asks itself.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/usr/local/bin/bend", "healthcheck", "--admin", "127.0.0.1:9180"]
ENTRYPOINT ["/usr/local/bin/bend"]
CMD ["run", "--config", "/etc/bend/config.yaml"]
