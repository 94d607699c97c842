# mcpgate container image.
#
#   docker build --build-arg MCPGATE_GIT_REVISION="$(git rev-parse --short=12 HEAD)" -t mcpgate .
#   docker run --read-only -p 8080:8080 -p 9090:9090 \
#     -v "$PWD/mcpgate.yaml:/etc/mcpgate/mcpgate.yaml:ro" mcpgate
#
# The build stage runs scripts/build-release.sh, the same release build the test command makes
# and checks. The runtime image is distroless (glibc and CA certificates, no shell, no package
# manager) and runs as the numeric non-root user 65532, so Kubernetes can verify runAsNonRoot.
# The gateway writes nothing outside the paths its configuration names (an audit log file
# belongs on a mounted volume), so a read-only root filesystem works. There is no HEALTHCHECK:
# orchestrators probe /healthz and /readyz on the admin listener. Upstreams run over stdio need
# their runtimes (node, python) in the image: build one FROM this image that adds them, or run
# those servers as their own containers over HTTP.
#
# Ports, by the convention of the Helm chart and the examples: 8080 for MCP clients
# (`listen.addr: 0.0.0.0:8080`; plain HTTP there needs TLS or `plain_http: true` behind a
# TLS-terminating proxy), 9090 for the admin listener (`admin.addr: 0.0.0.0:9090`: /metrics,
# /healthz, /readyz).

FROM docker.io/library/rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
ARG MCPGATE_GIT_REVISION=unknown
ENV MCPGATE_GIT_REVISION=${MCPGATE_GIT_REVISION}
RUN scripts/build-release.sh \
    && install -D -m 0755 target/dist/mcpgate /out/mcpgate

FROM gcr.io/distroless/cc-debian12:nonroot
ARG MCPGATE_GIT_REVISION=unknown
LABEL org.opencontainers.image.title="mcpgate" \
      org.opencontainers.image.description="An MCP (Model Context Protocol) gateway: one authenticated, policy-enforcing endpoint in front of many MCP servers" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.revision="${MCPGATE_GIT_REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/mcpgate /usr/local/bin/mcpgate
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/mcpgate"]
CMD ["serve", "--config", "/etc/mcpgate/mcpgate.yaml"]
