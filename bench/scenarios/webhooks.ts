// Scenario 5, webhooks: how many deliveries per second one hook gets from Roost's durable queue, against a
// bare HTTP client sending the same requests to the same receiver in the same run; and the latency an event
// takes from its publish to the receiver, against the 50 ms target. @see bench/README.md, docs/webhooks.md
import { Agent, createServer, request as httpRequest } from "node:http";
import type { Server } from "node:http";
import { performance } from "node:perf_hooks";

import { createUser } from "../lib/api.js";
import type { ScenarioContext } from "../lib/context.js";
import { launchCloud, profiled } from "../lib/context.js";
import type { ReportRow, ScenarioResult } from "../lib/report.js";
import { round, summarize } from "../lib/stats.js";

/** Requests one hook may have in flight (the cloud's `perHookConcurrency` for this run, and the bare client's). */
const CONCURRENCY = 8;

/** Publishes in flight at once while filling the queue. */
const PUBLISH_CONCURRENCY = 16;

/** Deliveries/s ÷ the bare client's requests/s that the scenario aims for. */
const TARGET_THROUGHPUT_RATIO = 0.25;

/** Event → delivery p99 target, in ms (the claim scenario's figure for a person waiting). */
const TARGET_LATENCY_P99_MS = 50;

/** A receiver in this process: answers 200 at once and wakes whoever waits for an event. */
async function startReceiver(): Promise<{
  url: string;
  server: Server;
  arrivals: Map<string, number>;
  waitFor(event: string): Promise<number>;
  waitForCount(count: number): Promise<void>;
}> {
  const arrivals = new Map<string, number>();
  const waiters = new Map<string, (at: number) => void>();
  let countWaiter: { count: number; resolve: () => void } | undefined;
  const server = createServer((request, response) => {
    let body = "";
    request.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
    request.on("end", () => {
      const at = performance.now();
      const event = new URLSearchParams(body).get("event") ?? "";
      arrivals.set(event, at);
      response.end();
      waiters.get(event)?.(at);
      waiters.delete(event);
      if (countWaiter && arrivals.size >= countWaiter.count) {
        countWaiter.resolve();
        countWaiter = undefined;
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    server,
    arrivals,
    waitFor: (event) =>
      new Promise((resolve) => {
        const seen = arrivals.get(event);
        if (seen !== undefined) resolve(seen);
        else waiters.set(event, resolve);
      }),
    waitForCount: (count) =>
      new Promise((resolve) => {
        if (arrivals.size >= count) resolve();
        else countWaiter = { count, resolve };
      }),
  };
}

/** Publishes one private event over the API; resolves when the API answered. */
async function publish(url: string, token: string, name: string): Promise<void> {
  const response = await fetch(`${url}/v1/devices/events`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ name, data: "21.5", private: true }),
  });
  if (!response.ok) throw new Error(`publish: HTTP ${response.status}`);
  await response.text();
}

/** Runs `count` jobs with at most `concurrency` at once. */
async function pool(
  count: number,
  concurrency: number,
  job: (index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await job(next++);
    }),
  );
}

/** The bare client's connections, kept alive as the dispatcher's are. */
const bareAgent = new Agent({ keepAlive: true });

/** The bare client: one POST of a delivery-sized form body, as the dispatcher sends it. */
function bareRequest(url: string, body: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest(url, {
      method: "POST",
      agent: bareAgent,
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        "content-length": Buffer.byteLength(body),
      },
    });
    outgoing.on("error", reject);
    outgoing.on("response", (response) => {
      response.resume();
      response.on("end", () => resolve());
    });
    outgoing.end(body);
  });
}

