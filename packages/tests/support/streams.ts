import type { WireBody } from "./http.js";

/** Reads a response body as text, chunk by chunk, until it ends or is aborted. */
async function pump(response: Response, onText: (text: string) => void): Promise<void> {
  const reader = (response.body as ReadableStream<Uint8Array> | null)?.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const chunk = await reader?.read().catch(() => undefined);
    if (!chunk || chunk.done) return;
    onText(decoder.decode(chunk.value, { stream: true }));
  }
}

/** An open event stream. */
export interface TextStream {
  /** Aborts the stream and waits until its reader stopped. */
  close(): Promise<void>;
}

/**
 * Opens an event stream (`GET path` with the bearer token) and hands its raw text to `onText` as it
 * arrives; resolves once the response headers came.
 */
export async function openStream(
  cloud: { url: string },
  request: { path: string; token: string },
  onText: (text: string) => void,
): Promise<TextStream> {
  const controller = new AbortController();
  const response = await fetch(`${cloud.url}${request.path}`, {
    headers: { authorization: `Bearer ${request.token}` },
    signal: controller.signal,
  });
  const reading = pump(response, onText);
  return {
    close: async () => {
      controller.abort();
      await reading;
    },
  };
}

/** One server-sent event: its name and its parsed `data:` JSON. */
export interface StreamEvent {
  name: string;
  data: WireBody;
}

/** An event stream being collected. */
export interface EventWatch {
  /** Every event so far, in order. */
  events: StreamEvent[];
  /** Resolves once the stream's `:ok` came. */
  ready: Promise<void>;
  close(): void;
  /** The data of the first event (seen or still to come) with this name satisfying `predicate`; 5 s at most. */
  waitFor(name: string, predicate?: (data: WireBody) => boolean): Promise<WireBody>;
}

/** Opens an SSE stream (`GET path` with the bearer token) and collects its events. */
export function watch(cloud: { url: string }, path: string, token: string): EventWatch {
  const controller = new AbortController();
  const events: StreamEvent[] = [];
  const listeners = new Set<() => void>();
  let ready!: () => void;
  const readyPromise = new Promise<void>((resolve) => (ready = resolve));
  let buffer = "";
  const collect = (text: string) => {
    buffer += text;
    if (buffer.startsWith(":ok")) ready();
    let match;
    while ((match = /event: ([^\n]+)\ndata: ([^\n]+)\n\n/.exec(buffer))) {
      const data: unknown = JSON.parse(match[2] ?? "{}");
      events.push({ name: match[1] ?? "", data });
      buffer = buffer.slice(match.index + match[0].length);
      for (const listener of listeners) listener();
    }
  };
  void (async () => {
    const response = await fetch(`${cloud.url}${path}`, {
      headers: { authorization: `Bearer ${token}` },
      signal: controller.signal,
    });
    await pump(response, collect);
  })();
  return {
    events,
    ready: readyPromise,
    close: () => controller.abort(),
    waitFor: (name, predicate = () => true) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no ${name} event; saw ${JSON.stringify(events)}`)),
          5000,
        );
        const check = () => {
          const found = events.find((event) => event.name === name && predicate(event.data));
          if (found) {
            clearTimeout(timer);
            listeners.delete(check);
            resolve(found.data);
          }
        };
        listeners.add(check);
        check();
      }),
  };
}
