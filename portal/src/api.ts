// The documented HTTP API (docs/worker-api.openapi.yaml), with the bearer token in a header.
import { apiBase } from "./config";
import { getToken } from "./auth";

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public body: Record<string, unknown> | null = null,
  ) {
    super(message);
  }
}

/** A 401: the token is missing or refused. The app returns to the login form. */
export class AuthError extends ApiError {}

let onAuthError: (e: AuthError) => void = () => {};
export function setAuthErrorHandler(f: (e: AuthError) => void): void {
  onAuthError = f;
}

export function apiUrl(path: string): string {
  if (/^https?:\/\//.test(path)) return path;
  return apiBase() + path;
}

export async function request<T>(method: string, path: string, body?: unknown, token = getToken()): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp: Response;
  try {
    resp = await fetch(apiUrl(path), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (e) {
    throw new ApiError(0, `the API at ${apiBase() || location.origin} cannot be reached (${e instanceof Error ? e.message : String(e)})`);
  }
  const text = await resp.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!resp.ok) {
    const obj = json && typeof json === "object" ? (json as Record<string, unknown>) : null;
    const msg = typeof obj?.error === "string" ? obj.error : `HTTP ${resp.status}`;
    if (resp.status === 401) {
      const e = new AuthError(401, msg, obj);
      onAuthError(e);
      throw e;
    }
    throw new ApiError(resp.status, msg, obj);
  }
  return json as T;
}

export const get = <T>(path: string) => request<T>("GET", path);

/** The API in front of us does not offer this route (404, or 501 from a Worker that lacks it yet):
 * the page falls back to the plain sensor list. */
export function routeMissing(e: unknown): boolean {
  return e instanceof ApiError && (e.status === 404 || e.status === 501);
}
export const post = <T>(path: string, body: unknown) => request<T>("POST", path, body);
export const enc = encodeURIComponent;

// ---- shapes ---------------------------------------------------------------------------------------

export interface Presence {
  online: boolean;
  boot: string;
  since: number;
  version: string | null;
}

export interface Sensor {
  id: string;
  type: string;
  parentSensorId: string | null;
  name: string | null;
  gatewayId: string;
  status: "online" | "offline" | "unknown" | string;
  lastSeen: number | null;
  attrs: Record<string, string>;
  presence?: Presence | null;
  /** From GET /v1/gateways/{id}/devices (and /v1/sensors?parentSensorId=): the latest probe state. */
  health?: DeviceHealth;
}

/** The health categories operators filter on, as the API names them, with the words the portal shows. */
export const PROBLEMS: { key: string; label: string }[] = [
  { key: "down", label: "down" },
  { key: "auth_broken", label: "auth broken" },
  { key: "stream_lost", label: "stream lost" },
  { key: "hdd_failed", label: "HDD failed" },
  { key: "clock_drift", label: "clock drift" },
];

export function problemLabel(key: string): string {
  return PROBLEMS.find((p) => p.key === key)?.label ?? key.replace(/_/g, " ");
}

export interface DeviceHealth {
  status?: string;
  online: boolean | null;
  latencyMs?: number | null;
  authOk?: boolean | null;
  streamOk?: boolean | null;
  hddOk?: boolean | null;
  clockOffsetS?: number | null;
  ts: number | null;
  problems?: string[];
}

/** A device's health word: its latest probe result when known, else its stored status. */
export function healthOf(s: Sensor): string {
  return s.health?.status ?? (s.health?.online === true ? "online" : s.health?.online === false ? "offline" : s.status);
}

/** The device's current problems (down, auth broken, ...), most serious first. */
export function problemsOf(s: Sensor): string[] {
  const p = s.health?.problems ?? [];
  return PROBLEMS.map((x) => x.key).filter((k) => p.includes(k));
}

export interface DeviceEvent {
  sensorId: string;
  gatewayId: string;
  ts: number;
  kind: string;
  detail: string | null;
  attrs: Record<string, string>;
  receivedAt: number;
}

export interface EventPage {
  count: number;
  limit: number;
  events: DeviceEvent[];
}

export interface Sample {
  name: string;
  label?: string;
  ts: number;
  value: number | null;
}

export interface MetricSamples {
  sensorId: string;
  count: number;
  limit: number;
  samples: Sample[];
}

export interface Rejection {
  reason: string;
  count: number;
  lastError: string;
  lastTopic: string;
  firstAt: number;
  lastAt: number;
}

export interface Gap {
  boot: string;
  seq: number;
  dropped: number;
  firstSeq: number;
  lastSeq: number;
  receivedAt: number;
}

export interface GatewayStats {
  gatewayId: string;
  presence: Presence | null;
  storedMessages: number;
  rejected: number;
  rejections: Rejection[];
  gaps: Gap[];
}

export interface FleetGateway {
  id: string;
  name: string | null;
  status: string;
  lastSeen: number | null;
  attrs: Record<string, string>;
  presence: Presence | null;
  backlog: { queueDepth: number | null; queueBytes: number | null; ts: number } | null;
  gaps: { reports: number; dropped: number; lastAt: number | null };
  rejected: number;
  openCommands: number;
  children: { total: number; online: number; offline: number; unknown: number; byType: Record<string, number>; problems?: Record<string, number> };
}

export interface Fleet {
  count: number;
  online: number;
  gateways: FleetGateway[];
}

export interface Artifact {
  id: string;
  commandId?: string;
  name: string;
  size: number;
  sha256: string;
  contentType: string;
  url?: string;
  /** Milliseconds since the epoch. */
  urlExpires?: number;
}

export interface CommandAudit {
  at: number;
  actor: string;
  from: string | null;
  to: string;
  detail: string | null;
}

export interface Command {
  id: string;
  type: string;
  gatewayId: string;
  /** The child sensor the command acts on; absent or null for the gateway itself. */
  target?: string | null;
  state: string;
  terminal: boolean;
  params: Record<string, unknown>;
  confirm: boolean;
  result: unknown;
  error: string | null;
  artifacts: Artifact[];
  requestedBy: string;
  createdAt: number;
  updatedAt: number;
  expiresAt: number;
  timeoutSecs: number;
  deliveredAt?: number | null;
  deliveries: number;
  cancelRequested: boolean;
  audit?: CommandAudit[];
}
