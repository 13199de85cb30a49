// The owner's app of the claim scenario: it holds the owner's event streams open and stamps each event as
// its bytes arrive, and does nothing else (the fanout scenario holds its event streams here too). In the bench runner, the stamps waited behind the runner's own
// work (its list polls, its calls to the other processes): up to the runner's loop delay (7–16 ms at p99,
// bench/README.md, claim). A real owner's app runs on another machine; this process is the nearest here.
import type { StreamEvent } from "../lib/api.js";
import { openEventStream } from "../lib/api.js";
import { serveChild } from "../lib/child.js";

/** What one stream keeps of each event: when it arrived, by the key the caller chose. */
type Kept = Record<string, number>;

/** The methods of this process. */
export type OwnerAppApi = {
  /**
   * Opens a stream (resolves once it is subscribed) and keeps, per device, when the first event it wants
   * arrived: `spark/status` `online` (by device ID), or any event whose data is a send time (`relay`: the
   * latency itself, by device ID).
   */
  open(params: {
    name: string;
    baseUrl: string;
    path: string;
    token: string;
    keep: "online" | "relay" | "count";
  }): Promise<null>;
  /**
   * Opens `count` streams of one path and token that keep nothing (an owner's other apps, or other owners'
   * streams): resolves once every one of them is subscribed.
   */
  openIdle(params: {
    name: string;
    baseUrl: string;
    path: string;
    token: string;
    count: number;
  }): Promise<null>;
  /** What the stream `name` has kept so far (`count`: events received, under the key `events`). */
  kept(params: { name: string }): Promise<Kept>;
};

const streams = new Map<string, { kept: Kept; close(): void }>();

const api: OwnerAppApi = {
  async open(params) {
    const kept: Kept = {};
    const onEvent = (event: StreamEvent) => {
      if (params.keep === "count") {
        kept["events"] = (kept["events"] ?? 0) + 1;
        return;
      }
      const device = String(event.data.coreid);
      if (device in kept) return;
      if (params.keep === "online" && event.name === "spark/status" && event.data.data === "online")
        kept[device] = event.receivedAt;
      if (params.keep === "relay") kept[device] = event.receivedAt - Number(event.data.data);
    };
    const stream = openEventStream({ ...params, onEvent });
    streams.set(params.name, { kept, close: () => stream.close() });
    await stream.ready;
    return null;
  },
  async openIdle(params) {
    const opened = Array.from({ length: params.count }, () =>
      openEventStream({ ...params, onEvent: () => undefined }),
    );
    streams.set(params.name, { kept: {}, close: () => opened.forEach((stream) => stream.close()) });
    await Promise.all(opened.map((stream) => stream.ready));
    return null;
  },
  kept(params) {
    return Promise.resolve({ ...(streams.get(params.name)?.kept ?? {}) });
  },
};

serveChild(api, () => {
  for (const stream of streams.values()) stream.close();
  return Promise.resolve();
});
