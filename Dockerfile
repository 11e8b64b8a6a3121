# The daemon as an image: compiled JavaScript and production dependencies only, run by node as a non-root user.
#
#   docker build -t redis-pg-sync .
#   docker run --rm -p 8000:8000 -e REDIS_URL=redis://… -e DATABASE_URL=postgres://… redis-pg-sync
#
# The arguments are a command of the CLI (default `start`): `docker run … redis-pg-sync check`.
# CI cannot run Docker: test/deploy/Compiled.int.test.ts builds and runs the compiled daemon the same way
# (npm run build, node dist/main.js start) and passes scripts/test-sync against it.

# -- build: every dependency (TypeScript, esbuild), then `npm run build` → dist/main.js (the bundled program),
#    dist/src and dist/migrations (the compiled tree it is bundled from)
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.mjs scripts/
COPY migrations migrations
COPY src src
RUN npm run build

# -- runtime: production dependencies, the compiled tree and scripts/test-sync (it needs only ioredis and pg)
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist dist
COPY scripts/test-sync scripts/
# The image's `node` user (uid 1000): the daemon writes nothing to disk.
USER node
EXPOSE 8000
# /health is liveness only (the process serves HTTP); /ready also asks Redis and PostgreSQL. Slim has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.HTTP_PORT || 8000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself; the daemon finishes its batches in flight and exits 0
# within SYNC_SHUTDOWN_TIMEOUT (10 s by default: give `docker stop` more with --time, compose stop_grace_period).
# --max-semi-space-size: the young generation's bound (see src/Heap.ts), about 20 MB less resident under load;
# --single-threaded-gc: no collector threads competing with the daemon for a core (about 12 % less CPU, src/Heap.ts).
ENTRYPOINT ["node", "--max-semi-space-size=8", "--single-threaded-gc", "dist/main.js"]
CMD ["start"]
