import type { Fetch } from "./client.js";

/** One server-sent event of the Cloud API. @see spec/cloud-api.md §5.2 */
export interface StreamEvent {
  name: string;
  data: string | null;
  ttl: number;
  published_at: string;
  coreid: string;
}

/** An open event stream; `close()` ends it. */
export interface EventStream {
  /** Resolves when the stream ends (closed by either side). */
  readonly done: Promise<void>;
  close(): void;
}

/** Options of {@link openEventStream}. */
export interface EventStreamOptions {
  baseUrl: string;
  accessToken: string;
  /** The stream path, e.g. `/v1/devices/events` or `/v1/products/1000/events`. */
  path: string;
  /** Event name prefix, appended as one URL-encoded segment. */
  prefix?: string | undefined;
  onEvent(event: StreamEvent): void;
  fetch?: Fetch;
}

/**
 * Opens an SSE stream with `fetch` (Node and browsers alike) and parses `event:`/`data:` frames. Rejects
 * when the server refuses the stream (with the HTTP status in the message).
 */
export async function openEventStream(options: EventStreamOptions): Promise<EventStream> {
  const { fetch = globalThis.fetch.bind(globalThis) } = options;
  const controller = new AbortController();
  const url = `${options.baseUrl.replace(/\/+$/, "")}${options.path}${options.prefix ? `/${encodeURIComponent(options.prefix)}` : ""}`;
  const response = await fetch(url, {
    headers: { authorization: `Bearer ${options.accessToken}`, accept: "text/event-stream" },
    signal: controller.signal,
  });
  if (!response.ok || !response.body)
    throw new Error(`event stream ${options.path} refused: HTTP ${response.status} ${await response.text()}`);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const done = (async () => {
    let buffer = "";
    let name: string | undefined;
    let data = "";
    for (;;) {
      const chunk = await reader.read().catch(() => undefined);
      if (!chunk || chunk.done) return;
      buffer += decoder.decode(chunk.value as Uint8Array, { stream: true });
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, "");
        buffer = buffer.slice(newline + 1);
        if (line === "") {
          if (name !== undefined && data !== "") {
            try {
              const parsed = JSON.parse(data) as {
                data: string | null;
                ttl: string | number;
                published_at: string;
                coreid: string;
              };
              options.onEvent({
                name,
                data: parsed.data,
                ttl: Number(parsed.ttl),
                published_at: parsed.published_at,
                coreid: parsed.coreid,
              });
            } catch {
              // Not an event of this API: skip it, as EventSource does with what it cannot use.
            }
          }
          name = undefined;
          data = "";
        } else if (line.startsWith("event:")) {
          name = line.slice(6).trim();
        } else if (line.startsWith("data:")) {
          data += line.slice(5).trimStart();
        }
      }
    }
  })();
  return { done, close: () => controller.abort() };
}
