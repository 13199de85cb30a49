/**
 * The whole setup flow as one straight-line function (STYLE C.16): get a claim code while online, join the
 * device's network, decide about ownership, give the device the code and the Wi-Fi credentials, switch back,
 * verify. The order matters because the phone has no Internet while it is joined to the device, and does
 * not know the device ID before it joins (seeds/, DESIGN.md "The problem in one paragraph").
 * @see spec/cloud-api.md §7, spec/device-protocols.md Part A
 */
import type { ApiClient, ClaimCodeResponse } from "@roost/client";
import { createApiClient, isApiError } from "@roost/client";
import { DEFAULT_SOFTAP_SSID_PREFIX, isEnterpriseSecurity, WIFI_SECURITY } from "@roost/protocol";

import { isNetworkFailure, SetupError, toSetupError } from "./errors.js";
import { createNoopNetwork } from "./network.js";
import type { NetworkSwitcher } from "./network.js";
import { createSoftApClient } from "./softap.js";
import type { SoftApClient, SoftApDeviceInfo, WifiNetwork } from "./softap.js";
import type {
  OwnershipDecision,
  SetupMode,
  SetupOptions,
  SetupProgress,
  SetupResult,
  SetupTimeouts,
  WifiCredentials,
} from "./types.js";
import { DEFAULT_SETUP_TIMEOUTS } from "./types.js";
import { throwIfAborted, verifySetup } from "./verify.js";

/** Longest password sent: iOS truncates at 64 characters; WPA takes 8–63 characters or 64 hex digits. */
const MAX_WIFI_PASSWORD_LENGTH = 64;

/**
 * The ownership rules of the official SDKs, given the device's `device-id` answer and the account's
 * `device_ids` (spec §7.1 "Ownership decision during discovery"): unclaimed → send the code; claimed and
 * ours → no code; claimed by someone else → ask (`undefined` here). In setup-only mode: nothing.
 */
export function decideOwnership(options: {
  device: SoftApDeviceInfo;
  deviceIds: readonly string[] | undefined;
}): OwnershipDecision | undefined {
  const { device, deviceIds } = options;
  if (deviceIds === undefined) return "skip";
  if (!device.claimed) return "send-code";
  return deviceIds.some((id) => id.toLowerCase() === device.id) ? "already-owned" : undefined;
}

/** A token for the mode and the claim code it creates. @see spec/cloud-api.md §3.1, §7.1 */
async function obtainClaimCode(
  cloud: ApiClient,
  mode: Exclude<SetupMode, { kind: "setup-only" }>,
): Promise<{ accessToken: string; claim: ClaimCodeResponse }> {
  let accessToken: string;
  if (mode.kind === "product") {
    try {
      const token = mode.signUp
        ? await cloud.createCustomer({
            product: mode.product,
            clientId: mode.clientId,
            clientSecret: mode.clientSecret,
            email: mode.email,
            password: mode.password,
          })
        : await cloud.login({
            username: mode.email,
            password: mode.password,
            clientId: mode.clientId,
            clientSecret: mode.clientSecret,
          });
      accessToken = token.access_token;
    } catch (error) {
      if (isApiError(error) && error.error === "invalid_client")
        throw new SetupError({
          code: "INVALID_OPTIONS",
          summary: `The cloud refused the product's OAuth client "${mode.clientId}" (wrong id or secret, or not a client of product ${mode.product}).`,
          details: { status: error.status },
          cause: error,
        });
      if (isApiError(error) && error.error === "invalid_grant")
        throw new SetupError({
          code: "NOT_AUTHENTICATED",
          summary: `The e-mail or password of customer "${mode.email}" is wrong.`,
          hint: "Check them and log in again, or sign up if this customer does not exist yet.",
          details: { status: error.status },
          cause: error,
        });
      throw error;
    }
  } else {
    accessToken = mode.accessToken;
  }
  const product = mode.kind === "user" ? undefined : mode.product;
  try {
    const claim = await cloud
      .withToken(accessToken)
      .createClaimCode(product === undefined ? {} : { product });
    return { accessToken, claim };
  } catch (error) {
    // The official apps read a 401 here as "you must be logged in as a customer of this product". @see §3.1
    if (isApiError(error) && (error.status === 401 || error.status === 403))
      throw new SetupError({
        code: "NOT_AUTHENTICATED",
        summary:
          product === undefined
            ? "The cloud did not accept the access token when asked for a claim code."
            : `The cloud did not accept the token as a customer of product ${product} when asked for a claim code.`,
        details: { status: error.status },
        cause: error,
      });
    throw error;
  }
}

