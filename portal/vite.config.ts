import { defineConfig } from "vitest/config";

// SCS_SHIM (e.g. http://127.0.0.1:8080) proxies the API during `npm run dev`, so the dev server and the
// shim look like one origin, as they are when the shim serves the built portal.
const shim = process.env.SCS_SHIM ?? "http://127.0.0.1:8080";

export default defineConfig({
  build: { target: "es2022", sourcemap: false, chunkSizeWarningLimit: 200 },
  server: { proxy: { "/v1": shim, "/healthz": shim } },
  test: { environment: "happy-dom", include: ["test/**/*.test.ts"] },
});
