# syntax=docker/dockerfile:1
# edge-gateway image: docker build -t edge-gateway:0.1.0 .

# ---- build: compile src/ to dist/
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: "prepare" would build before the sources are copied, and the "node"
# devDependency would download a second Node 24 next to the image's own. Its dangling bin link
# is removed so that tools' "#!/usr/bin/env node" finds the image's node.
RUN npm ci --ignore-scripts && rm -f node_modules/.bin/node
COPY . .
# routes/ and samples/ are created if the checkout has none (git keeps no empty directories), so
# the final stage can always copy them.
RUN npm run build && mkdir -p routes samples

# ---- runtime: production dependencies, the compiled gateway, its default manifests
FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/routes ./routes
COPY --from=build /app/samples ./samples
# The gRPC external authorizer's protocol definitions (--extauthz-protocol grpc), read at run time.
COPY --from=build /app/proto ./proto
# 65532 ("nonroot"), numeric so that Kubernetes' runAsNonRoot can verify it; the chart runs as the
# same uid. Files stay owned by root: the gateway only reads them.
USER 65532:65532
# public HTTP, cluster-local HTTP/h2c, TLS, cluster-local TLS (when EDGE_LOCAL_HTTPS_PORT=8444 is set,
# as the chart does), admin (/healthz /readyz /metrics /debug/routes)
EXPOSE 8080 8081 8443 8444 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.EDGE_ADMIN_PORT || 9090) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself, which starts the gateway's drain.
# Without arguments it serves the manifests in routes/ (file mode); in a pod it watches the cluster.
# The V8 flags are the ones src/runtime-flags.ts lists (a 16 MB young generation: see there).
ENTRYPOINT ["node", "--max-semi-space-size=16", "dist/main.js"]
