/**
 * The SoftAP command set: request and response layouts declared as schema values (types inferred from them),
 * the device's validation of request bodies, and its hand-built replies. Shared by the TCP and HTTP transports,
 * which carry the same JSON.
 * @see spec/device-protocols.md A.4, A.7
 */
import { MalformedFrameError } from "../errors.js";
import { readJsonMembers } from "./json-members.js";

/** The commands a Photon/P1 answers, in the order of the firmware's dispatcher. @see spec A.4 */
export const SOFTAP_COMMANDS = [
  "version",
  "device-id",
  "scan-ap",
  "configure-ap",
  "connect-ap",
  "public-key",
  "set",
] as const;

/** A SoftAP command name. */
export type SoftApCommand = (typeof SOFTAP_COMMANDS)[number];

const COMMAND_SET = new Set<string>(SOFTAP_COMMANDS);

/** True for the seven names the device answers; any other name (even `ant-internal`) gets no reply. @see spec A.2 */
export function isSoftApCommand(name: string): name is SoftApCommand {
  return COMMAND_SET.has(name);
}

/** The value of `v` in the `version` reply: 2 in every tag from 0.4.9 to 3.3.1. @see spec A.4 */
export const SOFTAP_PROTOCOL_VERSION = 2;

/** The `r` values of the replies. @see spec A.4, A.7 */
export const SOFTAP_RESULT_CODES = {
  /** Success. */
  OK: 0,
  /** `public-key`: the device has no key. */
  NO_PUBLIC_KEY: 1,
  /** `set`: a key other than `cc`, or an empty value. */
  SET_REJECTED: -1,
  /**
   * `configure-ap`: RSA decryption of `pwd` or `ek` failed. The firmware returns `-abs(err)` of the WICED/PolarSSL
   * `rsa_pkcs1_decrypt` error; this is its invalid-padding code, -0x4100 [inferred].
   */
  DECRYPT_FAILED: -0x4100,
} as const;

// --- requests ---------------------------------------------------------------------------------------------

/**
 * Request layouts: each key with the jsmn token type the firmware demands (`primitive` = number, true, false
 * or null; `string`). Any other key, or a value of another type, makes the device reject the whole body.
 * `connect-ap` is listed for clients only: the device never parses it (its `idx` is a firmware "todo").
 * @see spec/device-protocols.md A.4 (configure-ap key list, set, connect-ap)
 */
export const SOFTAP_REQUEST_FIELDS = {
  "configure-ap": {
    idx: "primitive",
    ssid: "string",
    pwd: "string",
    ch: "primitive",
    sec: "primitive",
    eap: "primitive",
    oi: "string",
    ii: "string",
    crt: "string",
    ek: "string",
    key: "string",
    ca: "string",
  },
  "connect-ap": { idx: "primitive" },
  set: { k: "string", v: "string" },
} as const;

/** The commands whose body the device reads and validates; every other body is ignored unread. @see spec A.4 */
export const SOFTAP_PARSED_REQUESTS: readonly SoftApCommand[] = ["configure-ap", "set"];

type RequestFieldType = "primitive" | "string";
type RequestFields = Readonly<Record<string, RequestFieldType>>;
type RequestFieldValue<T> = T extends "string" ? string : number;
type RequestBodyOf<F> = { -readonly [K in keyof F]?: RequestFieldValue<F[K]> };
type RequestSchemas = typeof SOFTAP_REQUEST_FIELDS;

/** The JSON body of each command's request, inferred from {@link SOFTAP_REQUEST_FIELDS}; `{}` for body-less ones. */
export type SoftApRequestBodies = {
  [C in SoftApCommand]: C extends keyof RequestSchemas
    ? RequestBodyOf<RequestSchemas[C]>
    : Record<string, never>;
};

