# d2o in a container: an optimised build of the `d2o` binary on a small Debian runtime.
#
#   docker build -t d2o .
#   docker run --rm -p 8080:8080 -v "$PWD/server.yaml:/etc/d2o/server.yaml:ro" \
#       d2o serve --config /etc/d2o/server.yaml --host 0.0.0.0 --port 8080
#
# docker-compose.yml runs the demo and a Jupyter recipient with this image. (Written without a
# Docker daemon at hand: not built in this repository's CI.)

# --- build -----------------------------------------------------------------------------------
FROM rust:1.95-slim AS builder
# cmake/pkg-config for the -sys crates' build scripts (TLS, compression); SQLite is bundled.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The `dist` profile: `release` with link-time optimisation across all crates (a smaller binary,
# a longer build; docs/benchmarks.md, "Binary size").
RUN cargo build --profile dist --locked -p d2o-cli \
    && install -m 0755 target/dist/d2o /usr/local/bin/d2o

# --- runtime ---------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 d2o \
    && useradd --system --uid 10001 --gid d2o --home-dir /data --create-home --shell /usr/sbin/nologin d2o
COPY --from=builder /usr/local/bin/d2o /usr/local/bin/d2o
USER d2o
WORKDIR /data
EXPOSE 8080
ENTRYPOINT ["d2o"]
CMD ["--help"]
