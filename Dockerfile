# syntax=docker/dockerfile:1
# usersvc images (README, "Container image"):
#   docker build -t usersvc .                        FROM scratch (`image`, the default: last stage)
#   docker build --target distroless -t usersvc .    distroless/static, nonroot
# Build args: USERSVC_VERSION, USERSVC_COMMIT (there is no .git in the context).

ARG RUST_IMAGE=rust:1.95.0-slim-bookworm

# ---- build: the static musl binary ---------------------------------------------------------
FROM ${RUST_IMAGE} AS build
# musl-gcc for ring's C and assembly; the CA bundle for the final image.
# Versions come from the pinned base image's Debian suite (pinning them here
# would break the build each time Debian ships a security update).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src

# Dependencies in their own layer: only the manifests and the vendored crate,
# with stub sources, so that editing src/ does not rebuild them.
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo .cargo
COPY vendor vendor
# The linker wrapper (.cargo/config.toml) and the code layout it applies.
COPY scripts/release scripts/release
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs benches/log_line.rs benches/hot_paths.rs benches/tracing_span.rs \
 && cargo build --locked --profile dist --target x86_64-unknown-linux-musl \
 && rm -rf src benches

COPY . .
ARG USERSVC_VERSION=""
ARG USERSVC_COMMIT=""
RUN touch src/main.rs src/lib.rs \
 && USERSVC_VERSION="${USERSVC_VERSION}" USERSVC_COMMIT="${USERSVC_COMMIT}" \
    scripts/release/build.sh \
 && scripts/image-root.sh target/x86_64-unknown-linux-musl/dist/usersvc /rootfs \
 && /rootfs/usr/local/bin/usersvc --version

# ---- distroless: the same binary on gcr.io/distroless/static (nonroot = 65532) --------------
FROM gcr.io/distroless/static-debian12:nonroot AS distroless
ARG USERSVC_VERSION=""
ARG USERSVC_COMMIT=""
LABEL org.opencontainers.image.title="usersvc" \
      org.opencontainers.image.description="A production-grade users API in synchronous Rust" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.version="${USERSVC_VERSION}" \
      org.opencontainers.image.revision="${USERSVC_COMMIT}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
COPY --from=build /rootfs/usr/local/bin/usersvc /usr/local/bin/usersvc
ENV ADMIN_ADDR=0.0.0.0:9090
USER 65534:65534
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/usersvc"]

# ---- scratch (default): the binary, the CA bundle, /etc/passwd, nothing else -----------------
FROM scratch AS image
ARG USERSVC_VERSION=""
ARG USERSVC_COMMIT=""
LABEL org.opencontainers.image.title="usersvc" \
      org.opencontainers.image.description="A production-grade users API in synchronous Rust" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.version="${USERSVC_VERSION}" \
      org.opencontainers.image.revision="${USERSVC_COMMIT}"
COPY --from=build /rootfs/ /
# The admin listener must be reachable from outside the container to be
# scraped; keep port 9090 private (deploy/k8s/networkpolicy.yaml).
ENV ADMIN_ADDR=0.0.0.0:9090 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65534:65534
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/usersvc"]