/**
 * `configure-ap` body: `ssid`; `pwd`, the RSA-encrypted password as hex; `sec`, a WICED security value; `ch`;
 * and for enterprise networks `eap`, identities `oi`/`ii`, PEM certificates `crt`/`ca`, and `ek`/`key` (the
 * RSA-encrypted AES key+IV and the AES-encrypted private key, both hex). `idx` is parsed and ignored.
 * @see spec/device-protocols.md A.4, A.5, A.6
 */
export type ConfigureApRequest = SoftApRequestBodies["configure-ap"];

/** `connect-ap` body as clients send it (`{"idx":0}`); the device ignores it. @see spec A.4 */
export type ConnectApRequest = SoftApRequestBodies["connect-ap"];

/** `set` body: key `k` (only `cc`, the claim code, is supported) and value `v`. @see spec A.4 */
export type SetRequest = SoftApRequestBodies["set"];

function requestFields(command: SoftApCommand): RequestFields | undefined {
  return (SOFTAP_REQUEST_FIELDS as Partial<Record<SoftApCommand, RequestFields>>)[command];
}

/**
 * Client side: the JSON body of a request, keys in schema order, or undefined for commands sent without one.
 * @see spec/device-protocols.md A.4
 */
export function encodeSoftApRequestBody<C extends SoftApCommand>(
  command: C,
  body: SoftApRequestBodies[C],
): string | undefined {
  const fields = requestFields(command);
  if (!fields) return undefined;
  const values = body as Record<string, unknown>;
  const ordered: Record<string, unknown> = {};
  for (const key of Object.keys(fields)) if (values[key] !== undefined) ordered[key] = values[key];
  return JSON.stringify(ordered);
}

/**
 * Device side: validates a request body as the firmware does and returns its fields. Bodies of commands the
 * device does not parse are ignored (`{}`), whatever they hold. For `configure-ap` and `set`:
 * - the body must be UTF-8 JSON (the device's behaviour on broken JSON is undefined; here it is a rejection);
 * - a top-level array is rejected, a top-level string, number, boolean or null reads as `{}` (A.4 jsmn loop);
 * - every key must be in the command's list and every value of the listed type, else the body is rejected;
 * - primitive values become `atoi` of their literal (`6.9` → 6, `null` → 0, clamped to int32);
 * - strings are JSON-decoded (the device keeps escape sequences verbatim; no official client sends any in
 *   these fields).
 * A rejected body gets no reply JSON on the device: TCP clients see only the preamble, HTTP an empty 200.
 * @throws MalformedFrameError when the device would reject the body.
 * @see spec/device-protocols.md A.4, A.7
 */
export function parseSoftApRequestBody<C extends SoftApCommand>(
  command: C,
  body: Uint8Array,
): SoftApRequestBodies[C] {
  const fields = requestFields(command);
  if (!fields || !SOFTAP_PARSED_REQUESTS.includes(command)) return {};
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(body);
  } catch {
    throw new MalformedFrameError(`${command} body is not UTF-8`);
  }
  const result: Record<string, string | number> = {};
  for (const member of readJsonMembers(text)) {
    if (!Object.hasOwn(fields, member.key))
      throw new MalformedFrameError(`${command} has no key "${member.key}"`);
    const expected = fields[member.key];
    if (member.type !== expected) {
      throw new MalformedFrameError(
        `${command} key "${member.key}" must be a JSON ${expected}, not ${member.type}`,
      );
    }
    result[member.key] = expected === "string" ? member.text : atoi(member.text);
  }
  return result as SoftApRequestBodies[C];
}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
const LEADING_INTEGER = /^[ \t\n\v\f\r]*([+-]?\d+)/;

/** C `atoi` as newlib does it on a 32-bit target: leading decimal digits, 0 when none, saturated to int32. */
function atoi(text: string): number {
  const digits = LEADING_INTEGER.exec(text)?.[1];
  if (digits === undefined) return 0;
  const value = Math.min(INT32_MAX, Math.max(INT32_MIN, Number(digits)));
  return value === 0 ? 0 : value; // no -0
}

