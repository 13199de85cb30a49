import * as prompts from "@clack/prompts";

import { createApiClient, isApiError } from "@roost/client";
import type {
  SetupMode,
  SetupProgress,
  SetupResult,
  SoftApTransport,
  WifiCredentials,
  WifiNetwork,
} from "@roost/setup";
import { createHttpSoftApTransport, createNoopNetwork, isSetupError, runSetup } from "@roost/setup";
import { createNmcliNetwork, createTcpSoftApTransport, encryptSoftApPassword } from "@roost/setup/node";

import { loadSession, sessionPath } from "./session.js";

/** Flags of `roost setup`; whatever is missing is asked for (unless `yes`). */
export interface SetupCommandOptions {
  cloud?: string | undefined;
  token?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  product?: string | undefined;
  customerToken?: string | undefined;
  clientId?: string | undefined;
  clientSecret?: string | undefined;
  signUp?: boolean | undefined;
  softap?: string | undefined;
  ssid?: string | undefined;
  wifiPassword?: string | undefined;
  skipClaim?: boolean | undefined;
  nmcli?: boolean | undefined;
  yes?: boolean | undefined;
  /** `roost setup` answers "no" to taking over a device owned by someone else unless this is set. */
  takeOver?: boolean | undefined;
  claimTimeoutMs?: number | undefined;
}

/** How `roost setup` talks to a person: interactive prompts and a spinner, or plain lines for scripts. */
export interface SetupIo {
  interactive: boolean;
  print(line: string): void;
}

/** What a person reads for each step. */
function describe(progress: SetupProgress): string | undefined {
  switch (progress.step) {
    case "authenticating":
      return `Signing in (${progress.mode} mode)`;
    case "claim-code":
      return "Got a claim code from the cloud";
    case "joining-device-network":
      return `Joining the device's ${progress.ssidPrefix}-… network`;
    case "device-found":
      return `Found device ${progress.deviceId}${progress.claimed ? " (it says it is claimed)" : ""}`;
    case "claim-code-sent":
      return "Gave the device the claim code";
    case "networks-scanned":
      return `The device sees ${progress.networks.length} Wi-Fi network${progress.networks.length === 1 ? "" : "s"}`;
    case "wifi-configured":
      return `Gave the device the credentials of "${progress.ssid}"`;
    case "device-connecting":
      return `The device is joining "${progress.ssid}"`;
    case "restoring-network":
      return "Back on your own network";
    case "verifying":
      return `Waiting for the device to reach the cloud (up to ${Math.round(progress.timeoutMs / 1000)} s)`;
    case "claim-attempt":
      return progress.outcome === "claimed"
        ? "The cloud accepted the claim"
        : `The cloud refused the claim: ${progress.reason}`;
    case "device-online":
      return "The device is online";
    case "checking-listening-mode":
      return "Checking whether the device went back to listening mode";
    default:
      return undefined;
  }
}

/** Parses `tcp://HOST:PORT` or `http://HOST[:PORT]` into a SoftAP transport. @see spec/device-protocols.md A.1–A.3 */
export function softApTransport(address: string): { transport: SoftApTransport; host: string } {
  const url = new URL(address);
  if (url.protocol === "tcp:")
    return {
      transport: createTcpSoftApTransport({ host: url.hostname, port: Number(url.port || 5609) }),
      host: url.hostname,
    };
  if (url.protocol === "http:")
    return { transport: createHttpSoftApTransport({ baseUrl: url.toString() }), host: url.hostname };
  throw new Error(`--softap must be tcp://HOST:PORT or http://HOST[:PORT], got "${address}"`);
}

class Missing extends Error {}

/** A flag is missing or two flags contradict each other: reported before anything is contacted. */
export class SetupUsageError extends Error {}

/**
 * Checks the flags before any network or device is touched: contradictions always, and without prompts
 * (`--yes`, or no terminal) everything the run will need. Only the `roost login` session can stand in for
 * credentials, and only for the cloud it was made for.
 */
