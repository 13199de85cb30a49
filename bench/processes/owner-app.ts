// The owner's app of the claim scenario: it holds the owner's event streams open and stamps each event as
// its bytes arrive, and does nothing else. In the bench runner, the stamps waited behind the runner's own
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
    keep: "online" | "relay";
  }): Promise<null>;
  /** What the stream `name` has kept so far. */
  kept(params: { name: string }): Promise<Kept>;
};

const streams = new Map<string, { kept: Kept; close(): void }>();

const api: OwnerAppApi = {
  async open(params) {
    const kept: Kept = {};
    const onEvent = (event: StreamEvent) => {
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
  kept(params) {
    return Promise.resolve({ ...(streams.get(params.name)?.kept ?? {}) });
  },
};

serveChild(api, () => {
  for (const stream of streams.values()) stream.close();
  return Promise.resolve();
});