/** Bytes of the device's `set` key buffer that survive: `char key[MAX_KEY_LEN + 1]`, NUL written at index 2. */
export const SOFTAP_SET_KEY_MAX_LENGTH = 3 - 1;

/** Bytes of a `set` value that survive: copied into 65 bytes with the NUL at index 63. @see spec A.4 (set) */
export const SOFTAP_SET_VALUE_MAX_LENGTH = 64 - 1;

/** The only `set` key the device supports: the claim code. @see spec A.4 (set) */
export const SOFTAP_CLAIM_CODE_KEY = "cc";

/**
 * Applies the device's `set` rules and returns the claim code to store, or undefined when the reply is
 * `r = -1` (another key, or an empty key or value). Key and value are cut as the firmware's buffers cut
 * them, by UTF-8 bytes: the key to 2 (so `ccx` also sets the claim code), the value to 63.
 * @see spec/device-protocols.md A.4 (set)
 */
export function resolveSetRequest(request: SetRequest): string | undefined {
  const key = truncateUtf8(request.k ?? "", SOFTAP_SET_KEY_MAX_LENGTH);
  const value = truncateUtf8(request.v ?? "", SOFTAP_SET_VALUE_MAX_LENGTH);
  return key === SOFTAP_CLAIM_CODE_KEY && value !== "" ? value : undefined;
}

function truncateUtf8(text: string, maxBytes: number): string {
  const bytes = new TextEncoder().encode(text);
  return bytes.length <= maxBytes ? text : new TextDecoder().decode(bytes.subarray(0, maxBytes));
}

// --- responses --------------------------------------------------------------------------------------------

/**
 * Reply layouts in the fixed key order the device writes: `int` (decimal), `string` (quoted, never escaped),
 * `string?` (left out when absent), `flag` (the string `"0"` or `"1"`), `scans` (array of scan entries).
 * @see spec/device-protocols.md A.4 (response column)
 */
export const SOFTAP_RESPONSE_FIELDS = {
  version: { v: "int" },
  "device-id": { id: "string", c: "flag" },
  "scan-ap": { scans: "scans" },
  "configure-ap": { r: "int" },
  "connect-ap": { r: "int" },
  "public-key": { b: "string?", r: "int" },
  set: { r: "int" },
} as const;

/**
 * One `scan-ap` entry: `rssi` in dBm, `sec` a WICED security value, `ch` the channel, `mdr` the maximum data
 * rate in kbit/s. There is no `r`.
 * @see spec/device-protocols.md A.4 (scan-ap), A.5
 */
export const SOFTAP_SCAN_ENTRY_FIELDS = {
  ssid: "string",
  rssi: "int",
  sec: "int",
  ch: "int",
  mdr: "int",
} as const;

type ResponseFieldKind = "int" | "string" | "string?" | "flag" | "scans";
type ResponseFields = Readonly<Record<string, ResponseFieldKind>>;
type ResponseFieldValue<K> = K extends "int"
  ? number
  : K extends "string" | "string?"
    ? string
    : K extends "flag"
      ? "0" | "1"
      : K extends "scans"
        ? SoftApScanEntry[]
        : never;
type ResponseOf<F> = {
  -readonly [K in keyof F as F[K] extends "string?" ? never : K]: ResponseFieldValue<F[K]>;
} & { -readonly [K in keyof F as F[K] extends "string?" ? K : never]?: ResponseFieldValue<F[K]> };

/** A network in the `scan-ap` reply, inferred from {@link SOFTAP_SCAN_ENTRY_FIELDS}. */
export type SoftApScanEntry = {
  -readonly [K in keyof typeof SOFTAP_SCAN_ENTRY_FIELDS]: ResponseFieldValue<
    (typeof SOFTAP_SCAN_ENTRY_FIELDS)[K]
  >;
};

/** The reply of each command, inferred from {@link SOFTAP_RESPONSE_FIELDS}. */
export type SoftApResponses = { [C in SoftApCommand]: ResponseOf<(typeof SOFTAP_RESPONSE_FIELDS)[C]> };

