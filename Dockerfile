# syntax=docker/dockerfile:1
# One image for the whole mesh: the `roaming` binary. The per-service binaries
# (services/reservation, ...) are `roaming serve <service>` under another
# name; the image does not ship them.
#
#   docker build -t ghcr.io/roaming-mesh/roaming:dev .
#   docker run --rm -p 50050:50050 --tmpfs /tmp ghcr.io/roaming-mesh/roaming:dev up
#
# Kubernetes (deploy/k8s) runs `roaming serve <service>`; the image's ENTRYPOINT
# is `roaming`, the arguments choose the service.
#
# Every file a build step reads is copied before it: deploy/check_dockerfile.py
# (.ci/run) derives them from cargo metadata and the build's dep-info and
# checks this file and .dockerignore. No docker engine runs on the machines
# that wrote this, so the image itself was never built there.

ARG RUST_VERSION=1.95

# --- dependencies, cached apart from the source (cargo-chef) ---------------
FROM rust:${RUST_VERSION}-slim-bookworm AS chef
WORKDIR /src
RUN cargo install cargo-chef --locked --version 0.1.78

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
ENV CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never
COPY --from=planner /src/recipe.json recipe.json
# The recipe carries the workspace's manifests, not the [patch.crates-io]
# path (vendor/sea-orm, not a member): cooking compiles it like any
# dependency, so it is copied first. It changes as rarely as Cargo.lock.
COPY vendor/ vendor/
# Only the dependencies of what ships: this layer changes when Cargo.lock does.
RUN cargo chef cook --profile production --locked --recipe-path recipe.json \
    -p services-roaming
# Everything else the build reads: every member (cargo loads the whole
# workspace), the protobuf sources (proto/build.rs) and the console the
# gateway embeds (services/gateway/build.rs reads services/console/dist).
COPY . .
# The production profile: release with fat LTO (a smaller binary, 25 MiB
# idle instead of 29; BENCHMARKS-LOG.md, run 6), stripped (Cargo.toml).
RUN cargo build --profile production --locked -p services-roaming --bin roaming \
 && mkdir -p /out \
 && cp target/production/roaming /out/

# --- runtime: glibc and libgcc only, no shell, uid 65532 ---------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="roaming-mesh" \
      org.opencontainers.image.source="https://github.com/roaming-mesh/roaming" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/roaming /usr/local/bin/roaming
# Nothing is written outside mounted volumes: SQLite files (embedded mode
# only) go to ROAMING_DATA_DIR, keys and config are mounted read-only.
ENV ROAMING_DATA_DIR=/tmp/roaming ROAMING_LOG_JSON=true
USER 65532:65532
EXPOSE 50050 50051 50052 50053 50054 50055 9464
# Kubernetes probes the gRPC health service natively (deploy/k8s); there is no
# shell for a HEALTHCHECK command, and Kubernetes ignores HEALTHCHECK anyway.
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/roaming"]
CMD ["up"]
