// The subscription index the gateway routes events with must answer exactly what testing every subscription
// of every session answers (the rule in `wants`), through subscriptions, owner changes and removals.
import fc from "fast-check";
import { describe, expect, it } from "vitest";

import type { CloudEvent } from "../src/events/model.js";
import type { OwnerKey, Subscription } from "../src/gateway/event-routing.js";
import { SubscriptionIndex, wants } from "../src/gateway/event-routing.js";

const DEVICES = ["d1", "d2", "d3", "d4"];
const USERS = ["alice", "bob"];

const owner = fc.constantFrom<OwnerKey>(undefined, "u:alice", "u:bob", "c:carol");
const name = fc.constantFrom("", "t", "temp", "temp/in", "spark/status", "s", "hum");
const subscription: fc.Arbitrary<Subscription> = fc.record({
  prefix: fc.constantFrom("", "t", "te", "temp", "temp/", "spark", "h"),
  scope: fc.oneof(
    fc.constantFrom("my-devices" as const, "all-devices" as const),
    fc.record({ deviceId: fc.constantFrom(...DEVICES) }),
  ),
});
const event: fc.Arbitrary<CloudEvent> = fc.record({
  name,
  data: fc.constant(null),
  ttl: fc.constant(60),
  publishedAt: fc.constant("2026-12-01T00:00:00.000Z"),
  coreid: fc.constantFrom(...DEVICES, "api"),
  isPublic: fc.boolean(),
  ownerUserId: fc.constantFrom(null, ...USERS),
  ownerCustomerId: fc.constantFrom(null, "carol"),
  productId: fc.constant(null),
});

/** Steps applied to both the index and a plain list of sessions. */
type Step =
  | { kind: "add"; session: number; subscription: Subscription; owner: OwnerKey }
  | { kind: "owner"; session: number; owner: OwnerKey }
  | { kind: "remove"; session: number }
  | { kind: "event"; event: CloudEvent };

const session = fc.integer({ min: 0, max: 5 });
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("add" as const), session, subscription, owner }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("owner" as const), session, owner }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("remove" as const), session }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("event" as const), event }) },
);

describe("SubscriptionIndex", () => {
  it("matches exactly the sessions whose subscriptions want the event, through owner changes and removals", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const index = new SubscriptionIndex<number>();
        const model = new Map<number, { owner: OwnerKey; subscriptions: Subscription[] }>();
        for (const current of steps) {
          if (current.kind === "add") {
            index.add(current.session, current.subscription, current.owner);
            const entry = model.get(current.session) ?? { owner: current.owner, subscriptions: [] };
            entry.owner = current.owner;
            entry.subscriptions.push(current.subscription);
            model.set(current.session, entry);
          } else if (current.kind === "owner") {
            index.setOwner(current.session, current.owner);
            const entry = model.get(current.session);
            if (entry) entry.owner = current.owner;
          } else if (current.kind === "remove") {
            index.remove(current.session);
            model.delete(current.session);
          } else {
            const expected = [...model]
              .filter(([, entry]) => entry.subscriptions.some((s) => wants(s, entry.owner, current.event)))
              .map(([id]) => id)
              .sort();
            expect([...index.match(current.event)].sort()).toEqual(expected);
          }
        }
        expect(index.size).toBe(model.size);
      }),
      { numRuns: 2000, seed: 11 },
    );
  });

  it("routes a private event only to devices of the same owner, a public one to every all-devices subscriber", () => {
    const index = new SubscriptionIndex<string>();
    index.add("alice-device", { prefix: "temp", scope: "my-devices" }, "u:alice");
    index.add("bob-device", { prefix: "temp", scope: "my-devices" }, "u:bob");
    index.add("listener", { prefix: "", scope: "all-devices" }, undefined);
    const base = {
      data: "21",
      ttl: 60,
      publishedAt: "2026-12-01T00:00:00.000Z",
      coreid: "d9",
      ownerUserId: "alice",
      ownerCustomerId: null,
      productId: null,
    };
    expect([...index.match({ ...base, name: "temperature", isPublic: false })]).toEqual(["alice-device"]);
    expect(new Set(index.match({ ...base, name: "temperature", isPublic: true }))).toEqual(
      new Set(["alice-device", "listener"]),
    );
    // Claimed by bob: its subscription now follows bob's devices.
    index.setOwner("alice-device", "u:bob");
    expect(new Set(index.match({ ...base, name: "temp", isPublic: false }))).toEqual(new Set());
    expect(new Set(index.match({ ...base, name: "temp", isPublic: false, ownerUserId: "bob" }))).toEqual(
      new Set(["alice-device", "bob-device"]),
    );
  });
});
