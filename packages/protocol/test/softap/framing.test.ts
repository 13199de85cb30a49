import { describe, expect, it } from "vitest";

import type { AppError } from "../../src/index.js";
import {
  decodeSoftApReply,
  decodeSoftApRequest,
  encodeSoftApReply,
  encodeSoftApRequest,
  FrameTooLargeError,
  MalformedFrameError,
  SOFTAP_MAX_COMMAND_NAME_LENGTH,
  SoftApRequestParser,
  TruncatedFrameError,
} from "../../src/index.js";

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

describe("SoftAP request framing (spec A.2)", () => {
  // Byte strings as softap-js (`util.format('%s\n%s\n\n%s', ...)`), Android and iOS build them.
  const vectors = [
    { name: "a body-less command", wire: "device-id\n0\n\n", frame: { name: "device-id", body: "" } },
    {
      name: "set with a claim code",
      wire: 'set\n23\n\n{"k":"cc","v":"abc123"}',
      frame: { name: "set", body: '{"k":"cc","v":"abc123"}' },
    },
    {
      name: "connect-ap",
      wire: 'connect-ap\n9\n\n{"idx":0}',
      frame: { name: "connect-ap", body: '{"idx":0}' },
    },
    {
      name: "a UTF-8 body, counted in bytes",
      wire: 'configure-ap\n16\n\n{"ssid":"Café"}',
      frame: { name: "configure-ap", body: '{"ssid":"Café"}' },
    },
  ];

  it.each(vectors)("decodes $name", ({ wire, frame }) => {
    expect(decodeSoftApRequest(utf8(wire))).toEqual({ name: frame.name, body: utf8(frame.body) });
  });

  it.each(vectors)("encodes $name byte for byte", ({ wire, frame }) => {
    expect(encodeSoftApRequest(frame.body === "" ? { name: frame.name } : frame)).toEqual(utf8(wire));
  });

  it("round-trips binary bodies", () => {
    const body = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(decodeSoftApRequest(encodeSoftApRequest({ name: "x", body }))).toEqual({ name: "x", body });
  });

  it("reassembles a request split at every byte boundary", () => {
    const wire = utf8('set\n23\n\n{"k":"cc","v":"abc123"}');
    for (let cut = 0; cut <= wire.length; cut++) {
      const parser = new SoftApRequestParser();
      const first = parser.push(wire.subarray(0, cut));
      const second = parser.push(wire.subarray(cut));
      expect(first ?? second).toEqual({ name: "set", body: utf8('{"k":"cc","v":"abc123"}') });
      expect(first === undefined || second === undefined).toBe(true);
      expect(() => parser.end()).not.toThrow();
    }
  });

  it("completes a zero-length request on the blank line, without waiting for more bytes", () => {
    const parser = new SoftApRequestParser();
    expect(parser.push(utf8("version\n0\n"))).toBeUndefined();
    expect(parser.push(utf8("\n"))).toEqual({ name: "version", body: new Uint8Array(0) });
    expect(parser.done).toBe(true);
  });

  it("ignores bytes after the request, as the device never reads them", () => {
    const parser = new SoftApRequestParser();
    expect(parser.push(utf8("version\n0\n\nextra"))?.name).toBe("version");
    expect(parser.push(utf8("more"))).toBeUndefined();
    expect(parser.ignoredLength).toBe(9);
  });

  it("returns a body that later changes to the chunk do not touch", () => {
    const chunk = utf8("set\n2\n\n{}");
    const frame = new SoftApRequestParser().push(chunk);
    chunk.fill(0);
    expect(frame?.body).toEqual(utf8("{}"));
  });

  it("accepts a name of exactly 30 bytes", () => {
    const name = "n".repeat(SOFTAP_MAX_COMMAND_NAME_LENGTH);
    expect(decodeSoftApRequest(utf8(`${name}\n0\n\n`)).name).toBe(name);
  });

  it("accepts a body of exactly maxBodyLength bytes", () => {
    expect(decodeSoftApRequest(utf8("set\n4\n\nabcd"), { maxBodyLength: 4 }).body).toEqual(utf8("abcd"));
  });
});

