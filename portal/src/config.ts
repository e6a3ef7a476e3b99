// Where the API lives. Default: the origin that served the portal (the shim serves both). A deployment on
// Cloudflare Pages points it at the Worker with VITE_API_BASE at build time, or at run time with
// <meta name="scs-api-base" content="https://..."> in index.html (one build, several deployments).
export function apiBase(): string {
  const meta = document.querySelector<HTMLMetaElement>('meta[name="scs-api-base"]')?.content?.trim();
  const fromBuild = (import.meta.env.VITE_API_BASE as string | undefined)?.trim();
  return (meta || fromBuild || "").replace(/\/+$/, "");
}

/** Seconds between polls of live data. */
export const POLL_SECS = 5;
