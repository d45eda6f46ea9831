# syntax=docker/dockerfile:1
# Ciphergate's container image. Not built in CI: the machines CI runs on cannot pull base
# images (docs/operations.md says so); test/ops/compose-env.test.ts checks the CIPHERGATE_*
# names used here against the configuration schema.
#
#   docker build -t ciphergate .
#   docker run --read-only --tmpfs /tmp -v ciphergate-data:/var/lib/ciphergate -p 8080:8080 ciphergate

ARG NODE_IMAGE=node:24-bookworm
ARG NODE_RUNTIME_IMAGE=node:24-bookworm-slim

# 1. Build: every dependency (TypeScript included), then dist/.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` (tsc) needs the sources, which are copied next.
RUN npm ci --ignore-scripts --no-audit --no-fund && npm rebuild pkcs11js
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY scripts/copy-console-files.mjs ./scripts/
RUN npm run build

# 2. Runtime dependencies only. pkcs11js compiles a native addon, so this stage keeps the
#    full image's compiler; the runtime stage below gets the result without the toolchain.
FROM ${NODE_IMAGE} AS runtime-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm rebuild pkcs11js && npm cache clean --force

# 3. Runtime: slim image, no compiler, no npm at run time, a numeric non-root user, and a root
#    filesystem that can be read-only (the data dir and /tmp are the only writable places).
FROM ${NODE_RUNTIME_IMAGE}
ENV NODE_ENV=production \
    CIPHERGATE_HOST=0.0.0.0 \
    CIPHERGATE_PORT=8080 \
    CIPHERGATE_DATA_DIR=/var/lib/ciphergate
WORKDIR /app
COPY --from=runtime-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY drizzle ./drizzle
# The application files belong to root and are not writable by the process that runs them.
RUN mkdir -p /var/lib/ciphergate && chown 10001:10001 /var/lib/ciphergate && chmod 0700 /var/lib/ciphergate
USER 10001:10001
VOLUME ["/var/lib/ciphergate", "/tmp"]
EXPOSE 8080
# With node itself: the slim base image has no HTTP client tool, and adding one is one more thing to patch.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.CIPHERGATE_PORT || '8080') + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "bin/ciphergate.js"]
CMD ["serve"]