describe("SoftAP request rejection rules (spec A.2)", () => {
  const rules: {
    rule: string;
    wire: string;
    error: new (message: string) => AppError;
    maxBodyLength?: number;
  }[] = [
    { rule: "an empty command name", wire: "\n0\n\n", error: MalformedFrameError },
    { rule: "a NUL byte in the name", wire: "vers\0ion\n0\n\n", error: MalformedFrameError },
    { rule: "a name longer than 30 bytes", wire: `${"n".repeat(31)}\n0\n\n`, error: MalformedFrameError },
    { rule: "an empty length line", wire: "version\n\n\n", error: MalformedFrameError },
    { rule: "a non-digit in the length", wire: "version\n1x\n\n", error: MalformedFrameError },
    { rule: "a negative length", wire: "version\n-1\n\n", error: MalformedFrameError },
    { rule: "more than 10 length digits", wire: "version\n00000000000\n\n", error: MalformedFrameError },
    { rule: "a header without its blank line", wire: "set\n2\n{}\n\n", error: MalformedFrameError },
    {
      rule: "a length above maxBodyLength",
      wire: "set\n17\n\n",
      error: FrameTooLargeError,
      maxBodyLength: 16,
    },
    { rule: "a huge length, before the body arrives", wire: "set\n99999999", error: FrameTooLargeError },
  ];

  it.each(rules)("rejects $rule", ({ wire, error, maxBodyLength }) => {
    const parser = new SoftApRequestParser(maxBodyLength === undefined ? {} : { maxBodyLength });
    expect(() => parser.push(utf8(wire))).toThrow(error);
  });

  it("keeps failing after the first error", () => {
    const parser = new SoftApRequestParser();
    expect(() => parser.push(utf8("\n"))).toThrow(MalformedFrameError);
    expect(() => parser.push(utf8("version\n0\n\n"))).toThrow(MalformedFrameError);
    expect(() => parser.end()).toThrow(MalformedFrameError);
  });

  it.each(["", "version", "version\n", "version\n5\n", "set\n5\n\n{}"])(
    "reports %j as truncated at end of stream",
    (wire) => {
      const parser = new SoftApRequestParser();
      parser.push(utf8(wire));
      expect(() => parser.end()).toThrow(TruncatedFrameError);
      expect(() => decodeSoftApRequest(utf8(wire))).toThrow(TruncatedFrameError);
    },
  );

  it("rejects bytes after the body in a single-frame decode", () => {
    expect(() => decodeSoftApRequest(utf8("version\n0\n\n{}"))).toThrow(MalformedFrameError);
  });

  it.each([
    ["an empty name", ""],
    ["a name with LF", "a\nb"],
    ["a name with NUL", "a\0b"],
    ["a 31-byte name", "n".repeat(31)],
    ["a non-Latin-1 name", "π"],
  ])("refuses to encode %s", (_, name) => {
    expect(() => encodeSoftApRequest({ name })).toThrow(MalformedFrameError);
  });

  it("refuses a bad maxBodyLength option with a RangeError (a programming error, not input)", () => {
    expect(() => new SoftApRequestParser({ maxBodyLength: -1 })).toThrow(RangeError);
  });
});

describe("SoftAP reply framing (spec A.2 Response)", () => {
  it("prefixes the JSON with the LF LF preamble", () => {
    expect(encodeSoftApReply('{"v":2}')).toEqual(utf8('\n\n{"v":2}'));
  });

  it("sends the preamble alone for a rejected body", () => {
    expect(encodeSoftApReply(undefined)).toEqual(utf8("\n\n"));
  });

  it("decodes a reply back to its JSON, or undefined for the bare preamble", () => {
    expect(decodeSoftApReply(utf8('\n\n{"r":0}'))).toBe('{"r":0}');
    expect(decodeSoftApReply(utf8("\n\n"))).toBeUndefined();
  });

  it("treats the empty reply of an unknown command as truncated", () => {
    expect(() => decodeSoftApReply(new Uint8Array(0))).toThrow(TruncatedFrameError);
    expect(() => decodeSoftApReply(utf8("\n"))).toThrow(TruncatedFrameError);
  });

  it("rejects a reply without the preamble, and one that is not UTF-8", () => {
    expect(() => decodeSoftApReply(utf8('{"v":2}'))).toThrow(MalformedFrameError);
    expect(() => decodeSoftApReply(Uint8Array.of(0x0a, 0x0a, 0xff))).toThrow(MalformedFrameError);
  });
});
