# syntax=docker/dockerfile:1
# keypin container image: built in a Rust image, run as non-root on distroless.
#   docker build -t keypin .                      # as shipped: dist + PGO
#   docker build --build-arg PGO=0 -t keypin .    # dist alone (no training run)
#   docker run --rm -p 8443:8443 -e KEYPIN_SESSION_KEYS=$(keypin gen-key) -e KEYPIN_PIN_KEY=$(keypin gen-key) \
#     -v $PWD/keypin.toml:/etc/keypin/keypin.toml:ro keypin

FROM rust:1-slim-bookworm AS build
# make: jemalloc (the allocator) is built from C source. It fixes the page size
# at build time: for arm64 hosts with 16 or 64 KiB pages, build with
# JEMALLOC_SYS_WITH_LG_PAGE=16 in the environment.
# The rest trains the profile-guided build (benches/pgo.sh) on loopback: nginx as
# the upstream, wrk and h2load as the load, curl and openssl for the sign-in and
# the certificate, iproute2 (ss) for the ports, rustup's llvm-profdata.
RUN apt-get update && apt-get install -y --no-install-recommends make \
        nginx-light wrk nghttp2-client curl openssl iproute2 \
    && rm -rf /var/lib/apt/lists/* && rustup component add llvm-tools
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY benches benches
COPY src src
COPY config config
# What ships: the `dist` profile (fat LTO, one codegen unit) with PGO, the build
# the benchmarks measure (about 10 minutes on 2 cores). PGO=0: `dist` alone, for
# a builder that cannot run what it builds (cross-compiling) or to build faster.
ARG PGO=1
RUN --mount=type=cache,target=/usr/local/cargo/registry --mount=type=cache,target=/src/target \
    if [ "$PGO" = 1 ]; then cp "$(benches/pgo.sh)" /keypin; \
    else cargo build --profile dist --locked && cp target/dist/keypin /keypin; fi \
    && strip /keypin

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /keypin /usr/local/bin/keypin
COPY config/keypin.example.toml /etc/keypin/keypin.toml
USER nonroot
# 8443: TLS listener; 9443: admin (/healthz, /readyz), keep it private.
EXPOSE 8443 9443
ENTRYPOINT ["/usr/local/bin/keypin"]
CMD ["serve", "--config", "/etc/keypin/keypin.toml"]
