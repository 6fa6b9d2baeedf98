# keypin container image: built in a Rust image, run as non-root on distroless.
#   docker build -t keypin .
#   docker run --rm -p 8443:8443 -e KEYPIN_SESSION_KEYS=$(keypin gen-key) -e KEYPIN_PIN_KEY=$(keypin gen-key) \
#     -v $PWD/keypin.toml:/etc/keypin/keypin.toml:ro keypin

FROM rust:1-slim-bookworm AS build
# make: jemalloc (the allocator) is built from C source. It fixes the page size
# at build time: for arm64 hosts with 16 or 64 KiB pages, build with
# JEMALLOC_SYS_WITH_LG_PAGE=16 in the environment.
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so source edits rebuild only keypin itself.
COPY Cargo.toml Cargo.lock ./
COPY benches benches
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --profile dist --locked && rm -rf src
COPY src src
COPY config config
# `dist`: fat LTO in one codegen unit, the build the benchmarks measure.
RUN touch src/main.rs src/lib.rs && cargo build --profile dist --locked && strip target/dist/keypin

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/dist/keypin /usr/local/bin/keypin
COPY config/keypin.example.toml /etc/keypin/keypin.toml
USER nonroot
# 8443: TLS listener; 9443: admin (/healthz, /readyz), keep it private.
EXPOSE 8443 9443
ENTRYPOINT ["/usr/local/bin/keypin"]
CMD ["serve", "--config", "/etc/keypin/keypin.toml"]