/** A `security` option as the WICED value. */
function securityValue(security: WifiCredentials["security"]): number | undefined {
  if (security === undefined || typeof security === "number") return security;
  return WIFI_SECURITY[security];
}

/** The network to configure: the caller's choice, with security and channel from the scan. */
function resolveWifi(
  choice: WifiCredentials,
  networks: readonly WifiNetwork[],
): { ssid: string; password: string; security: number; channel: number } {
  const seen = networks.filter((network) => network.ssid === choice.ssid).sort((a, b) => b.rssi - a.rssi)[0];
  const security = securityValue(choice.security) ?? seen?.security;
  if (security === undefined) {
    const visible = [...new Set(networks.map((network) => network.ssid))];
    throw new SetupError({
      code: "WIFI_NETWORK_NOT_FOUND",
      summary: `The device does not see the Wi-Fi network "${choice.ssid}" (it sees ${visible.length > 0 ? visible.map((ssid) => `"${ssid}"`).join(", ") : "no network"}).`,
    });
  }
  if (isEnterpriseSecurity(security))
    throw new SetupError({
      code: "INVALID_OPTIONS",
      summary: `"${choice.ssid}" is a WPA Enterprise network, which this SDK cannot configure yet.`,
      hint: "Use a WPA/WPA2 Personal or open network.",
    });
  if (security !== WIFI_SECURITY.OPEN && choice.password === "")
    throw new SetupError({
      code: "INVALID_OPTIONS",
      summary: `The Wi-Fi network "${choice.ssid}" is secured but no password was given.`,
      hint: "Pass the network's password.",
    });
  if ([...choice.password].length > MAX_WIFI_PASSWORD_LENGTH)
    throw new SetupError({
      code: "INVALID_OPTIONS",
      summary: `The Wi-Fi password is longer than ${MAX_WIFI_PASSWORD_LENGTH} characters, which no Wi-Fi network accepts.`,
      hint: "Check the password.",
    });
  return { ssid: choice.ssid, password: choice.password, security, channel: seen?.channel ?? 0 };
}

/** Checks what can be checked before anything happens. */
function checkOptions(options: SetupOptions): void {
  const invalid = (summary: string) => new SetupError({ code: "INVALID_OPTIONS", summary });
  const { mode, wifi } = options;
  if (mode.kind !== "setup-only" && !options.cloudUrl)
    throw invalid("cloudUrl is required to claim a device.");
  if ((mode.kind === "user" || mode.kind === "two-legged") && !mode.accessToken)
    throw invalid(`The ${mode.kind} mode needs an accessToken.`);
  if (mode.kind === "product" && (!mode.clientId || !mode.clientSecret || !mode.email || !mode.password))
    throw invalid(
      "Product mode needs the product's clientId and clientSecret and the customer's email and password.",
    );
  if (!options.encryptPassword && (typeof wifi === "function" || wifi.password !== ""))
    throw invalid(
      "encryptPassword is required to send a Wi-Fi password (in Node, use encryptSoftApPassword from @roost/setup/node).",
    );
}

/** Calls the progress listener; a listener that throws must not break a half-done setup. */
function createEmitter(listener: SetupOptions["onProgress"]): (progress: SetupProgress) => void {
  return (progress) => {
    try {
      listener?.(progress);
    } catch {
      // Documented: listener errors are ignored.
    }
  };
}