/** Runs the webhooks scenario. */
export async function runWebhooks(context: ScenarioContext): Promise<ScenarioResult> {
  const events = context.quick ? 300 : 2000;
  const latencySamples = context.quick ? 50 : 300;
  const receiver = await startReceiver();
  const cloud = await launchCloud(context, {
    scenario: "webhooks",
    params: {
      webhooks: {
        allowPrivate: true,
        perHookConcurrency: CONCURRENCY,
        // The account rate limit would measure itself: lifted, as the API rate limits are.
        accountRatePerSecond: 1e6,
      },
    },
  });
  try {
    const { url } = cloud.address;
    const token = await createUser(url);
    const created = await fetch(`${url}/v1/webhooks`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ event: "bench", url: receiver.url }),
    });
    if (!created.ok) throw new Error(`webhook: HTTP ${created.status} ${await created.text()}`);

    context.log("webhooks: warm-up (200 deliveries)");
    await pool(200, PUBLISH_CONCURRENCY, (index) => publish(url, token, `bench/warm/${index}`));
    await receiver.waitForCount(200);

    context.log(`webhooks: ${events} events to one hook, ${CONCURRENCY} deliveries in flight`);
    const before = await cloud.process.call("stats", {});
    const { result: throughput, profile } = await profiled(context, {
      cloud,
      name: "webhooks",
      measure: async () => {
        const started = performance.now();
        const target = receiver.arrivals.size + events;
        await pool(events, PUBLISH_CONCURRENCY, (index) => publish(url, token, `bench/load/${index}`));
        const published = performance.now();
        await receiver.waitForCount(target);
        const finished = performance.now();
        return { seconds: (finished - started) / 1000, publishSeconds: (published - started) / 1000 };
      },
    });
    const after = await cloud.process.call("stats", {});
    const serverCpuSeconds = (after.cpuMicros - before.cpuMicros) / 1e6;
    const deliveriesPerSecond = events / throughput.seconds;

    // The limit: the same number of requests of the same size, from a bare Node client with the same
    // concurrency and a fresh connection each, to the same receiver.
    const sampleBody = new URLSearchParams({
      event: "bench/bare/0000",
      data: "21.5",
      published_at: new Date().toISOString(),
      coreid: "api",
    }).toString();
    const bareStarted = performance.now();
    await pool(events, CONCURRENCY, () => bareRequest(receiver.url, sampleBody));
    const bareSeconds = (performance.now() - bareStarted) / 1000;
    const barePerSecond = events / bareSeconds;

    context.log(`webhooks: ${latencySamples} events one at a time (event -> delivery latency)`);
    const latencies: number[] = [];
    const publishTimes: number[] = [];
    for (let index = 0; index < latencySamples; index++) {
      const name = `bench/latency/${index}`;
      const sent = performance.now();
      const arrival = receiver.waitFor(name);
      await publish(url, token, name);
      publishTimes.push(performance.now() - sent);
      latencies.push((await arrival) - sent);
    }
    const bareLatencies: number[] = [];
    for (let index = 0; index < latencySamples; index++) {
      const sent = performance.now();
      await bareRequest(receiver.url, sampleBody);
      bareLatencies.push(performance.now() - sent);
    }
    const latency = summarize(latencies);
    const publishRoundTrip = summarize(publishTimes);
    const bare = summarize(bareLatencies);

    const rows: ReportRow[] = [
      {
        scenario: "webhooks",
        figure: `deliveries/s, one hook, ${CONCURRENCY} in flight`,
        value: `${round(deliveriesPerSecond)} /s`,
        limit: `${round(barePerSecond)} /s (bare HTTP client)`,
        ratio: deliveriesPerSecond / barePerSecond,
        target: { better: "higher", ratio: TARGET_THROUGHPUT_RATIO },
      },
      {
        scenario: "webhooks",
        figure: "server CPU per delivery (incl. the publish)",
        value: `${round((serverCpuSeconds / events) * 1e6)} µs`,
        limit: `${round(serverCpuSeconds)} s for ${events}`,
      },
      {
        scenario: "webhooks",
        figure: "event -> delivery p50/p95/p99",
        value: `${round(latency.p50)} ms / ${round(latency.p95)} ms / ${round(latency.p99)} ms`,
        limit: `p99 ${TARGET_LATENCY_P99_MS} ms (target)`,
        ratio: latency.p99 / TARGET_LATENCY_P99_MS,
        target: { better: "lower", ratio: 1 },
      },
      {
        scenario: "webhooks",
        figure: "added latency p50/p99 (minus bare request)",
        value: `${round(latency.p50 - bare.p50)} ms / ${round(latency.p99 - bare.p99)} ms`,
        limit: `bare request p50 ${round(bare.p50)} ms`,
        ratio: latency.p50 / bare.p50,
      },
    ];
    return {
      name: "webhooks",
      profiles: [profile],
      rows,
      raw: {
        events,
        concurrency: CONCURRENCY,
        publishConcurrency: PUBLISH_CONCURRENCY,
        throughput: { ...throughput, deliveriesPerSecond, serverCpuSeconds },
        bare: { seconds: bareSeconds, requestsPerSecond: barePerSecond, latency: bare },
        latency,
        publishRoundTrip,
        latencySamples: latencies,
      },
    };
  } finally {
    await cloud.process.exit();
    await new Promise((resolve) => receiver.server.close(resolve));
  }
}
