import { isAscii } from "node:buffer";

import { AppError } from "../errors.js";

/**
 * The text-input policy, applied at the edge so that every route and both databases see the same input:
 * text is UTF-8, and has no NUL character and no lone UTF-16 surrogate. PostgreSQL refuses NUL in text
 * (`invalid byte sequence for encoding "UTF8": 0x00`) while SQLite stores it, and an undecodable byte or
 * a lone surrogate would be replaced by U+FFFD on the way in, silently changing what was sent.
 * Uploaded files are bytes, not text, and are not checked here.
 */
// eslint-disable-next-line no-control-regex -- matching NUL is the point of this expression
const FORBIDDEN = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Thrown for text that breaks the policy (the caller's fault). */
export class BadTextError extends AppError {
  constructor(where: string) {
    super("BAD_REQUEST", `${where} must be valid UTF-8 text without NUL characters`);
  }
}

/** Decodes a request body as strict UTF-8. */
export function decodeBody(body: Buffer): string {
  // Most bodies are ASCII (`{}`, forms): their bytes are their characters, without the decoder's cost.
  if (isAscii(body)) return body.toString("latin1");
  try {
    return STRICT_UTF8.decode(body);
  } catch {
    throw new BadTextError("The request body");
  }
}

/** `decodeURIComponent` for form and query values (`+` is a space); refuses escapes of invalid UTF-8. */
function strictUnescape(where: string): (text: string) => string {
  return (text) => {
    try {
      return decodeURIComponent(text.replace(/\+/g, " "));
    } catch {
      throw new BadTextError(where);
    }
  };
}

/** Most name/value pairs read from one form or query string (as Node's querystring). */
const MAX_PAIRS = 1000;

/**
 * Parses `application/x-www-form-urlencoded` text into a plain record (repeated names become arrays).
 * Written out because Node's querystring falls back to a lenient decoder when an escape is invalid.
 */
function parsePairs(text: string, where: string): Record<string, unknown> {
  const unescape = strictUnescape(where);
  const fields: Record<string, unknown> = {};
  for (const pair of text.split("&").slice(0, MAX_PAIRS)) {
    if (pair.length === 0) continue;
    const eq = pair.indexOf("=");
    const name = unescape(eq < 0 ? pair : pair.slice(0, eq));
    const value = eq < 0 ? "" : unescape(pair.slice(eq + 1));
    const existing = Object.hasOwn(fields, name) ? fields[name] : undefined;
    const next =
      existing === undefined
        ? value
        : Array.isArray(existing)
          ? [...(existing as unknown[]), value]
          : [existing, value];
    Object.defineProperty(fields, name, {
      value: next,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return fields;
}

/** Parses a form body. */
export function parseForm(text: string): Record<string, unknown> {
  return parsePairs(text, "The request body");
}

/** Checks the path and query of a raw request URL: percent-escapes must decode to allowed text. */
export function checkUrl(url: string): void {
  const query = url.indexOf("?");
  const path = query < 0 ? url : url.slice(0, query);
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    throw new BadTextError("The URL path");
  }
  if (FORBIDDEN.test(decoded)) throw new BadTextError("The URL path");
  if (query >= 0) {
    if (findBadText(parsePairs(url.slice(query + 1), "The query string")))
      throw new BadTextError("The query string");
  }
}

/** True when any string in a parsed body (keys included; Buffers skipped) breaks the policy. */
export function findBadText(value: unknown, depth = 0): boolean {
  if (typeof value === "string") return FORBIDDEN.test(value);
  if (depth > 32 || value === null || typeof value !== "object" || Buffer.isBuffer(value)) return false;
  if (Array.isArray(value)) return value.some((item) => findBadText(item, depth + 1));
  return Object.entries(value).some(([key, item]) => FORBIDDEN.test(key) || findBadText(item, depth + 1));
}
