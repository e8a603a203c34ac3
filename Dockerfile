# spiffe-node-agent image (placeholder until the deployment issue hardens and tests it).
# Build stage: full toolchain, compile TypeScript and generate proto types.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY proto ./proto
COPY scripts ./scripts
COPY src ./src
RUN npm run build && npm prune --omit=dev

# Runtime stage: production dependencies, compiled JavaScript and the protos only.
FROM node:24-bookworm-slim
LABEL org.opencontainers.image.title="spiffe-node-agent" \
      org.opencontainers.image.description="SPIFFE node agent: SPIFFE Workload API on a Unix socket, SPIRE-compatible"
WORKDIR /opt/spiffe-node-agent
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/proto ./proto
COPY package.json ./
COPY bin ./bin
USER 65532:65532
ENTRYPOINT ["node", "bin/spiffe-agent.js"]
CMD ["run", "-config", "/run/spire/config/agent.conf"]
