# Multi-stage build of one wbc binary: wbc-api, wbc-worker or wbc-controller.
#   docker build --build-arg BIN=wbc-api -t wbc-api:dev .
# The runtime image is distroless (glibc, no shell) and runs as the non-root user 65532.
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
ARG BIN=wbc-api
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin "${BIN}" && \
    install -D "target/release/${BIN}" /out/app

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/app /app
USER 65532:65532
ENTRYPOINT ["/app"]
