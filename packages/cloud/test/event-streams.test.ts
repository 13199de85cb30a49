// The index of a node's open event streams must write each event to exactly the streams whose own rule (the
// prefix, then the stream kind's filter) accepts it, once each, through opens and closes; and it must not
// consult the streams of other owners at all, which is what keeps an event's cost flat as streams grow.
import fc from "fast-check";
import { describe, expect, it } from "vitest";

import type { CloudEvent } from "../src/events/model.js";
import { formatSseEvent } from "../src/events/model.js";
import type { EventStreamSink, StreamFilter } from "../src/http/event-streams.js";
import { EventStreams, streamFilters } from "../src/http/event-streams.js";
import type { Principal } from "../src/services/principal.js";

const TOKEN = { hash: "h", clientId: "c", expiresAt: null };
const PRINCIPALS: Principal[] = [
  { kind: "user", userId: "alice", username: "alice@example.com", token: TOKEN },
  { kind: "user", userId: "bob", username: "bob@example.com", token: TOKEN },
  { kind: "customer", customerId: "carol", productId: 7, email: "carol@example.com", token: TOKEN },
  { kind: "product", productId: 7, token: TOKEN },
  { kind: "product", productId: 8, token: TOKEN },
];
const DEVICES = ["d1", "d2", "d3"];

const principal = fc.constantFrom(...PRINCIPALS);
const device = fc.constantFrom(...DEVICES);
const product = fc.constantFrom(7, 8);
const filter: fc.Arbitrary<StreamFilter> = fc.oneof(
  principal.map((p) => streamFilters.public(p)),
  principal.map((p) => streamFilters.mine(p)),
  fc.tuple(principal, device).map(([p, d]) => streamFilters.device(p, d)),
  product.map((id) => streamFilters.product(id)),
  fc.tuple(product, device).map(([id, d]) => streamFilters.productDevice(id, d)),
);
const prefix = fc.constantFrom("", "t", "temp", "temp/", "spark", "spark/status");
const event: fc.Arbitrary<CloudEvent> = fc.record({
  name: fc.constantFrom("t", "temp", "temp/in", "temperature", "spark/status", "hum"),
  data: fc.constant("1"),
  ttl: fc.constant(60),
  publishedAt: fc.constant("2026-12-03T00:00:00.000Z"),
  coreid: fc.constantFrom(...DEVICES, "api"),
  isPublic: fc.boolean(),
  ownerUserId: fc.constantFrom(null, "alice", "bob"),
  ownerCustomerId: fc.constantFrom(null, "carol"),
  productId: fc.constantFrom(null, 7, 8),
});

type Step =
  | { kind: "open"; stream: number; prefix: string; filter: StreamFilter }
  | { kind: "close"; stream: number }
  | { kind: "event"; event: CloudEvent };

const streamNumber = fc.integer({ min: 0, max: 7 });
const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant("open" as const), stream: streamNumber, prefix, filter }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("close" as const), stream: streamNumber }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("event" as const), event }) },
);

describe("EventStreams", () => {
  it("writes each event once to exactly the streams whose prefix and filter accept it", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const streams = new EventStreams();
        const written = new Map<number, string[]>();
        const sinks = new Map<number, EventStreamSink>();
        const model = new Map<number, { prefix: string; filter: StreamFilter }>();
        for (const current of steps) {
          if (current.kind === "open") {
            const sink = sinks.get(current.stream) ?? {
              write: (text: string) => written.get(current.stream)?.push(text),
            };
            sinks.set(current.stream, sink);
            streams.add(sink, current.prefix, current.filter);
            model.set(current.stream, { prefix: current.prefix, filter: current.filter });
          } else if (current.kind === "close") {
            const sink = sinks.get(current.stream);
            if (sink) streams.remove(sink);
            model.delete(current.stream);
          } else {
            for (const id of sinks.keys()) written.set(id, []);
            streams.deliver(current.event);
            const text = formatSseEvent(current.event);
            for (const id of sinks.keys()) {
              const wanted = model.get(id);
              const accepted =
                wanted !== undefined &&
                current.event.name.startsWith(wanted.prefix) &&
                wanted.filter.accepts(current.event);
              expect(written.get(id)).toEqual(accepted ? [text] : []);
            }
          }
        }
        expect(streams.size).toBe(model.size);
      }),
      { numRuns: 2000, seed: 11 },
    );
  });

  it("does not consult the streams of other owners", () => {
    const streams = new EventStreams();
    const [alice, bob] = PRINCIPALS;
    if (!alice || !bob) throw new Error("principals");
    let consulted = 0;
    const counted = (filter: StreamFilter): StreamFilter => ({
      scopes: filter.scopes,
      accepts: (event) => {
        consulted += 1;
        return filter.accepts(event);
      },
    });
    for (let index = 0; index < 1000; index++)
      streams.add({ write: () => undefined }, "", counted(streamFilters.mine(bob)));
    const received: string[] = [];
    streams.add({ write: (text) => received.push(text) }, "", counted(streamFilters.mine(alice)));
    const event: CloudEvent = {
      name: "temp",
      data: "21",
      ttl: 60,
      publishedAt: "2026-12-03T00:00:00.000Z",
      coreid: "d1",
      isPublic: false,
      ownerUserId: "alice",
      ownerCustomerId: null,
      productId: null,
    };
    streams.deliver(event);
    expect(received).toEqual([formatSseEvent(event)]);
    expect(consulted).toBe(1);
  });
});
