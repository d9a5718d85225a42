# One image for every role: `serve` (API + worker), `serve --role api`, `worker`.
FROM node:20-bookworm-slim
# libvulkan1: the loader for onnxruntime-node's WebGPU provider on NVIDIA GPUs (Vulkan).
RUN apt-get update && apt-get install -y --no-install-recommends libvulkan1 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
COPY scripts/prisma-generate.mjs scripts/
COPY prisma prisma
COPY prisma.config.ts ./
RUN npm ci --omit=dev
COPY bin bin
COPY src src
COPY models models
COPY tsconfig.json ./
ENV PORT=4000 MOSAIC_DATA_DIR=/data
EXPOSE 4000
ENTRYPOINT ["node", "bin/mosaic.js"]
CMD ["serve"]
