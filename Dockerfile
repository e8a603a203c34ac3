# spiffe-node-agent image: the SPIFFE node agent (ENTRYPOINT) and, with another command, the
# SPIRE-compatible server. See manifests/README.md for how the Kubernetes manifests use it.
#
#   docker build -t spiffe-node-agent:0.1.0 .
#
# Three stages. test/integration/runtime-layout.test.ts reads this file and rebuilds the same
# layout in a temp dir (same COPY list, same npm commands), then starts the agent from it.

# --- Stage 1: build. Full dev toolchain; generates the proto types and compiles TypeScript.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY proto ./proto
COPY scripts ./scripts
COPY src ./src
RUN npm run build

# --- Stage 2: production dependencies only, installed into a clean tree (dev packages never
# enter it, so nothing has to be pruned). Install scripts are not run: the only native module,
# koffi, ships prebuilt binaries in per-platform packages (see package.json "allowScripts").
FROM node:24-bookworm-slim AS deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# --- Stage 3: runtime. Distroless Node 24 on Debian 12 (same glibc as the build stages):
# no shell, no package manager, no npm. Pin the base by digest in your own builds.
FROM gcr.io/distroless/nodejs24-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="spiffe-node-agent" \
      org.opencontainers.image.description="SPIFFE node agent (Workload API on a Unix socket, k8s_psat, k8s workload attestation) and a SPIRE-compatible server" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/nodejs24-debian12:nonroot"
WORKDIR /opt/spiffe-node-agent
# Everything is owned by root and read-only for the runtime user: the agent cannot alter its code.
COPY --from=deps /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY proto ./proto
COPY bin ./bin
COPY package.json ./
ENV NODE_ENV=production
# 65532 is distroless "nonroot". The manifests set the same UID explicitly (runAsUser).
USER 65532:65532
# 9982: health (/live, /ready), 9988: Prometheus metrics; the Workload API is a Unix socket.
EXPOSE 9982 9988
# The server runs from the same image with
#   command: ["/nodejs/bin/node", "/opt/spiffe-node-agent/bin/spiffe-server.js"]
ENTRYPOINT ["/nodejs/bin/node", "/opt/spiffe-node-agent/bin/spiffe-agent.js"]
CMD ["run", "-config", "/run/spire/config/agent.json"]
