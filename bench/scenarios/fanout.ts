// Scenario 5, fanout: what routing one event to its few subscribers costs the server as the number of
// connected devices grows. A handful of devices subscribe to their owner's events; thousands of others are
// connected and subscribed to nothing but the system prefixes. The cost of an event should not grow with the
// devices that do not want it (issue 11: at 10,000 connected at most 1.2 × the cost at 1,000). Then the same
// for the API's event streams: the owner watches its events on one stream while other owners hold thousands
// of streams open; an event should not cost more for streams that cannot want it.
import { createUser } from "../lib/api.js";
import { startChild } from "../lib/child.js";
import type { ScenarioContext } from "../lib/context.js";
import { connectDevices, launchCloud, launchFleets, profiled, sleep } from "../lib/context.js";
import { deviceIds, deviceKeys } from "../lib/keys.js";
import type { ScenarioResult } from "../lib/report.js";
import { round } from "../lib/stats.js";
import type { OwnerAppApi } from "../processes/owner-app.js";

/** Server CPU per event at the larger fleet ÷ at the smaller one, per issue 11. */
const TARGET_GROWTH = 1.2;

/** Devices of the owner that subscribe to the published events. */
const SUBSCRIBERS = 10;

/** The event name the subscribers' prefix matches. */
const EVENT_NAME = "fanout/reading";

/** Long enough that no device pings during a measurement (the server answers pings: not what is measured). */
const PING_INTERVAL_MS = 600_000;

/** The owner's event stream: the events the subscribers get, as the owner's app reads them. */
const OWNER_STREAM_PATH = "/v1/devices/events/fanout";

/** Other owners' streams: all of their devices' events, none of the owner's. */
const OTHER_STREAM_PATH = "/v1/devices/events";

/** One measurement at one fleet size. */
interface Step {
  readonly connected: number;
  readonly events: number;
  readonly cpuMicrosPerEvent: number;
  readonly deliveries: number;
}

/** One measurement with a number of other owners' event streams open (and the largest fleet connected). */
interface StreamStep {
  readonly streams: number;
  readonly events: number;
  readonly cpuMicrosPerEvent: number;
}

