# syntax=docker/dockerfile:1
# Multi-stage build: a static bend binary on a distroless base, run as non-root.
#   docker build -t bend .
#   docker run --rm -v $PWD/config.yaml:/etc/bend/config.yaml:ro bend
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/bend ./cmd/bend

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bend /usr/local/bin/bend
COPY config.yaml /etc/bend/config.yaml
# The embedded broker (used only when kafka.brokers is empty) keeps its data here.
WORKDIR /var/lib/bend
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/bend"]
CMD ["run", "--config", "/etc/bend/config.yaml"]
