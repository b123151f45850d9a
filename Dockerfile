# syntax=docker/dockerfile:1
# One image for the whole mesh: `roaming` and every service binary.
#
#   docker build -t ghcr.io/roaming-mesh/roaming:dev .
#   docker run --rm -p 50050:50050 --tmpfs /tmp ghcr.io/roaming-mesh/roaming:dev up
#
# Kubernetes (deploy/k8s) runs `roaming serve <service>`; the image's ENTRYPOINT
# is `roaming`, the arguments choose the service.

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
# Only the manifests' dependencies: this layer changes when Cargo.lock does.
RUN cargo chef cook --profile production --locked --recipe-path recipe.json \
    -p services-roaming -p services-reservation -p services-payment \
    -p services-rental -p services-parking -p services-view
COPY . .
# The production profile: release with fat LTO (a smaller binary, 25 MiB
# idle instead of 29; BENCHMARKS-LOG.md, run 6).
RUN cargo build --profile production --locked \
    -p services-roaming -p services-reservation -p services-payment \
    -p services-rental -p services-parking -p services-view \
 && mkdir -p /out \
 && cp target/production/roaming target/production/reservation target/production/payment \
       target/production/rental target/production/parking target/production/view /out/

# --- runtime: glibc and libgcc only, no shell, uid 65532 ---------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="roaming-mesh" \
      org.opencontainers.image.source="https://github.com/roaming-mesh/roaming" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/ /usr/local/bin/
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
