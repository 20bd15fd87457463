# Tessera: build with cargo, run on a slim image as a non-root user.
# Keys and data live on volumes (/var/lib/tessera/keys, /var/lib/tessera/data).

FROM rust:1-bookworm AS build
WORKDIR /src
# The whole context, filtered by .dockerignore, rather than a list of
# directories: Cargo reads every target the manifest declares (the `tokens`
# bench in benches/, the `loadgen` example in examples/, and the members of a
# workspace under crates/ if one is added) before it builds even one binary,
# so a hand-kept list breaks the build each time the manifest grows; that is
# how this file once failed. .dockerignore keeps build output, local data,
# signing keys, test tools and .git out of the context (and the image).
# `tests/api/deploy.rs` copies what these COPY lines copy, honouring
# .dockerignore, and runs `cargo check --locked --offline` on it.
COPY . .
RUN cargo build --release --locked --bin tessera

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/tessera tessera \
    && mkdir -p /var/lib/tessera/data /var/lib/tessera/keys \
    && chown -R tessera:tessera /var/lib/tessera \
    && chmod 700 /var/lib/tessera/keys
COPY --from=build /src/target/release/tessera /usr/local/bin/tessera
USER tessera:tessera
WORKDIR /var/lib/tessera
ENV TESSERA_LISTEN=0.0.0.0:3000 \
    TESSERA_DATA_DIR=/var/lib/tessera/data \
    TESSERA_KEYS_DIR=/var/lib/tessera/keys
VOLUME ["/var/lib/tessera/data", "/var/lib/tessera/keys"]
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=5s --retries=3 CMD ["tessera", "healthcheck"]
ENTRYPOINT ["tessera"]
CMD ["serve"]