/** The SoftAP part, on the device's network: returns what verification needs. */
async function configureDevice(options: {
  setup: SetupOptions;
  softap: SoftApClient;
  claim: ClaimCodeResponse | undefined;
  ssid: string | undefined;
  emit: (progress: SetupProgress) => void;
}): Promise<{ deviceId: string; decision: OwnershipDecision; ssid: string }> {
  const { setup, softap, claim, emit } = options;
  let device: SoftApDeviceInfo;
  try {
    device = await softap.deviceInfo();
  } catch (error) {
    const setupError = toSetupError(error);
    if (setupError.code !== "SOFTAP_UNREACHABLE") throw setupError;
    throw new SetupError({
      code: "DEVICE_NOT_FOUND",
      summary: `No device in listening mode answered${options.ssid ? ` on "${options.ssid}"` : ""}: ${setupError.summary}`,
      cause: error,
    });
  }
  const deviceId = device.id;
  emit({ step: "device-found", deviceId, claimed: device.claimed, ssid: options.ssid });
  throwIfAborted(setup.signal);

  let decision = decideOwnership({ device, deviceIds: claim?.device_ids });
  if (decision === undefined) {
    const takeOver = await (setup.onOwnedByOther ?? (() => false))(deviceId);
    if (!takeOver)
      throw new SetupError({
        code: "DEVICE_OWNED_BY_OTHER",
        summary: `Device ${deviceId} is already claimed by another account; setup stopped without changing it.`,
        details: { deviceId },
      });
    decision = "request-ownership";
  }
  emit({ step: "ownership", deviceId, decision });
  if (claim && (decision === "send-code" || decision === "request-ownership")) {
    await softap.setClaimCode(claim.claim_code);
    emit({ step: "claim-code-sent", deviceId });
  }

  const publicKey = await softap.publicKey();
  emit({ step: "public-key", deviceId });
  const networks = await softap.scan();
  emit({ step: "networks-scanned", networks });
  const wifi = resolveWifi(
    typeof setup.wifi === "function" ? await setup.wifi(networks) : setup.wifi,
    networks,
  );
  let encryptedPassword: string | undefined;
  if (wifi.security !== WIFI_SECURITY.OPEN) {
    if (!setup.encryptPassword)
      throw new SetupError({
        code: "INVALID_OPTIONS",
        summary: `encryptPassword is required for the secured network "${wifi.ssid}".`,
      });
    try {
      encryptedPassword = await setup.encryptPassword(publicKey, wifi.password);
    } catch (error) {
      throw new SetupError({
        code: "INVALID_OPTIONS",
        summary: `The injected encryptPassword failed: ${error instanceof Error ? error.message : String(error)}.`,
        cause: error,
      });
    }
  }
  throwIfAborted(setup.signal);
  await softap.configure({
    ssid: wifi.ssid,
    security: wifi.security,
    channel: wifi.channel,
    encryptedPassword,
  });
  emit({ step: "wifi-configured", ssid: wifi.ssid, security: wifi.security });
  await softap.connect();
  emit({ step: "device-connecting", ssid: wifi.ssid });
  return { deviceId, decision, ssid: wifi.ssid };
}

/** Runs `work` joined to the device's network, and always tries to return to the previous network. */
async function onDeviceNetwork<T>(options: {
  network: NetworkSwitcher;
  ssidPrefix: string;
  emit: (progress: SetupProgress) => void;
  work: (ssid: string | undefined) => Promise<T>;
}): Promise<T> {
  const { network, emit } = options;
  let result: T | undefined;
  let failure: unknown;
  let failed = false;
  try {
    const joined = await network.joinDeviceNetwork(options.ssidPrefix);
    result = await options.work(joined.ssid);
  } catch (error) {
    failed = true;
    failure = error;
  }
  emit({ step: "restoring-network" });
  try {
    await network.restore();
  } catch (error) {
    // The first error is the one that matters; a failed return is reported only when all else went well.
    if (!failed) {
      failed = true;
      failure = toSetupError(error);
    }
  }
  if (failed) throw failure;
  return result as T;
}

/**
 * Sets up one device in listening mode and, unless in setup-only mode, claims it and verifies the claim.
 * Reports each step through `onProgress`. Always tries to return to the previous network.
 * @throws SetupError, always (see {@link SETUP_ERROR_HINTS} for the codes); never anything else.
 * @see spec/cloud-api.md §7, spec/device-protocols.md Part A
 */
