// The API token lives in sessionStorage only: gone when the tab closes, never in a URL or a cookie.
const KEY = "scs.apiToken";

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function setToken(t: string): void {
  sessionStorage.setItem(KEY, t);
}

export function clearToken(): void {
  sessionStorage.removeItem(KEY);
}
