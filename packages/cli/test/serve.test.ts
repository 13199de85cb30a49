import { spawn } from "node:child_process";
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

import { serveArgs } from "./process.js";

const ENTRY = fileURLToPath(new URL("../src/run.ts", import.meta.url));

/** Runs `roost …` from source in a child process (tsx, with the workspace's source export condition). */
function roost(args: string[]): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, ["--conditions=roost-source", "--import", "tsx", ENTRY, ...args], {
    env: { ...process.env, ROOST_DATABASE_URL: "", NO_COLOR: "1" },
  });
}

/** Resolves with the URL once the server prints its ready line. */
function readyUrl(child: ChildProcessWithoutNullStreams): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(out);
      if (match?.[1]) resolve(match[1]);
    });
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
    child.on("exit", (code) =>
      reject(new Error(`roost exited with ${code} before it was ready: ${out}${err}`)),
    );
  });
}

function exited(
  child: ChildProcessWithoutNullStreams,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => child.on("exit", (code) => resolve({ code, stdout, stderr })));
}

// Each test starts `roost` processes (about a second each under tsx); a loaded CI machine needs more time.
describe("roost serve", { timeout: 120_000 }, () => {
  const dataDir = mkdtempSync(join(tmpdir(), "roost-serve-"));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it("prints its URL when ready, serves the API, keeps data in --data and stops on SIGTERM", async () => {
    const child = roost(
      serveArgs(dataDir, ["--allow-signup", "--open-device-registration", "--log-level", "silent"]),
    );
    const done = exited(child);
    const url = await readyUrl(child);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const signup = await fetch(`${url}/v1/users`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username: "keeper@example.com", password: "long enough password" }),
    });
    expect(signup.status).toBe(200);
    expect(existsSync(join(dataDir, "roost.sqlite"))).toBe(true);
    child.kill("SIGTERM");
    const result = await done;
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("Received SIGTERM, stopping");

    // A second start on the same folder finds the same user: the login works.
    const again = roost(serveArgs(dataDir, ["--log-level", "silent"]));
    const againDone = exited(again);
    const url2 = await readyUrl(again);
    const login = await fetch(`${url2}/oauth/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "grant_type=password&username=keeper%40example.com&password=long+enough+password&client_id=particle&client_secret=particle",
    });
    expect(login.status).toBe(200);
    // Sign-up is closed without --allow-signup.
    const closed = await fetch(`${url2}/v1/users`, {
      method: "POST",
      body: "username=x%40y.z&password=12345678",
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    expect(closed.status).toBe(403);
    again.kill("SIGINT");
    expect((await againDone).code).toBe(0);
  });

  it("refuses a bad --port with a clear message and exit code 1", async () => {
    const result = await exited(roost(["serve", "--port", "http"]));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("port must be an integer from 0 to 65535");
  });
});
