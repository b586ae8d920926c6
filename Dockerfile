# Multi-stage build of the loyalty service.
#   docker build -t loyalty .
#   docker run --rm -e TEMPORAL_ADDRESS=host:7233 -e LOYALTY_DATABASE_URL=postgres://... loyalty
# The final image holds one static-enough binary on distroless (glibc, CA
# certificates, no shell) and runs as the non-root user 65532.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so they stay cached while only the sources change.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src
COPY migrations migrations
COPY src src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin loyalty

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/loyalty /usr/local/bin/loyalty
USER 65532:65532
EXPOSE 50051
# The SQLite default needs a writable folder; in Kubernetes use PostgreSQL.
ENV LOYALTY_DATABASE_URL=sqlite:/tmp/loyalty/loyalty.db
ENTRYPOINT ["/usr/local/bin/loyalty"]
CMD ["serve"]