/** Runs the fanout scenario. */
export async function runFanout(context: ScenarioContext): Promise<ScenarioResult> {
  const { quick } = context;
  const sizes = quick ? [200, 1000] : [1000, 10_000];
  const streamSizes = quick ? [20, 200] : [100, 2000];
  const largest = sizes.at(-1) ?? 0;
  const events = quick ? 500 : 10_000;
  // Devices stay silent (no pings): the server must not take them for dead meanwhile.
  const cloud = await launchCloud(context, {
    scenario: "fanout",
    params: { idleTimeoutMs: 2 * PING_INTERVAL_MS },
  });
  const fleets = launchFleets(2);
  const app = startChild<OwnerAppApi>({
    entry: new URL("../processes/owner-app.ts", import.meta.url),
    name: "event streams",
  });
  try {
    const { url } = cloud.address;
    const owner = await createUser(url);
    const keys = await deviceKeys(8);
    const ids = deviceIds(largest + SUBSCRIBERS);
    const subscribers = ids.slice(0, SUBSCRIBERS).map((id, index) => ({ id, key: index % keys.length }));
    const others = ids.slice(SUBSCRIBERS).map((id, index) => ({ id, key: index % keys.length }));
    const publicKeys = keys.map((key) => key.publicKeyPem);
    await cloud.process.call("insertDevices", { keys: publicKeys, devices: subscribers, ownerToken: owner });
    await cloud.process.call("insertDevices", { keys: publicKeys, devices: others });

    // The subscribers connect first, from the first device process.
    const [first] = fleets;
    if (!first) throw new Error("no device process");
    const subscribed = await first.call("connect", {
      host: "127.0.0.1",
      port: cloud.address.gatewayPort,
      serverPublicKeyPem: cloud.address.serverPublicKeyPem,
      keys: keys.map((key) => key.privateKeyPem),
      devices: subscribers,
      concurrency: SUBSCRIBERS,
      pingIntervalMs: PING_INTERVAL_MS,
      subscriptions: ["fanout/"],
    });
    if (subscribed.some((result) => result.error)) throw new Error("a subscriber did not connect");

    const steps: Step[] = [];
    let connectedOthers = 0;
    let delivered = 0;
    /** Publishes `count` events and waits until every subscriber has every one of them. */
    const publish = async (count: number) => {
      const spent = await cloud.process.call("publishEvents", {
        count,
        name: EVENT_NAME,
        ownerToken: owner,
      });
      const expected = delivered + count * SUBSCRIBERS;
      const deadline = Date.now() + 60_000;
      let received = 0;
      while ((received = await first.call("received", {})) < expected && Date.now() < deadline)
        await sleep(50);
      // The figure is only valid for events actually delivered.
      if (received < expected)
        throw new Error(`subscribers received ${received - delivered} of ${count * SUBSCRIBERS} events`);
      delivered = received;
      return spent;
    };
    const profiles: (string | undefined)[] = [];
    for (const size of sizes) {
      const batch = others.slice(connectedOthers, size - SUBSCRIBERS);
      context.log(`connecting ${batch.length} more devices (${size} in all)`);
      const results = await connectDevices({
        cloud,
        fleets,
        keys,
        devices: batch,
        concurrency: 32,
        pingIntervalMs: PING_INTERVAL_MS,
      });
      const failures = results.filter((result) => result.error).length;
      if (failures > 0) throw new Error(`${failures} devices did not connect at ${size}`);
      connectedOthers += batch.length;
      // Let the connect sequences' writes settle before measuring.
      await sleep(quick ? 500 : 2000);
      const stats = await cloud.process.call("stats", {});
      context.log(`${stats.connected} connected; publishing ${events} events to ${SUBSCRIBERS} subscribers`);
      // A first batch unmeasured, so that both sizes are measured with the publish path compiled.
      await publish(events);
      // Then a full collection, so that the window does not pay for the garbage of connecting the fleet: a
      // major GC that 9,000 new sessions made due, landing in the window or not, swung the 10,000 figure by
      // ×1.1–1.5 from run to run. The events' own collections stay in the window.
      await cloud.process.call("stats", { gc: true });
      const { result, profile } = await profiled(context, {
        cloud,
        name: `fanout-${size}`,
        measure: () => publish(events),
      });
      profiles.push(profile);
      steps.push({
        connected: stats.connected,
        events,
        cpuMicrosPerEvent: result.cpuMicros / events,
        deliveries: events * SUBSCRIBERS,
      });
    }

    // Event streams, with the largest fleet still connected: the owner's app reads the owner's events on one
    // stream while another owner's streams are opened, then the same events are published again.
    const other = await createUser(url);
    await app.call("open", {
      name: "owner",
      baseUrl: url,
      path: OWNER_STREAM_PATH,
      token: owner,
      keep: "count",
    });
    let streamed = 0;
    /** Publishes `count` events and waits until the devices and the owner's stream have every one of them. */
    const publishAndStream = async (count: number) => {
      const spent = await publish(count);
      const deadline = Date.now() + 60_000;
      let received = 0;
      while ((received = (await app.call("kept", { name: "owner" }))["events"] ?? 0) < streamed + count) {
        if (Date.now() > deadline)
          throw new Error(`the owner's stream received ${received - streamed} of ${count} events`);
        await sleep(50);
      }
      streamed = received;
      return spent;
    };
    const streamSteps: StreamStep[] = [];
    let opened = 0;
    for (const size of streamSizes) {
      context.log(`opening ${size - opened} more event streams of another owner (${size} in all)`);
      await app.call("openIdle", {
        name: `others-${size}`,
        baseUrl: url,
        path: OTHER_STREAM_PATH,
        token: other,
        count: size - opened,
      });
      opened = size;
      await publishAndStream(events);
      await cloud.process.call("stats", { gc: true });
      const { result, profile } = await profiled(context, {
        cloud,
        name: `fanout-streams-${size}`,
        measure: () => publishAndStream(events),
      });
      profiles.push(profile);
      streamSteps.push({ streams: size, events, cpuMicrosPerEvent: result.cpuMicros / events });
    }

    const [small, large] = steps;
    const [fewStreams, manyStreams] = streamSteps;
    const streamGrowth =
      fewStreams && manyStreams ? manyStreams.cpuMicrosPerEvent / fewStreams.cpuMicrosPerEvent : Number.NaN;
    const growth = small && large ? large.cpuMicrosPerEvent / small.cpuMicrosPerEvent : Number.NaN;
    return {
      name: "fanout",
      profiles,
      rows: [
        {
          scenario: "fanout",
          figure: `server CPU per event, ${SUBSCRIBERS} subscribers, ${large?.connected ?? 0} connected`,
          value: `${round(large?.cpuMicrosPerEvent ?? Number.NaN)} µs`,
          limit: `${round(small?.cpuMicrosPerEvent ?? Number.NaN)} µs at ${small?.connected ?? 0} connected`,
          ratio: growth,
          target: { better: "lower", ratio: TARGET_GROWTH },
        },
        {
          scenario: "fanout",
          figure: `server CPU per event, ${manyStreams?.streams ?? 0} other owners' event streams open`,
          value: `${round(manyStreams?.cpuMicrosPerEvent ?? Number.NaN)} µs`,
          limit: `${round(fewStreams?.cpuMicrosPerEvent ?? Number.NaN)} µs with ${fewStreams?.streams ?? 0}`,
          ratio: streamGrowth,
          target: { better: "lower", ratio: TARGET_GROWTH },
        },
      ],
      raw: { steps, streamSteps, subscribers: SUBSCRIBERS, eventName: EVENT_NAME },
    };
  } finally {
    await Promise.all(fleets.map((fleet) => fleet.exit(20_000)));
    await app.exit();
    await cloud.process.exit(20_000);
  }
}
