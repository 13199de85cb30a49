// The limit of the API scenario: a bare Fastify route, served the same way as Roost's API (its own
// process, 127.0.0.1, no logging), that sends a fixed body of the same shape and size as Roost's answer.
// What Roost adds on top (authentication, rate limiting, body parsing, the database) is what the ratio shows.
import Fastify from "fastify";
import type { FastifyInstance } from "fastify";

import { serveChild } from "../lib/child.js";

/** One route and the body it always sends. */
export interface BareRoute {
  readonly method: "GET" | "POST";
  readonly url: string;
  readonly body: unknown;
}

/** The methods of this process. */
export type BareServerApi = {
  start(params: { routes: readonly BareRoute[] }): Promise<{ url: string }>;
  /** `process.cpuUsage()` of this process, user + system, in microseconds. */
  cpu(params: Record<string, never>): Promise<{ cpuMicros: number }>;
};

let app: FastifyInstance | undefined;

const api: BareServerApi = {
  async start(params) {
    app = Fastify({ logger: false });
    for (const route of params.routes)
      app.route({ method: route.method, url: route.url, handler: () => route.body });
    const url = await app.listen({ port: 0, host: "127.0.0.1" });
    return { url };
  },
  cpu() {
    const usage = process.cpuUsage();
    return Promise.resolve({ cpuMicros: usage.user + usage.system });
  },
};

serveChild(api, async () => {
  await app?.close();
});
