# syntax=docker/dockerfile:1
# Multi-stage build: a static bend binary on a distroless base, run as non-root.
#   docker build --build-arg VERSION=$(git describe --always) -t bend .
#   docker run --rm --stop-timeout 45 -p 127.0.0.1:9180:9180 \
#     -v $PWD/config.yaml:/etc/bend/config.yaml:ro bend
# --stop-timeout must exceed shutdown_timeout (default 30s): `docker stop`
# sends SIGTERM, bend drains and commits, and only then would SIGKILL hurt.
# The admin server (dashboard, /metrics, /healthz, /readyz) listens on
# :9180 in the container (BEND_ADMIN_ADDR); publish it only to trusted networks.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/bendstream/bend/internal/buildinfo.version=${VERSION}" -o /out/bend ./cmd/bend
# The state directory must belong to the non-root user: the embedded broker
# (used only when kafka.brokers is empty) writes ./data there.
RUN mkdir -p /out/state/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bend /usr/local/bin/bend
COPY config.yaml /etc/bend/config.yaml
COPY --from=build --chown=nonroot:nonroot /out/state /var/lib/bend
WORKDIR /var/lib/bend
USER nonroot:nonroot
ENV BEND_ADMIN_ADDR=:9180
EXPOSE 9180
ENTRYPOINT ["/usr/local/bin/bend"]
CMD ["run", "--config", "/etc/bend/config.yaml"]
