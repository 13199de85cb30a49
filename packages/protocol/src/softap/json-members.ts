/**
 * Reads the top-level members of a JSON request body the way the firmware's jsmn loop sees them: each key with
 * the jsmn token type of its value and, for primitives, the literal text (the device runs `atoi` on it).
 * Internal to the SoftAP codec.
 * @see spec/device-protocols.md A.4 (jsmn against a fixed key list)
 */
import { MalformedFrameError } from "../errors.js";

/** The jsmn token types a value can have. */
export type JsonTokenType = "primitive" | "string" | "object" | "array";

/** One top-level member of the request object. */
export interface JsonMember {
  /** The key, JSON-decoded. */
  key: string;
  /** The jsmn token type of the value. */
  type: JsonTokenType;
  /** For strings the decoded value; for primitives the literal text (`12`, `-1.5e3`, `null`, `true`). */
  text: string;
}

const WHITESPACE = new Set([" ", "\t", "\n", "\r"]);

/**
 * Parses `json` and returns its top-level members in order (duplicates kept: the device applies each in turn).
 * A top-level string, number, boolean or null gives no members: the firmware's loop does not check the type
 * of the first token and stops after it, so such a body reads as `{}`.
 * @throws MalformedFrameError when `json` is not valid JSON, or is an array: jsmn would then read the elements
 * as keys and values and run past the tokens it filled, which is undefined behaviour on the device.
 */
export function readJsonMembers(json: string): JsonMember[] {
  let root: unknown;
  try {
    root = JSON.parse(json);
  } catch {
    throw new MalformedFrameError("request body is not valid JSON");
  }
  if (Array.isArray(root)) throw new MalformedFrameError("request body is a JSON array");
  if (root === null || typeof root !== "object") return [];
  // The text is valid JSON with an object at the top, so a scanner only has to find token boundaries.
  const members: JsonMember[] = [];
  let i = skipWhitespace(json, 0) + 1; // past "{"
  for (;;) {
    i = skipWhitespace(json, i);
    if (json[i] === "}") return members;
    if (json[i] === ",") i = skipWhitespace(json, i + 1);
    const keyEnd = skipString(json, i);
    const key = JSON.parse(json.slice(i, keyEnd)) as string;
    i = skipWhitespace(json, keyEnd) + 1; // past ":"
    i = skipWhitespace(json, i);
    const valueEnd = skipValue(json, i);
    const raw = json.slice(i, valueEnd);
    members.push({
      key,
      type: tokenType(raw),
      text: raw.startsWith('"') ? (JSON.parse(raw) as string) : raw,
    });
    i = valueEnd;
  }
}

function tokenType(raw: string): JsonTokenType {
  if (raw.startsWith('"')) return "string";
  if (raw.startsWith("{")) return "object";
  if (raw.startsWith("[")) return "array";
  return "primitive";
}

function skipWhitespace(json: string, from: number): number {
  let i = from;
  while (i < json.length && WHITESPACE.has(json[i] ?? "")) i++;
  return i;
}

/** `from` is at an opening quote; returns the index after the closing one. */
function skipString(json: string, from: number): number {
  let i = from + 1;
  while (i < json.length && json[i] !== '"') i += json[i] === "\\" ? 2 : 1;
  return i + 1;
}

function skipValue(json: string, from: number): number {
  const first = json[from];
  if (first === '"') return skipString(json, from);
  if (first === "{" || first === "[") {
    let depth = 0;
    let i = from;
    while (i < json.length) {
      const c = json[i];
      if (c === '"') {
        i = skipString(json, i);
        continue;
      }
      if (c === "{" || c === "[") depth++;
      else if (c === "}" || c === "]") depth--;
      i++;
      if (depth === 0) return i;
    }
    return i;
  }
  let i = from;
  while (i < json.length && !WHITESPACE.has(json[i] ?? "") && json[i] !== "," && json[i] !== "}") i++;
  return i;
}