const INT32_RANGE = { min: INT32_MIN, max: INT32_MAX };

/**
 * Device side: writes a reply exactly as the firmware builds it by hand: keys in fixed order, no whitespace,
 * string values copied without escaping (so an SSID holding `"` yields invalid JSON, as on a real device), scan
 * entries with an empty SSID skipped.
 * @throws MalformedFrameError when a required field is missing or an `int` is not an int32.
 * @see spec/device-protocols.md A.4
 */
export function encodeSoftApResponseBody<C extends SoftApCommand>(
  command: C,
  response: SoftApResponses[C],
): string {
  return writeObject(SOFTAP_RESPONSE_FIELDS[command], response);
}

function writeObject(fields: ResponseFields, values: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const [key, kind] of Object.entries(fields)) {
    const value = values[key];
    if (value === undefined && kind === "string?") continue;
    parts.push(`"${key}":${writeValue(key, kind, value)}`);
  }
  return `{${parts.join(",")}}`;
}

function writeValue(key: string, kind: ResponseFieldKind, value: unknown): string {
  switch (kind) {
    case "int":
      if (
        !Number.isInteger(value) ||
        (value as number) < INT32_RANGE.min ||
        (value as number) > INT32_RANGE.max
      ) {
        throw new MalformedFrameError(`reply field "${key}" must be an int32`);
      }
      return String(value);
    case "string":
    case "string?":
    case "flag":
      if (typeof value !== "string") throw new MalformedFrameError(`reply field "${key}" must be a string`);
      return `"${value}"`;
    case "scans":
      if (!Array.isArray(value)) throw new MalformedFrameError(`reply field "${key}" must be an array`);
      return `[${(value as Record<string, unknown>[])
        .filter((entry) => entry.ssid !== "")
        .map((entry) => writeObject(SOFTAP_SCAN_ENTRY_FIELDS, entry))
        .join(",")}]`;
  }
}

/**
 * Client side: parses a reply and checks each schema field's type; unknown keys are dropped. Works for both
 * transports (strip the TCP preamble first with `decodeSoftApReply`).
 * @throws MalformedFrameError when the text is not a JSON object of the command's layout.
 * @see spec/device-protocols.md A.4
 */
export function decodeSoftApResponseBody<C extends SoftApCommand>(
  command: C,
  json: string,
): SoftApResponses[C] {
  let root: unknown;
  try {
    root = JSON.parse(json);
  } catch {
    throw new MalformedFrameError(`${command} reply is not valid JSON`);
  }
  return readObject(command, SOFTAP_RESPONSE_FIELDS[command], root) as SoftApResponses[C];
}

function readObject(where: string, fields: ResponseFields, input: unknown): Record<string, unknown> {
  if (input === null || typeof input !== "object" || Array.isArray(input)) {
    throw new MalformedFrameError(`${where} reply is not a JSON object`);
  }
  const source = input as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [key, kind] of Object.entries(fields)) {
    const value = source[key];
    if (value === undefined && kind === "string?") continue;
    out[key] = readValue(`${where} "${key}"`, kind, value);
  }
  return out;
}

function readValue(where: string, kind: ResponseFieldKind, value: unknown): unknown {
  switch (kind) {
    case "int":
      if (!Number.isInteger(value)) throw new MalformedFrameError(`${where} must be an integer`);
      return value;
    case "string":
    case "string?":
      if (typeof value !== "string") throw new MalformedFrameError(`${where} must be a string`);
      return value;
    case "flag":
      if (value !== "0" && value !== "1") throw new MalformedFrameError(`${where} must be "0" or "1"`);
      return value;
    case "scans":
      if (!Array.isArray(value)) throw new MalformedFrameError(`${where} must be an array`);
      return value.map((entry) => readObject(`${where} entry`, SOFTAP_SCAN_ENTRY_FIELDS, entry));
  }
}
