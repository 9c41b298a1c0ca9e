# syntax=docker/dockerfile:1
# plugwatch's container image: a release build of `plugwatch` on distroless (glibc, libgcc, CA certificates),
# running as a numeric non-root user, its state in the `/data` volume, a read-only root filesystem welcome.
#
#   docker build -t plugwatch \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg SOURCE=https://github.com/OWNER/plugwatch .
#   PLUGWATCH_ADMIN_PASSWORD=... docker run --read-only -v plugwatch-data:/data -p 127.0.0.1:8080:8080 \
#     -e PLUGWATCH_ADMIN_PASSWORD plugwatch
#
# (the password is passed from the caller's environment, never written here; deploy/compose runs the image
# with Prometheus, Alertmanager and Grafana).
#
# `cargo xtask image` runs the runtime stage's settings below (user, environment, volume, entrypoint,
# healthcheck) with a locally built binary, read-only, under podman (see README).

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src

# 1. The dependencies alone, in a layer of their own: the manifests, the lock file and empty targets. This
#    layer is rebuilt only when a manifest or Cargo.lock changes, not when a source file does.
COPY Cargo.toml Cargo.lock ./
COPY crates/access/Cargo.toml crates/access/
COPY crates/alerts/Cargo.toml crates/alerts/
COPY crates/backup/Cargo.toml crates/backup/
COPY crates/baselines/Cargo.toml crates/baselines/
COPY crates/cache/Cargo.toml crates/cache/
COPY crates/model/Cargo.toml crates/model/
COPY crates/plugwatch/Cargo.toml crates/plugwatch/
COPY crates/registry/Cargo.toml crates/registry/
COPY crates/runtime/Cargo.toml crates/runtime/
COPY crates/server/Cargo.toml crates/server/
COPY crates/store/Cargo.toml crates/store/
COPY crates/telemetry/Cargo.toml crates/telemetry/
COPY xtask/Cargo.toml xtask/
# The workspace's patched dependencies (vendor/README.md).
COPY vendor vendor
# Every library crate gets an empty lib.rs, the two binaries an empty main, and each declared [[bench]] an
# empty file (cargo refuses a manifest whose declared targets are missing).
RUN set -eu; \
    for crate in crates/*; do \
      mkdir -p "$crate/src" "$crate/benches"; \
      [ "$crate" = crates/plugwatch ] || : > "$crate/src/lib.rs"; \
      sed -n '/^\[\[bench\]\]/{n;s/^name = "\(.*\)"/\1/p}' "$crate/Cargo.toml" | while read -r bench; do \
        echo 'fn main() {}' > "$crate/benches/$bench.rs"; \
      done; \
    done; \
    mkdir -p xtask/src; \
    echo 'fn main() {}' > crates/plugwatch/src/main.rs; \
    echo 'fn main() {}' > xtask/src/main.rs; \
    cargo build --release --locked -p plugwatch --bin plugwatch

# 2. The real sources (what the build reads: the crates, the plugin contract, the demo's example plugins).
COPY crates crates
COPY wit wit
COPY examples/plugins examples/plugins
# COPY keeps the context's modification times, which may be older than the stub build's outputs: touch the
# workspace's own sources so that cargo rebuilds its crates (and only them).
RUN set -eu; \
    find crates -name '*.rs' -exec touch {} +; \
    cargo build --release --locked -p plugwatch --bin plugwatch; \
    install -D -m 0755 target/release/plugwatch /out/usr/local/bin/plugwatch; \
    install -d -m 0750 /out/data

# The runtime stage. `debug-nonroot` rather than `nonroot`: the same distroless base plus a static busybox,
# whose `wget` is the HEALTHCHECK's probe (plugwatch has no probe subcommand, and distroless has no curl).
FROM gcr.io/distroless/cc-debian12:debug-nonroot

ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="plugwatch" \
      org.opencontainers.image.description="Runs third-party WebAssembly plugins and measures every invocation." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

COPY --from=build --chown=0:0 /out/usr/local/bin/plugwatch /usr/local/bin/plugwatch
# The volume's mount point, owned by the runtime user: a fresh named volume starts with this ownership.
COPY --from=build --chown=65532:65532 /out/data /data

# plugwatch writes only under its data directory (database, artifacts, compiled-code cache under
# /data/compiled, backups, secret.key); TMPDIR points SQLite's occasional temporary files there too, so the
# root filesystem may be read-only without a tmpfs.
ENV PLUGWATCH_LISTEN=0.0.0.0:8080 \
    PLUGWATCH_DATA_DIR=/data \
    TMPDIR=/data
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/busybox/wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]

ENTRYPOINT ["/usr/local/bin/plugwatch"]
CMD ["serve"]
