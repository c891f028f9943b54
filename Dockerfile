# syntax=docker/dockerfile:1
# daybook's container image: built with cargo alone (the proto compiles without protoc),
# run as a non-root user on a distroless base that holds glibc and CA certificates and
# nothing else: no shell, no package manager.
#
#   docker build -t daybook:0.1.0 .
#   docker run --rm -p 50051:50051 -p 9464:9464 daybook:0.1.0
#
# The default command serves the gRPC API on 0.0.0.0:50051, gRPC health (for probes) on
# 50052 and admin HTTP on 9464, with the journal in /var/lib/daybook (mount a volume there
# to keep it). It is for trying daybook out: it serves without credentials (--insecure),
# and /ready says so. In production pass `serve --auth-file ...` (and TLS), as the Helm
# chart (helm/daybook) does with its own config file.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# No debug line tables in the shipped binary (a quarter of the size).
ENV CARGO_PROFILE_RELEASE_DEBUG=false
# Dependencies first, so that a source change does not rebuild them.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY clients/rust clients/rust
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs && echo 'fn main() {}' > benches/core.rs \
    && cargo build --release --locked --bin daybook \
    && rm -rf src benches
COPY src src
COPY benches benches
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin daybook \
    && install -D -m 0755 target/release/daybook /out/daybook \
    && mkdir -p /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/daybook /usr/local/bin/daybook
# The journal's directory, owned by the image's non-root user (65532).
COPY --from=build --chown=65532:65532 /out/data /var/lib/daybook
USER 65532:65532
EXPOSE 50051 50052 9464
VOLUME ["/var/lib/daybook"]
ENTRYPOINT ["/usr/local/bin/daybook"]
CMD ["serve", "--listen", "0.0.0.0:50051", "--health-listen", "0.0.0.0:50052", "--admin", "0.0.0.0:9464", "--data-dir", "/var/lib/daybook", "--insecure"]
