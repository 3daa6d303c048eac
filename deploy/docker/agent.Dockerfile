# argus-agent image: the agent binary alone on distroless (glibc, CA
# certificates, no shell). Built with `-p argus-agent`, so polars and linfa
# are never compiled into it (DESIGN.md: the agent stays small).
#
#   docker build -f deploy/docker/agent.Dockerfile -t argus-agent .
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p argus-agent --bin argus-agent \
 && cp target/release/argus-agent /argus-agent \
 && strip /argus-agent

# The DaemonSet runs it as root with only DAC_READ_SEARCH (to read pod logs);
# the image does not need anything else.
FROM gcr.io/distroless/cc-debian12
COPY --from=build /argus-agent /usr/local/bin/argus-agent
EXPOSE 4317 4318 8889
ENTRYPOINT ["/usr/local/bin/argus-agent"]
CMD ["run", "--config", "/etc/argus-agent/agent.yaml"]
