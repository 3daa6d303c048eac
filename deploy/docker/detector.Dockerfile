# argus-detector image: the detector binary on distroless, non-root.
#
#   docker build -f deploy/docker/detector.Dockerfile -t argus-detector .
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p argus-detector --bin argus-detector \
 && cp target/release/argus-detector /argus-detector \
 && strip /argus-detector

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /argus-detector /usr/local/bin/argus-detector
USER 65532:65532
EXPOSE 4317 4318 9095
ENTRYPOINT ["/usr/local/bin/argus-detector"]
CMD ["run", "--config", "/etc/argus-detector/detector.yaml"]
