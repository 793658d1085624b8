# A small image of the one `footfall` binary, running as a non-root user.
#
# Not built on the project's own machines (they have no container engine); build it where one
# runs: docker build -t footfall:0.1.0 .
#
# Stage 1 builds the release binary. librdkafka is compiled from its bundled sources (configure
# and make), so the build needs OpenSSL, zlib and the usual C toolchain.
FROM rust:1.90-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p footfall --bin footfall \
 && strip target/release/footfall

# Stage 2: Debian slim with the shared libraries the binary links (OpenSSL for Kafka and
# Cassandra TLS) and CA certificates (S3, TLS to brokers and nodes).
FROM debian:bookworm-slim
# No HEALTHCHECK: orchestrators probe /healthz and /readyz over HTTP (deploy/kubernetes), and
# the image carries no HTTP client to do it from inside.
#checkov:skip=CKV_DOCKER_2:probed over HTTP by the orchestrator
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 footfall \
 && useradd --uid 10001 --gid footfall --home-dir /var/lib/footfall --no-create-home footfall \
 && mkdir -p /var/lib/footfall \
 && chown footfall:footfall /var/lib/footfall
COPY --from=build /src/target/release/footfall /usr/local/bin/footfall
USER 10001:10001
ENV FOOTFALL_DATA_DIR=/var/lib/footfall \
    FOOTFALL_SERVER__LISTEN=0.0.0.0:8080
VOLUME ["/var/lib/footfall"]
EXPOSE 8080
# The server drains and flushes on SIGTERM (server.shutdown_timeout_s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/footfall"]
CMD ["serve"]
