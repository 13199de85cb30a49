/**
 * The signed-in session and the console's settings, kept in the browser's localStorage: the OAuth token,
 * the user name, and the SoftAP address the setup page talks to.
 */
import { useEffect, useState } from "preact/hooks";

const SESSION_KEY = "roost.session";
const SOFTAP_KEY = "roost.softap";

/** A signed-in user. */
export interface Session {
  token: string;
  username: string;
}

/** The address of a real device's SoftAP HTTP server (spec A.1): port 80 of 192.168.0.1. */
export const DEFAULT_SOFTAP_URL = "http://192.168.0.1";

const listeners = new Set<() => void>();

/** The stored session, if any. */
export function loadSession(): Session | undefined {
  try {
    const text = localStorage.getItem(SESSION_KEY);
    const parsed = text ? (JSON.parse(text) as Partial<Session>) : undefined;
    return parsed?.token && parsed.username ? { token: parsed.token, username: parsed.username } : undefined;
  } catch {
    return undefined;
  }
}

/** Stores (or with undefined, forgets) the session and tells every {@link useSession}. */
export function saveSession(session: Session | undefined): void {
  if (session) localStorage.setItem(SESSION_KEY, JSON.stringify(session));
  else localStorage.removeItem(SESSION_KEY);
  for (const listener of listeners) listener();
}

/** The current session, updated when it changes. */
export function useSession(): Session | undefined {
  const [session, setSession] = useState(loadSession);
  useEffect(() => {
    const update = () => setSession(loadSession());
    listeners.add(update);
    return () => void listeners.delete(update);
  }, []);
  return session;
}

/** The SoftAP address of the setup page. */
export function loadSoftApUrl(): string {
  return localStorage.getItem(SOFTAP_KEY) ?? DEFAULT_SOFTAP_URL;
}

/** Remembers the SoftAP address of the setup page. */
export function saveSoftApUrl(url: string): void {
  localStorage.setItem(SOFTAP_KEY, url);
}
