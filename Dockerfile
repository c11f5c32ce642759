# syntax=docker/dockerfile:1
# trustpull container image: compiled JavaScript, production dependencies only, on distroless
# Node.js 24 (no shell, no package manager), running as uid 65532, writing nowhere but /tmp.
#
#   docker build -t trustpull .
#   docker run --read-only --tmpfs /tmp -p 5000:5000 \
#     -v "$PWD/config.yaml:/etc/trustpull/config.yaml:ro" \
#     trustpull serve --config /etc/trustpull/config.yaml
#
# Needs BuildKit (the default builder since Docker 23) for the npm cache mounts.
# Pin both base images by digest in production (node:24-slim@sha256:..., ...@sha256:...).
ARG BUILD_IMAGE=node:24-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot

# ---- build: TypeScript -> dist/ ----------------------------------------------------------------
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the one install script in the tree is the `node` dev package's, which would
# download a second Node 24 (this image already has one).
RUN --mount=type=cache,target=/root/.npm \
    npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- production dependencies only --------------------------------------------------------------
FROM ${BUILD_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# ---- runtime -----------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
# Build with: --build-arg VERSION=$(node -p 'require("./package.json").version') --build-arg REVISION=$(git rev-parse HEAD) --build-arg SOURCE=<repository URL>
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG SOURCE=
LABEL org.opencontainers.image.title="trustpull" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.description="A verifying OCI registry pull-through proxy: serves only images whose signatures match policy." \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /app
# package.json carries "type": "module" for dist/.
COPY --from=prod-deps /app/package.json ./package.json
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# Read-only root filesystem: every cache (TUF metadata, anything keyed on HOME or XDG dirs) goes
# to /tmp, the one path to mount writable (emptyDir, --tmpfs /tmp).
ENV NODE_ENV=production \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_DATA_HOME=/tmp/.local/share \
    TRUSTPULL_HEALTHCHECK_URL=http://127.0.0.1:5000/healthz
USER 65532:65532
EXPOSE 5000 9090
# No curl in distroless: Node's fetch. Set TRUSTPULL_HEALTHCHECK_URL when listening elsewhere
# (another port, or https with a certificate the image trusts). Kubernetes ignores HEALTHCHECK
# and uses the Deployment's probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["/nodejs/bin/node", "-e", "fetch(process.env.TRUSTPULL_HEALTHCHECK_URL, { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/cli/main.js"]
# Without --config: the embedded defaults (Docker Hub upstream, in-memory cache), on all interfaces.
CMD ["serve", "--listen", "0.0.0.0:5000"]