export async function runSetup(options: SetupOptions): Promise<SetupResult> {
  try {
    return await setUp(options);
  } catch (error) {
    throw toSetupError(error);
  }
}

async function setUp(options: SetupOptions): Promise<SetupResult> {
  checkOptions(options);
  const {
    mode,
    network = createNoopNetwork(),
    ssidPrefix = DEFAULT_SOFTAP_SSID_PREFIX,
    detectWrongPassword = true,
    signal,
  } = options;
  const timeouts: SetupTimeouts = { ...DEFAULT_SETUP_TIMEOUTS };
  for (const [name, value] of Object.entries(options.timeouts ?? {}) as [keyof SetupTimeouts, number][])
    if (value !== undefined) timeouts[name] = value;
  const cloudUrl = options.cloudUrl ?? "";
  const emit = createEmitter(options.onProgress);
  const softap = createSoftApClient(options.softap);
  throwIfAborted(signal);

  // 1. Online: a token and a claim code (with the account's device IDs), before the phone loses the Internet.
  let session: { accessToken: string; claim: ClaimCodeResponse } | undefined;
  if (mode.kind !== "setup-only") {
    emit({ step: "authenticating", mode: mode.kind });
    const cloud = createApiClient({
      baseUrl: cloudUrl,
      ...(options.fetch && { fetch: options.fetch }),
    });
    try {
      session = await obtainClaimCode(cloud, mode);
    } catch (error) {
      if (isNetworkFailure(error))
        throw new SetupError({
          code: "NO_INTERNET",
          summary: `The cloud at ${cloudUrl} could not be reached to get a claim code.`,
          cause: error,
        });
      throw error;
    }
    emit({
      step: "claim-code",
      claimId: session.claim.claim_id,
      deviceIds: session.claim.device_ids,
    });
  }
  throwIfAborted(signal);

  // 2. On the device's network: ownership, claim code, Wi-Fi credentials, connect.
  emit({ step: "joining-device-network", ssidPrefix });
  const configured = await onDeviceNetwork({
    network,
    ssidPrefix,
    emit,
    work: (ssid) => configureDevice({ setup: options, softap, claim: session?.claim, ssid, emit }),
  });
  const { deviceId, decision } = configured;
  const base = {
    deviceId,
    mode: mode.kind,
    ssid: configured.ssid,
    claimId: session?.claim.claim_id,
    accessToken: session?.accessToken,
  };
  if (!session) {
    const result: SetupResult = { ...base, ownership: "not-claimed", online: undefined };
    emit({ step: "done", result });
    return result;
  }

  // 3. Back online: the claim reaches a final state and the device is online in the owner's account.
  const codeSent = decision !== "already-owned";
  const outcome = await verifySetup({
    cloudUrl,
    fetch: options.fetch,
    accessToken: session.accessToken,
    deviceId,
    claimId: session.claim.claim_id,
    codeSent,
    timeouts,
    signal,
    emit,
  });
  if (outcome.verified) {
    const result: SetupResult = {
      ...base,
      ownership: codeSent ? "claimed" : "already-owned",
      online: outcome.online,
    };
    emit({ step: "done", result });
    return result;
  }

  // 4. Nothing in time. Only a device back in listening mode proves that it could not join the network.
  if (detectWrongPassword) {
    emit({ step: "checking-listening-mode", deviceId });
    const listening = await onDeviceNetwork({
      network,
      ssidPrefix,
      emit,
      work: async () => (await softap.deviceInfo()).id === deviceId,
    }).catch(() => false);
    if (listening)
      throw new SetupError({
        code: "WIFI_PASSWORD_WRONG",
        summary: `Device ${deviceId} could not join "${configured.ssid}" and is back in listening mode: the Wi-Fi password is most likely wrong.`,
        details: { deviceId, claimId: session.claim.claim_id },
      });
  }
  throw new SetupError({
    code: "CLAIM_TIMEOUT",
    summary: `Device ${deviceId} did not ${codeSent ? "claim itself and " : ""}come online within ${Math.round(timeouts.claimMs / 1000)} s.`,
    details: { deviceId, claimId: session.claim.claim_id },
  });
}
