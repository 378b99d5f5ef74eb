# syntax=docker/dockerfile:1
# One image for `folio operator`, `folio api` and the renderer Pods (`folio render`),
# and a second with Chromium for the renderer Pods of html templates and web pages:
#   docker build -t folio:dev .
#   docker build --target chromium -t folio:dev-chromium .
#
# Stage 1 compiles the dependencies alone, against stub sources (one per target that
# Cargo.toml declares, or cargo refuses the manifest), so that their layer is reused
# until Cargo.toml or Cargo.lock change; stage 2 compiles folio itself. Both use the
# `dist` profile (release with whole-program optimisation).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && for bench in $(sed -n '/^\[\[bench\]\]/,/^name/ s/^name = "\(.*\)"/\1/p' Cargo.toml); do \
      echo 'fn main() {}' > "benches/$bench.rs"; done \
 && cargo build --profile dist --locked \
 && rm -rf src benches target/dist/.fingerprint/folio-* target/dist/deps/folio-* target/dist/deps/libfolio-*

COPY src ./src
COPY benches ./benches
COPY assets ./assets
RUN cargo build --profile dist --locked --bin folio \
 && install -D -m 0755 target/dist/folio /out/folio

# The Chromium image: the same binary beside Debian's Chromium headless shell (the
# browser built for automation; no desktop Chromium), for renderer Pods of
# html templates and web pages (the chart's renderer.chromiumImage) and for `folio
# serve` with html templates. tini reaps the browser's exited children when folio is
# PID 1. It runs as 65532 with a read-only root file system: Chromium's profile and
# caches go to a fresh folder under /tmp (HOME), which the renderer Pod mounts as an
# emptyDir.
FROM debian:bookworm-slim AS chromium
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      chromium-headless-shell ca-certificates tini fonts-liberation2 fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/folio /usr/local/bin/folio
COPY --from=build /src/assets/fonts/LICENSE.txt /usr/share/doc/folio/fonts/LICENSE.txt
ENV FOLIO_CHROMIUM=/usr/lib/chromium/chromium-headless-shell HOME=/tmp
USER 65532:65532
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/folio"]
CMD ["--help"]

# The default image: glibc, CA certificates and the binary; no shell, no package manager. Fonts are
# embedded in the binary (Inter's licence travels with it). distroless's nonroot user is
# 65532, the uid renderer Pods use.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/folio /usr/local/bin/folio
COPY --from=build /src/assets/fonts/LICENSE.txt /usr/share/doc/folio/fonts/LICENSE.txt
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/folio"]
CMD ["--help"]
