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

FROM scratch
# No shell, no libc, no CA bundle: the operators talk to the API server, whose
# CA comes with the ServiceAccount token; to MQTT brokers over TLS only with the
# CA a SensorGateway names (mqtt.tls.caSecretRef); etcd-backup's S3 client
# carries the Mozilla roots itself, and etcd's CA is mounted. No etcdutl either:
# an EtcdBackup with verification.trialRestore needs an image that adds it.
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
LABEL org.opencontainers.image.title="homelab-operators" \
      org.opencontainers.image.description="Kubernetes operators for the services of a home" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/usr/local/bin/mediaserver-controller"]
