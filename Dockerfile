# syntax=docker/dockerfile:1
#
# LoRA inference server image.
#
# CPU (default):
#   docker build -t lora-inference-server .
#   docker run --rm -p 8080:8080 -v $PWD/keys.json:/etc/lora-keys/keys.json:ro \
#     -e API_KEYS_FILE=/etc/lora-keys/keys.json lora-inference-server
#
# CUDA 12 variant: ORT_INSTALL=cuda12 lets onnxruntime-node's install script download its CUDA 12
# execution provider libraries, and the final image is then built on CUDA_IMAGE (CUDA 12 + cuDNN 9
# runtime, Node copied in) instead of the slim Node image. Run it with the NVIDIA container toolkit
# and have the server try CUDA first:
#   docker build --build-arg ORT_INSTALL=cuda12 -t lora-inference-server:cuda12 .
#   docker run --rm --gpus all -p 8080:8080 -e EXECUTION_PROVIDERS=cuda,cpu lora-inference-server:cuda12
#
# Build arguments:
#   NODE_IMAGE   Node.js LTS image (24) that builds dist/, installs dependencies and is the CPU base
#   ORT_INSTALL  onnxruntime-node install flag: "skip" (CPU only, no download) or "cuda12"
#   CUDA_IMAGE   base of the cuda12 variant; must provide the CUDA 12 and cuDNN 9 runtime libraries
#
# Configuration is the server's (defaults < config/default.json < environment < flags); the image
# sets HOST and PORT. Other settings: environment variables, e.g. MODEL_DIR, ADAPTERS_DIR,
# CACHE_DIR, MAX_BATCH, MAX_QUEUE, LOG_LEVEL, or CONFIG_FILE for a whole file (npm start -- --help).
# Scale-out and Kubernetes: docs/scale-out.md, deploy/.

ARG NODE_IMAGE=node:24-bookworm-slim
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
ARG ORT_INSTALL=skip

# ---- build: src/ (TypeScript) -> dist/ (JavaScript), with the dev dependencies (TypeScript) -------
FROM ${NODE_IMAGE} AS build
ENV ONNXRUNTIME_NODE_INSTALL=skip \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- production dependencies -------------------------------------------------------------------
FROM ${NODE_IMAGE} AS deps
ARG ORT_INSTALL
ENV ONNXRUNTIME_NODE_INSTALL=${ORT_INSTALL} \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev
# npm runs no dependency install scripts (.npmrc); onnxruntime-node's own, run here, does nothing with
# ORT_INSTALL=skip and downloads the CUDA 12 provider libraries with ORT_INSTALL=cuda12.
RUN node node_modules/onnxruntime-node/script/install

# ---- runtime bases: the stage "base-${ORT_INSTALL}" is the one used ------------------------------
FROM ${NODE_IMAGE} AS base-skip

FROM ${CUDA_IMAGE} AS base-cuda12
COPY --from=deps /usr/local/bin/node /usr/local/bin/node

# ---- runtime -------------------------------------------------------------------------------------
FROM base-${ORT_INSTALL} AS runtime
# HOST=0.0.0.0 needs API keys (API_KEYS_FILE, e.g. a mounted secret; docs/security.md): without keys the
# server refuses to start (exit 2). Serving without keys is a run-time choice of whoever runs the image,
# e.g. behind a gateway that authenticates, or to try the demo:
#   docker run --rm -p 8080:8080 -e ALLOW_UNAUTHENTICATED=true lora-inference-server
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    ALLOW_UNAUTHENTICATED=false
WORKDIR /app
# Everything is owned by root and read-only for the server, except the adapters directory (the
# admin API registers adapters there) and the cache of built ONNX graphs (.cache/onnx).
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json package-lock.json ./
COPY config ./config
COPY models ./models
COPY public ./public
COPY --chown=1000:1000 adapters ./adapters
RUN mkdir -p .cache/onnx && chown -R 1000:1000 .cache
USER 1000:1000
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# The build, run by Node alone (no tsx, no npm in between, so SIGTERM reaches the server, which drains
# with close-with-grace). Run with --init or let Kubernetes handle PID 1 reaping.
CMD ["node", "dist/server.js"]