export function checkSetupFlags(
  options: SetupCommandOptions,
  context: { interactive: boolean; savedCloud: string | undefined },
): void {
  const both = (a: string, b: string) => new SetupUsageError(`${a} cannot be used with ${b}`);
  if (options.token && options.password !== undefined) throw both("--password", "--token");
  if (options.token && options.username !== undefined) throw both("--username", "--token");
  if (options.customerToken && options.token) throw both("--customer-token", "--token");
  if (options.customerToken && (options.password !== undefined || options.username !== undefined))
    throw both("--customer-token", "--username/--password");
  if (options.customerToken && !options.product)
    throw new SetupUsageError("--customer-token needs --product (the product the customer belongs to)");
  if (options.clientId && !options.product) throw new SetupUsageError("--client-id needs --product");
  if (options.skipClaim && (options.token || options.customerToken || options.clientId))
    throw new SetupUsageError("--skip-claim claims nothing: leave out the account flags");
  if (context.interactive) return;
  const missing: string[] = [];
  const cloud = options.cloud ?? context.savedCloud;
  if (!cloud) missing.push("--cloud");
  if (!options.skipClaim && !options.customerToken && !options.token) {
    const productMode = Boolean(options.product && options.clientId);
    const sessionCovers = !productMode && !options.username && context.savedCloud === cloud;
    if (!sessionCovers) {
      if (!options.username) missing.push(productMode ? "--username" : "--username (or --token)");
      if (options.password === undefined) missing.push("--password");
    }
  }
  if (!options.softap) missing.push("--softap");
  if (!options.ssid) missing.push("--ssid");
  // An open network is given as --wifi-password "" (whether it is open is known only after a scan).
  if (options.wifiPassword === undefined) missing.push("--wifi-password");
  if (missing.length > 0)
    throw new SetupUsageError(
      `missing ${missing.join(", ")} (needed with --yes or without a terminal; run roost setup in a terminal to be asked)`,
    );
}

async function ask(
  io: SetupIo,
  options: { flag: string; message: string; secret?: boolean; initial?: string },
): Promise<string> {
  if (!io.interactive)
    throw new Missing(`missing ${options.flag} (or run roost setup in a terminal to be asked)`);
  const answer = options.secret
    ? await prompts.password({ message: options.message })
    : await prompts.text({ message: options.message, initialValue: options.initial });
  if (prompts.isCancel(answer)) throw new Missing("cancelled");
  return answer;
}

/** Works out the setup mode from the flags, the saved `roost login` session and (interactively) questions. */
async function chooseMode(
  options: SetupCommandOptions,
  io: SetupIo,
  savedSession: { cloud: string; token: string } | undefined,
): Promise<SetupMode> {
  if (options.skipClaim) return { kind: "setup-only" };
  if (options.customerToken) {
    if (!options.product)
      throw new Missing("--customer-token needs --product (the product the customer belongs to)");
    return { kind: "two-legged", product: options.product, accessToken: options.customerToken };
  }
  if (options.product && options.clientId) {
    return {
      kind: "product",
      product: options.product,
      clientId: options.clientId,
      clientSecret: options.clientSecret ?? "",
      email: options.username ?? (await ask(io, { flag: "--username", message: "Customer e-mail" })),
      password:
        options.password ??
        (await ask(io, { flag: "--password", message: "Customer password", secret: true })),
      signUp: options.signUp === true,
    };
  }
  if (options.token) return { kind: "user", accessToken: options.token };
  if (!options.username && savedSession && savedSession.cloud === options.cloud)
    return { kind: "user", accessToken: savedSession.token };
  const username =
    options.username ??
    (await ask(io, { flag: "--username (or --token)", message: "Your Roost user name (e-mail)" }));
  const password =
    options.password ?? (await ask(io, { flag: "--password", message: "Password", secret: true }));
  try {
    const tokens = await createApiClient({ baseUrl: options.cloud ?? "" }).login({ username, password });
    return { kind: "user", accessToken: tokens.access_token };
  } catch (error) {
    throw new Missing(
      `could not sign in as ${username}: ${isApiError(error) ? error.message : String(error)}`,
    );
  }
}

/**
 * `roost setup`: sets up and claims one device over SoftAP with the setup SDK, asking for what the flags do
 * not give. Returns the process exit code: 0 when the device is set up (and claimed), 2 for a usage error
 * (found before anything is contacted), 1 otherwise.
 */
