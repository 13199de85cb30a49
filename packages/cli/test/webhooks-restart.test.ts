// Durable webhook delivery across a restart of `roost serve`: the receiver is down while the event happens
// and while the server stops; after the restart (receiver back), the event arrives. @see docs/webhooks.md
import { spawn } from "node:child_process";
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const ENTRY = fileURLToPath(new URL("../src/run.ts", import.meta.url));

/** `roost serve` from source on free ports, logging at debug level (the test waits for log lines). */
function serve(dataDir: string): {
  child: ChildProcessWithoutNullStreams;
  output: () => string;
  waitFor: (pattern: RegExp) => Promise<string>;
} {
  const child = spawn(
    process.execPath,
    [
      "--conditions=roost-source",
      "--import",
      "tsx",
      ENTRY,
      "serve",
      "--port",
      "0",
      "--device-port",
      "0",
      // UDP 5684 is the default: tests never take the fixed port.
      "--udp-port",
      "0",
      "--data",
      dataDir,
      "--allow-signup",
      // The receiver is on 127.0.0.1.
      "--webhooks-allow-private",
      "--log-level",
      "debug",
    ],
    { env: { ...process.env, ROOST_DATABASE_URL: "", NO_COLOR: "1" } },
  );
  let out = "";
  const waiters = new Set<() => void>();
  const take = (chunk: Buffer) => {
    out += chunk.toString();
    for (const wake of [...waiters]) wake();
  };
  child.stdout.on("data", take);
  child.stderr.on("data", take);
  child.on("exit", () => {
    for (const wake of [...waiters]) wake();
  });
  return {
    child,
    output: () => out,
    waitFor: (pattern) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const match = pattern.exec(out);
          if (match) {
            waiters.delete(check);
            resolve(match[1] ?? match[0]);
          } else if (child.exitCode !== null) {
            waiters.delete(check);
            reject(new Error(`roost exited before ${pattern}: ${out}`));
          }
        };
        waiters.add(check);
        check();
      }),
  };
}

function stop(child: ChildProcessWithoutNullStreams): Promise<number | null> {
  return new Promise((resolve) => {
    child.on("exit", (code) => resolve(code));
    child.kill("SIGTERM");
  });
}

async function json(
  url: string,
  init: { method?: string; token?: string; body?: unknown } = {},
): Promise<any> {
  const response = await fetch(url, {
    method: init.method ?? "GET",
    headers: {
      "content-type": "application/json",
      ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
    },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  return response.json();
}

function listen(server: Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const address = server.address();
      resolve(typeof address === "object" && address ? address.port : 0);
    });
  });
}

describe("webhook deliveries survive a restart of roost serve", { timeout: 180_000 }, () => {
  const dataDir = mkdtempSync(join(tmpdir(), "roost-hooks-restart-"));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it("delivers an event queued while the receiver was down, after the server restarts", async () => {
    // A port nobody listens on (yet): the receiver is down.
    const probe = createServer();
    const port = await listen(probe);
    await new Promise((resolve) => probe.close(resolve));

    const first = serve(dataDir);
    const url = await first.waitFor(/listening on (http:\/\/\S+)/);
    const account = { username: "hooks@example.com", password: "long enough password" };
    await json(`${url}/v1/users`, { method: "POST", body: account });
    const { access_token: token } = await json(`${url}/oauth/token`, {
      method: "POST",
      body: { grant_type: "password", ...account, client_id: "particle", client_secret: "particle" },
    });
    const hook = await json(`${url}/v1/webhooks`, {
      method: "POST",
      token,
      body: {
        event: "meter",
        url: `http://127.0.0.1:${port}/ingest`,
        json: { value: "{{{PARTICLE_EVENT_VALUE}}}" },
      },
    });
    expect(hook.ok).toBe(true);
    await json(`${url}/v1/devices/events`, {
      method: "POST",
      token,
      body: { name: "meter/1", data: "17", private: true },
    });
    // The first attempt fails (connection refused) and is rescheduled; then the server stops.
    await first.waitFor(
      /"msg":"webhook attempt"[^\n]*"settle":"retry"|"settle":"retry"[^\n]*"msg":"webhook attempt"/,
    );
    expect(await stop(first.child)).toBe(0);

    const bodies: string[] = [];
    let arrived!: () => void;
    const delivered = new Promise<void>((resolve) => (arrived = resolve));
    const receiver = createServer((request, response) => {
      let body = "";
      request.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
      request.on("end", () => {
        bodies.push(body);
        response.end("ok");
        arrived();
      });
    });
    await listen(receiver, port);
    const second = serve(dataDir);
    try {
      const url2 = await second.waitFor(/listening on (http:\/\/\S+)/);
      await delivered;
      expect(JSON.parse(bodies[0] ?? "")).toMatchObject({ event: "meter/1", data: "17", value: "17" });
      const settled = async () =>
        (await json(`${url2}/v1/webhooks/${hook.id}/deliveries`, { token })).deliveries[0];
      let entry = await settled();
      while (entry.status === "pending") {
        await second.waitFor(/"settle":"succeeded"/);
        entry = await settled();
      }
      expect(entry.status).toBe("succeeded");
      expect(entry.log.length).toBeGreaterThanOrEqual(2);
      expect(entry.log[0]).toMatchObject({ status_code: null, error: expect.stringMatching(/ECONNREFUSED/) });
      expect(entry.log.at(-1)).toMatchObject({ status_code: 200 });
      expect(bodies).toHaveLength(1);
    } finally {
      await stop(second.child);
      await new Promise((resolve) => receiver.close(resolve));
    }
  });
});
