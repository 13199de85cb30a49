/** Small hooks the pages share: loading a value, and keeping an event stream open while mounted. */
import { useCallback, useEffect, useRef, useState } from "preact/hooks";

import type { StreamEvent } from "@roost/client";

import type { Api } from "./api.js";
import { errorText } from "./api.js";

/** A value loaded from the API: `reload()` fetches it again. */
export interface Loaded<T> {
  value: T | undefined;
  error: string | undefined;
  loading: boolean;
  reload: () => void;
}

/** Loads `load()` now and whenever `deps` change. */
export function useLoad<T>(load: () => Promise<T>, deps: readonly unknown[]): Loaded<T> {
  const [state, setState] = useState<{ value: T | undefined; error: string | undefined; loading: boolean }>({
    value: undefined,
    error: undefined,
    loading: true,
  });
  const generation = useRef(0);
  const reload = useCallback(() => {
    const mine = ++generation.current;
    setState((previous) => ({ ...previous, loading: true }));
    load().then(
      (value) => {
        if (mine === generation.current) setState({ value, error: undefined, loading: false });
      },
      (error: unknown) => {
        if (mine === generation.current)
          setState((previous) => ({ ...previous, error: errorText(error), loading: false }));
      },
    );
    // `load` is a fresh closure each render: `deps` say when it changes.
  }, deps);
  useEffect(reload, [reload]);
  return { ...state, reload };
}

/** Whether a live stream is connected, for a status line the tests and people can see. */
export type StreamState = "connecting" | "live" | "reconnecting";

/** First pause before reopening a dropped stream, in ms; it doubles up to {@link MAX_RETRY_MS}. */
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 15_000;

/**
 * Keeps an event stream open while mounted (reopening it after a drop) and hands each event to `onEvent`.
 * `path` and `prefix` choose the stream; changing them reopens it.
 */
export function useEventStream(options: {
  api: Api;
  path: string;
  prefix?: string | undefined;
  onEvent: (event: StreamEvent) => void;
}): StreamState {
  const { api, path, prefix } = options;
  const handler = useRef(options.onEvent);
  handler.current = options.onEvent;
  const [state, setState] = useState<StreamState>("connecting");
  useEffect(() => {
    let stopped = false;
    let close: (() => void) | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let retryMs = FIRST_RETRY_MS;
    const open = async () => {
      try {
        const stream = await api.stream({ path, prefix, onEvent: (event) => handler.current(event) });
        if (stopped) return stream.close();
        close = () => stream.close();
        setState("live");
        retryMs = FIRST_RETRY_MS;
        await stream.done;
      } catch {
        // Refused or unreachable: retried below like a dropped stream.
      }
      if (stopped) return;
      setState("reconnecting");
      timer = setTimeout(() => void open(), retryMs);
      retryMs = Math.min(MAX_RETRY_MS, retryMs * 2);
    };
    setState("connecting");
    void open();
    return () => {
      stopped = true;
      clearTimeout(timer);
      close?.();
    };
  }, [api, path, prefix]);
  return state;
}

/** Re-renders every `ms` (for countdowns and "x minutes ago"). */
export function useTick(ms: number): number {
  const [now, setNow] = useState(Date.now);
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}

/** "3 min ago" style text for an ISO date. */
export function ago(iso: string | null | undefined, now: number): string {
  if (!iso) return "never";
  const seconds = Math.round((now - Date.parse(iso)) / 1000);
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}