export async function setupCommand(
  options: SetupCommandOptions,
  io: SetupIo,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const interactive = io.interactive && options.yes !== true;
  const ioUsed: SetupIo = { ...io, interactive };
  if (interactive) prompts.intro("roost setup");
  const spinner = interactive ? prompts.spinner() : undefined;
  let spinning = false;
  const step = (line: string) => {
    if (spinner) {
      if (spinning) spinner.message(line);
      else spinner.start(line);
      spinning = true;
    } else {
      io.print(`- ${line}`);
    }
  };
  const saved = loadSession(sessionPath(env));
  try {
    checkSetupFlags(options, { interactive, savedCloud: saved?.cloud });
  } catch (error) {
    if (!(error instanceof SetupUsageError)) throw error;
    if (interactive) prompts.cancel(`Usage error: ${error.message}`);
    else io.print(`Usage error: ${error.message}`);
    return 2;
  }
  try {
    const cloud =
      options.cloud ??
      saved?.cloud ??
      (await ask(ioUsed, { flag: "--cloud", message: "Cloud URL", initial: "http://127.0.0.1:8080" }));
    const mode = await chooseMode({ ...options, cloud }, ioUsed, saved);
    const softapAddress =
      options.softap ??
      (await ask(ioUsed, {
        flag: "--softap",
        message: "Device SoftAP address",
        initial: "tcp://192.168.0.1:5609",
      }));
    const { transport } = softApTransport(softapAddress);
    const network = options.nmcli ? createNmcliNetwork() : createNoopNetwork();
    const wifi = async (networks: readonly WifiNetwork[]): Promise<WifiCredentials> => {
      let ssid = options.ssid;
      if (!ssid) {
        if (!interactive)
          throw new Missing(
            `missing --ssid; the device sees: ${networks.map((entry) => entry.ssid).join(", ")}`,
          );
        if (spinning) spinner?.stop("Scanned");
        spinning = false;
        const choice = await prompts.select({
          message: "Wi-Fi network for the device",
          options: networks.map((entry) => ({
            value: entry.ssid,
            label: entry.ssid,
            hint: `${entry.rssi} dBm`,
          })),
        });
        if (prompts.isCancel(choice)) throw new Missing("cancelled");
        ssid = choice;
      }
      const security = networks.find((entry) => entry.ssid === ssid)?.security;
      const password =
        security === 0
          ? ""
          : (options.wifiPassword ??
            (await ask(ioUsed, { flag: "--wifi-password", message: `Password of "${ssid}"`, secret: true })));
      return { ssid, password };
    };
    const onOwnedByOther = async (deviceId: string): Promise<boolean> => {
      if (options.takeOver !== undefined) return options.takeOver;
      if (!interactive) return false;
      if (spinning) spinner?.stop("Device found");
      spinning = false;
      const answer = await prompts.confirm({
        message: `Device ${deviceId} belongs to another account. Ask the cloud to give it to you?`,
        initialValue: false,
      });
      return answer === true;
    };
    const result: SetupResult = await runSetup({
      cloudUrl: cloud,
      mode,
      softap: transport,
      network,
      wifi,
      encryptPassword: encryptSoftApPassword,
      onOwnedByOther,
      onProgress: (progress) => {
        const line = describe(progress);
        if (line) step(line);
      },
      ...(options.claimTimeoutMs ? { timeouts: { claimMs: options.claimTimeoutMs } } : {}),
    });
    const summary =
      result.ownership === "not-claimed"
        ? `Device ${result.deviceId} is on "${result.ssid}" (not claimed: --skip-claim)`
        : `Device ${result.deviceId} is ${result.ownership === "claimed" ? "claimed" : "already yours"} and ${result.online === false ? "not online yet" : "online"}`;
    if (spinner && spinning) spinner.stop(summary);
    if (interactive) prompts.outro("Done");
    else io.print(summary);
    return 0;
  } catch (error) {
    const message = isSetupError(error)
      ? `${error.code}: ${error.message}`
      : error instanceof Error
        ? error.message
        : String(error);
    if (spinner && spinning) spinner.error("Setup failed");
    if (interactive) prompts.cancel(message);
    else io.print(`Setup failed: ${message}`);
    return 1;
  }
}
