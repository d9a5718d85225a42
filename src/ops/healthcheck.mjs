// The container's health check (Dockerfile HEALTHCHECK, docker-compose.yml): /readyz of the process in
// this container. An API answers on PORT (default 4000); a worker-only process on MOSAIC_METRICS_PORT
// (default 9464). Plain JavaScript, so it starts fast and needs nothing from node_modules.
// Exit 0 when ready, 1 otherwise.
const ports = new Set([process.env.PORT || "4000", process.env.MOSAIC_METRICS_PORT || "9464"]);
for (const port of ports) {
  let res;
  try {
    res = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(4_000) });
  } catch {
    continue; // nothing listens on this port (the other role), or it did not answer in time
  }
  const body = await res.text();
  if (!res.ok) process.stderr.write(`not ready: ${body}\n`);
  process.exit(res.ok ? 0 : 1);
}
process.stderr.write(`nothing answered /readyz on port ${[...ports].join(" or ")}\n`);
process.exit(1);
