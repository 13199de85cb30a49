import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";

import { createApiClient, openEventStream } from "@roost/client";
import type { ApiClient } from "@roost/client";

/** What `roost login` remembers: the cloud and a token for it. */
export interface SavedSession {
  cloud: string;
  token: string;
  username?: string;
}

/** Where the session is kept: `$ROOST_CONFIG`, else `~/.config/roost/session.json`. */
export function sessionPath(env: NodeJS.ProcessEnv): string {
  return env.ROOST_CONFIG ?? join(homedir(), ".config", "roost", "session.json");
}

/** The saved session, if any. */
export function loadSession(path: string): SavedSession | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as SavedSession;
  } catch {
    return undefined;
  }
}

/** Saves the session readable by its owner only (it holds a token). */
export function saveSession(path: string, session: SavedSession): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(session, null, 2)}\n`, { mode: 0o600 });
}

/** The cloud and token for a command: flags first, then the saved session. */
export function resolveSession(
  options: { cloud?: string | undefined; token?: string | undefined },
  path: string,
): SavedSession {
  const saved = loadSession(path);
  const cloud = options.cloud ?? saved?.cloud;
  const token = options.token ?? (options.cloud && saved?.cloud !== options.cloud ? undefined : saved?.token);
  if (!cloud) throw new Error("no cloud given: pass --cloud URL or run `roost login` first");
  if (!token)
    throw new Error("not logged in: pass --token or run `roost login --cloud URL --username … --password …`");
  return { cloud, token };
}

/** `roost login`: the password grant, then the token is saved. */
export async function login(
  options: { cloud: string; username: string; password: string; path: string },
  print: (line: string) => void,
): Promise<SavedSession> {
  const tokens = await createApiClient({ baseUrl: options.cloud }).login({
    username: options.username,
    password: options.password,
  });
  const session = { cloud: options.cloud, token: tokens.access_token, username: options.username };
  saveSession(options.path, session);
  print(`Logged in to ${options.cloud} as ${options.username} (session saved in ${options.path})`);
  return session;
}

/** `roost claim-code`: a claim code for the caller (or, with a customer token, for its product). */
export async function claimCode(
  options: { client: ApiClient; product?: string | undefined },
  print: (line: string) => void,
): Promise<void> {
  const code = await options.client.createClaimCode(
    options.product === undefined ? {} : { product: options.product },
  );
  print(`claim code: ${code.claim_code}`);
  print(`claim id:   ${code.claim_id} (roost claims show ${code.claim_id})`);
  print(`your devices: ${code.device_ids.length === 0 ? "none yet" : code.device_ids.join(", ")}`);
}

/** `roost devices`: the caller's devices, one line each. */
export async function listDevices(
  options: { client: ApiClient },
  print: (line: string) => void,
): Promise<void> {
  const devices = await options.client.listDevices();
  if (devices.length === 0) print("No devices.");
  for (const device of devices)
    print(
      `${device.id}  ${(device.name ?? "(no name)").padEnd(20)}  ${device.online ? "online " : "offline"}  ${device.product_id === device.platform_id ? "" : `product ${device.product_id}`}`.trimEnd(),
    );
}

/** `roost claims show ID`: a claim code's status and timeline. */
export async function showClaim(
  options: { client: ApiClient; claimId: string },
  print: (line: string) => void,
): Promise<void> {
  const status = await options.client.getClaimStatus(options.claimId);
  print(
    `claim ${status.claim_id}: ${status.status}${status.device_id ? ` (device ${status.device_id})` : ""}`,
  );
  print(
    `created ${status.created_at}, expires ${status.expires_at}${status.claimed_at ? `, claimed ${status.claimed_at}` : ""}`,
  );
  if (status.attempts.length === 0) print("no device has presented this code yet");
  for (const attempt of status.attempts)
    print(`  ${attempt.at}  ${attempt.device_id}  ${attempt.outcome.padEnd(8)}  ${attempt.reason}`);
}

/** `roost events [prefix]`: prints the caller's events until stopped (or until `max` arrived). */
export async function watchEvents(
  options: {
    cloud: string;
    token: string;
    prefix?: string | undefined;
    device?: string | undefined;
    max?: number | undefined;
    signal?: AbortSignal;
    /** Called once the stream is open: events published from then on are seen. */
    onOpen?: () => void;
  },
  print: (line: string) => void,
): Promise<void> {
  let seen = 0;
  const stream = await openEventStream({
    baseUrl: options.cloud,
    accessToken: options.token,
    path: options.device ? `/v1/devices/${encodeURIComponent(options.device)}/events` : "/v1/devices/events",
    prefix: options.prefix,
    onEvent: (event) => {
      print(JSON.stringify(event));
      seen += 1;
      if (options.max !== undefined && seen >= options.max) stream.close();
    },
  });
  options.signal?.addEventListener("abort", () => stream.close());
  options.onOpen?.();
  await stream.done;
}
