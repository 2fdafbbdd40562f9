# Builds the three programs once; docker-compose.yml runs each from this image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
        --bin sensor-publisher --bin mqtt-subscriber --bin api-server

FROM debian:bookworm-slim
# CA roots for mqtts:// and https:// (HiveMQ Cloud, InfluxDB Cloud).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir /data && chown 65532:65532 /data
COPY --from=build /src/target/release/sensor-publisher \
                  /src/target/release/mqtt-subscriber \
                  /src/target/release/api-server /usr/local/bin/
# The publisher keeps its meter registers in /data (mount a volume there).
WORKDIR /data
USER 65532:65532
CMD ["api-server", "--help"]
