// Scenario 5, fanout: what routing one event to its few subscribers costs the server as the number of
// connected devices grows. A handful of devices subscribe to their owner's events; thousands of others are
// connected and subscribed to nothing but the system prefixes. The cost of an event should not grow with the
// devices that do not want it (issue 11: at 10,000 connected at most 1.2 × the cost at 1,000).
import { createUser } from "../lib/api.js";
import type { ScenarioContext } from "../lib/context.js";
import { connectDevices, launchCloud, launchFleets, profiled, sleep } from "../lib/context.js";
import { deviceIds, deviceKeys } from "../lib/keys.js";
import type { ScenarioResult } from "../lib/report.js";
import { round } from "../lib/stats.js";

/** Server CPU per event at the larger fleet ÷ at the smaller one, per issue 11. */
const TARGET_GROWTH = 1.2;

/** Devices of the owner that subscribe to the published events. */
const SUBSCRIBERS = 10;

/** The event name the subscribers' prefix matches. */
const EVENT_NAME = "fanout/reading";

/** Long enough that no device pings during a measurement (the server answers pings: not what is measured). */
const PING_INTERVAL_MS = 600_000;

/** One measurement at one fleet size. */
interface Step {
  readonly connected: number;
  readonly events: number;
  readonly cpuMicrosPerEvent: number;
  readonly deliveries: number;
}

/** Runs the fanout scenario. */
export async function runFanout(context: ScenarioContext): Promise<ScenarioResult> {
  const { quick } = context;
  const sizes = quick ? [200, 1000] : [1000, 10_000];
  const largest = sizes.at(-1) ?? 0;
  const events = quick ? 500 : 2000;
  // Devices stay silent (no pings): the server must not take them for dead meanwhile.
  const cloud = await launchCloud(context, {
    scenario: "fanout",
    params: { idleTimeoutMs: 2 * PING_INTERVAL_MS },
  });
  const fleets = launchFleets(2);
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
      // A first batch unmeasured, so that both sizes are measured with the publish path compiled.
      await publish(events);
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

    const [small, large] = steps;
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
      ],
      raw: { steps, subscribers: SUBSCRIBERS, eventName: EVENT_NAME },
    };
  } finally {
    await Promise.all(fleets.map((fleet) => fleet.exit(20_000)));
    await cloud.process.exit(20_000);
  }
}
