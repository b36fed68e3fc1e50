# streamgate: multi-stage build, small non-root runtime image.
FROM rust:1-bookworm AS build
WORKDIR /src
# The `ffmpeg` feature (snapshots) links FFmpeg 5.1; ffmpeg-sys-next's bindgen needs libclang.
# The `cluster` feature (etcd): etcd-client's build runs protoc with the well-known types.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libclang-dev pkg-config \
      protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked --features ffmpeg,cluster --bin streamgate

FROM debian:bookworm-slim
# FFmpeg's runtime libraries, of the -dev packages the binary was linked against.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libavcodec59 libavformat59 libswscale6 libavutil57 \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin streamgate
COPY --from=build /src/target/release/streamgate /usr/local/bin/streamgate
COPY gateway.toml /etc/streamgate/gateway.toml
# UDP readers' RTP/RTCP pairs come from [rtsp] udp_ports (commented out in the shipped
# file): enable it so they use the exposed range (fails the build if the line moved).
# Publish it as is (-p 8000-8099:8000-8099/udp): the ports are announced to readers.
RUN sed -i 's/^# udp_ports = "8000-8099"$/udp_ports = "8000-8099"/' /etc/streamgate/gateway.toml \
 && grep -q '^udp_ports = "8000-8099"$' /etc/streamgate/gateway.toml
# Ring accounts and tokens (SQLite): set `[ring] database = "/var/lib/streamgate/streamgate.db"`
# and mount a volume there, so links survive a new container.
RUN install -d -o streamgate -m 0700 /var/lib/streamgate
VOLUME /var/lib/streamgate
USER streamgate
# RTSP (TCP, and [rtsp] udp_ports for RTP/RTCP to UDP readers), HTTP (dashboard, API, metrics, HLS).
EXPOSE 8554/tcp 8000-8099/udp 8080/tcp
# Healthy while /healthz answers and the RTSP listener accepts connections
# (bash's /dev/tcp: no curl in the image).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '^ok' <&3 && exec 4<>/dev/tcp/127.0.0.1/8554"]
ENV RUST_LOG=info
ENTRYPOINT ["/usr/local/bin/streamgate"]
CMD ["--config", "/etc/streamgate/gateway.toml"]
