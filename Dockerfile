# syntax=docker/dockerfile:1
# Every binary of homelab-operators in one small image: static musl builds on top
# of `scratch`, running as a non-root user (the node agent alone is run as root by
# the chart, with every capability dropped, and etcd-backup's CronJob pods as root
# to read the etcd certificates; see charts/homelab-operators).
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t IMAGE .
#
# The chart runs each binary by its path: /usr/local/bin/<binary>.
# Cross-compiled on the build machine's architecture ($BUILDPLATFORM) for each
# target: no emulation, so an arm64 image builds as fast as an amd64 one.

ARG RUST_VERSION=1.95

FROM --platform=$BUILDPLATFORM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
# cargo-zigbuild links static musl binaries for either architecture with zig as
# the C toolchain (ring's C and assembly); protoc for the node agent's
# device-plugin API.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends protobuf-compiler python3-pip; \
    rm -rf /var/lib/apt/lists/*; \
    pip3 install --break-system-packages ziglang==0.13.0; \
    cargo install --locked cargo-zigbuild; \
    rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=target-${TARGETARCH} \
    set -eux; \
    case "$TARGETARCH" in \
      amd64) target=x86_64-unknown-linux-musl ;; \
      arm64) target=aarch64-unknown-linux-musl ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH" >&2; exit 1 ;; \
    esac; \
    cargo zigbuild --locked --profile dist --target "$target" \
      -p homelab-mediaserver -p homelab-usbdevicepin -p homelab-node-agent \
      -p homelab-sensorgateway -p homelab-etcdbackup; \
    mkdir -p /out; \
    for bin in mediaserver-controller usbdevicepin-controller node-agent \
               sensorgateway-controller etcd-backup; do \
      cp "target/$target/dist/$bin" /out/; \
    done

# etcdutl for the backup runner's trial restore. etcd's modules carry replace
# directives, so `go install` refuses them: build from the same small wrapper
# module the e2e cluster uses (e2e/tools/etcd), statically, for the target.
FROM --platform=$BUILDPLATFORM docker.io/library/golang:1.26-bookworm AS etcdutl
ARG TARGETARCH
WORKDIR /src
COPY e2e/tools/etcd/ ./
RUN CGO_ENABLED=0 GOOS=linux GOARCH=$TARGETARCH GOFLAGS=-mod=mod \
    go build -trimpath -ldflags "-s -w" -o /out/etcdutl go.etcd.io/etcd/etcdutl/v3

# The CA bundle, for TLS to MQTT brokers and S3 endpoints a public CA signed.
FROM docker.io/library/debian:bookworm-slim AS certificates
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates

FROM scratch
# No shell, no libc: the binaries are static. The API server's CA comes with the
# ServiceAccount token; etcd's is mounted by the backup runner.
COPY --from=build /out/ /usr/local/bin/
COPY --from=etcdutl /out/etcdutl /usr/local/bin/etcdutl
COPY --from=certificates /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
LABEL org.opencontainers.image.title="homelab-operators" \
      org.opencontainers.image.description="Kubernetes operators for the services of a home" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/usr/local/bin/mediaserver-controller"]
