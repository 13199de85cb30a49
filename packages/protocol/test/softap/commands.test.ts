import { describe, expect, it } from "vitest";

import {
  decodeSoftApResponseBody,
  encodeSoftApRequestBody,
  encodeSoftApResponseBody,
  isSoftApCommand,
  MalformedFrameError,
  parseSoftApRequestBody,
  resolveSetRequest,
  SOFTAP_COMMANDS,
  SOFTAP_RESULT_CODES,
  SOFTAP_SET_VALUE_MAX_LENGTH,
  WIFI_SECURITY,
} from "../../src/index.js";
import type { SoftApCommand, SoftApResponses } from "../../src/index.js";

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

describe("command names (spec A.2, A.4)", () => {
  it.each(SOFTAP_COMMANDS)("knows %s", (name) => {
    expect(isSoftApCommand(name)).toBe(true);
  });

  it.each(["ant-internal", "ant-external", "provision-keys", "signal", "VERSION", "hello", ""])(
    "does not answer %j",
    (name) => {
      expect(isSoftApCommand(name)).toBe(false);
    },
  );
});

describe("request bodies the device accepts (spec A.4)", () => {
  const vectors = [
    {
      name: "a WPA2 configure-ap from softap-js",
      command: "configure-ap",
      json: '{"idx":0,"ssid":"home","sec":4194308,"ch":6,"pwd":"ab12"}',
      parsed: { idx: 0, ssid: "home", sec: WIFI_SECURITY.WPA2_AES_PSK, ch: 6, pwd: "ab12" },
    },
    {
      name: "an open network with the channel softap-js sends as null (NaN)",
      command: "configure-ap",
      json: '{"idx":0,"ssid":"cafe","sec":0,"ch":null}',
      parsed: { idx: 0, ssid: "cafe", sec: 0, ch: 0 },
    },
    {
      name: "a PEAP configure-ap with identities and eap",
      command: "configure-ap",
      json: '{"idx":0,"ssid":"corp","sec":37748740,"ch":1,"ii":"alice","eap":25,"oi":"anon","pwd":"00"}',
      parsed: {
        idx: 0,
        ssid: "corp",
        sec: WIFI_SECURITY.WPA2_ENTERPRISE_AES,
        ch: 1,
        ii: "alice",
        eap: 25,
        oi: "anon",
        pwd: "00",
      },
    },
    { name: "a claim code", command: "set", json: '{"k":"cc","v":"abc"}', parsed: { k: "cc", v: "abc" } },
    {
      name: "JSON with whitespace",
      command: "set",
      json: ' { "k" : "cc" ,\n "v" : "x" } ',
      parsed: { k: "cc", v: "x" },
    },
    {
      name: "escaped strings, decoded",
      command: "set",
      json: '{"k":"cc","v":"a\\"b\\u00e9"}',
      parsed: { k: "cc", v: 'a"bé' },
    },
    {
      name: "a repeated key, the last one winning",
      command: "set",
      json: '{"k":"xx","k":"cc","v":"1"}',
      parsed: { k: "cc", v: "1" },
    },
    { name: "an empty object", command: "set", json: "{}", parsed: {} },
    {
      name: "a top-level string, read as {} by the firmware's loop",
      command: "set",
      json: '"hello"',
      parsed: {},
    },
    { name: "a top-level number", command: "configure-ap", json: "5", parsed: {} },
    { name: "a top-level null", command: "configure-ap", json: "null", parsed: {} },
  ] as const;

  it.each(vectors)("parses $name", ({ command, json, parsed }) => {
    expect(parseSoftApRequestBody(command, utf8(json))).toEqual(parsed);
  });

  it.each([
    ["6.9", 6],
    ["-3", -3],
    ["1e3", 1],
    ["null", 0],
    ["true", 0],
    ["false", 0],
    ["-0", 0],
    ["99999999999", 2147483647],
    ["-99999999999", -2147483648],
  ])("reads the primitive %s as atoi does: %d", (literal, value) => {
    expect(parseSoftApRequestBody("configure-ap", utf8(`{"ch":${literal}}`))).toEqual({ ch: value });
  });

  it.each(["version", "device-id", "scan-ap", "public-key", "connect-ap"] as const)(
    "ignores whatever body %s carries, as the device never reads it",
    (command) => {
      expect(parseSoftApRequestBody(command, utf8('garbage{"x":'))).toEqual({});
    },
  );
});

describe("request bodies the device rejects with an empty reply (spec A.4, A.7)", () => {
  const rules = [
    { rule: "an unknown configure-ap key", command: "configure-ap", body: '{"ssid":"x","foo":1}' },
    { rule: "an unknown set key", command: "set", body: '{"k":"cc","v":"x","extra":"y"}' },
    { rule: "a key in the wrong case", command: "configure-ap", body: '{"SSID":"x"}' },
    { rule: "a string where a primitive belongs", command: "configure-ap", body: '{"idx":"0"}' },
    { rule: "a number where a string belongs", command: "configure-ap", body: '{"ssid":5}' },
    { rule: "null where a string belongs", command: "set", body: '{"k":null}' },
    { rule: "an object value", command: "configure-ap", body: '{"ssid":{}}' },
    { rule: "an array value", command: "configure-ap", body: '{"ch":[1]}' },
    { rule: "invalid JSON", command: "set", body: '{"k":"cc"' },
    { rule: "an empty body", command: "set", body: "" },
    { rule: "a top-level array", command: "set", body: '["k","cc"]' },
  ] as const;

  it.each(rules)("rejects $rule", ({ command, body }) => {
    expect(() => parseSoftApRequestBody(command, utf8(body))).toThrow(MalformedFrameError);
  });

  it("rejects a body that is not UTF-8", () => {
    expect(() => parseSoftApRequestBody("set", Uint8Array.of(0x7b, 0xff, 0x7d))).toThrow(MalformedFrameError);
  });

  it("does not treat inherited object keys as known", () => {
    expect(() => parseSoftApRequestBody("set", utf8('{"toString":"x"}'))).toThrow(MalformedFrameError);
    expect(() => parseSoftApRequestBody("set", utf8('{"__proto__":"x"}'))).toThrow(MalformedFrameError);
  });
});

describe("request bodies as clients encode them", () => {
  it("writes configure-ap keys in the firmware's order", () => {
    expect(encodeSoftApRequestBody("configure-ap", { pwd: "ab", sec: 0, ssid: "x", idx: 0 })).toBe(
      '{"idx":0,"ssid":"x","pwd":"ab","sec":0}',
    );
  });

  it("writes set and connect-ap bodies", () => {
    expect(encodeSoftApRequestBody("set", { k: "cc", v: "code" })).toBe('{"k":"cc","v":"code"}');
    expect(encodeSoftApRequestBody("connect-ap", { idx: 0 })).toBe('{"idx":0}');
  });

  it("sends no body for body-less commands", () => {
    expect(encodeSoftApRequestBody("device-id", {})).toBeUndefined();
  });

  it("round-trips through the device's parser", () => {
    const body = { idx: 1, ssid: "net", pwd: "00ff", ch: 11, sec: WIFI_SECURITY.WPA_AES_PSK };
    expect(
      parseSoftApRequestBody("configure-ap", utf8(encodeSoftApRequestBody("configure-ap", body) ?? "")),
    ).toEqual(body);
  });
});

describe("set semantics (spec A.4 set)", () => {
  it("returns the claim code for k = cc", () => {
    expect(resolveSetRequest({ k: "cc", v: "abc" })).toBe("abc");
  });

  it("keeps at most 63 characters of the value", () => {
    const code = "x".repeat(80);
    expect(resolveSetRequest({ k: "cc", v: code })).toBe(code.slice(0, SOFTAP_SET_VALUE_MAX_LENGTH));
    expect(SOFTAP_SET_VALUE_MAX_LENGTH).toBe(63);
  });

  it("cuts the key to 2 bytes like the firmware's buffer, so ccx also sets the claim code", () => {
    expect(resolveSetRequest({ k: "ccx", v: "a" })).toBe("a");
  });

  it.each([
    ["another key", { k: "xx", v: "a" }],
    ["a short key", { k: "c", v: "a" }],
    ["an empty value", { k: "cc", v: "" }],
    ["no fields", {}],
  ])("answers r = -1 for %s", (_, request) => {
    expect(resolveSetRequest(request)).toBeUndefined();
  });
});

describe("replies as the device writes them (spec A.4)", () => {
  const vectors: {
    [C in SoftApCommand]: { command: C; response: SoftApResponses[C]; json: string };
  }[SoftApCommand][] = [
    { command: "version", response: { v: 2 }, json: '{"v":2}' },
    {
      command: "device-id",
      response: { id: "3A001D000747343232363230", c: "0" },
      json: '{"id":"3A001D000747343232363230","c":"0"}',
    },
    {
      command: "scan-ap",
      response: { scans: [{ ssid: "home", rssi: -52, sec: WIFI_SECURITY.WPA2_AES_PSK, ch: 6, mdr: 144444 }] },
      json: '{"scans":[{"ssid":"home","rssi":-52,"sec":4194308,"ch":6,"mdr":144444}]}',
    },
    { command: "scan-ap", response: { scans: [] }, json: '{"scans":[]}' },
    { command: "configure-ap", response: { r: 0 }, json: '{"r":0}' },
    { command: "configure-ap", response: { r: SOFTAP_RESULT_CODES.DECRYPT_FAILED }, json: '{"r":-16640}' },
    { command: "connect-ap", response: { r: 0 }, json: '{"r":0}' },
    { command: "public-key", response: { b: "30819F00", r: 0 }, json: '{"b":"30819F00","r":0}' },
    { command: "public-key", response: { r: 1 }, json: '{"r":1}' },
    { command: "set", response: { r: -1 }, json: '{"r":-1}' },
  ];

  it.each(vectors)("encodes $command $json", ({ command, response, json }) => {
    expect(encodeSoftApResponseBody(command, response)).toBe(json);
  });

  it.each(vectors)("decodes $json as a client", ({ command, response, json }) => {
    expect(decodeSoftApResponseBody(command, json)).toEqual(response);
  });

  it("writes keys in the device's order whatever the object's order", () => {
    expect(encodeSoftApResponseBody("device-id", { c: "1", id: "AB" })).toBe('{"id":"AB","c":"1"}');
  });

  it("skips scan entries with an empty SSID", () => {
    const hidden = { ssid: "", rssi: -40, sec: 0, ch: 1, mdr: 54000 };
    const shown = { ssid: "b", rssi: -70, sec: 0, ch: 1, mdr: 54000 };
    expect(encodeSoftApResponseBody("scan-ap", { scans: [hidden, shown] })).toBe(
      '{"scans":[{"ssid":"b","rssi":-70,"sec":0,"ch":1,"mdr":54000}]}',
    );
  });

  it("copies string values without escaping, producing invalid JSON for an SSID with a quote, like the device", () => {
    const json = encodeSoftApResponseBody("scan-ap", {
      scans: [{ ssid: 'a"b', rssi: -1, sec: 0, ch: 1, mdr: 1 }],
    });
    expect(json).toBe('{"scans":[{"ssid":"a"b","rssi":-1,"sec":0,"ch":1,"mdr":1}]}');
    expect(() => decodeSoftApResponseBody("scan-ap", json)).toThrow(MalformedFrameError);
  });

  it.each([
    ["a fractional r", () => encodeSoftApResponseBody("set", { r: 1.5 })],
    ["an r beyond int32", () => encodeSoftApResponseBody("set", { r: 2 ** 31 })],
    ["a missing field", () => encodeSoftApResponseBody("set", {} as { r: number })],
    ["a non-string id", () => encodeSoftApResponseBody("device-id", { id: 5 as unknown as string, c: "0" })],
    ["a non-array scans", () => encodeSoftApResponseBody("scan-ap", { scans: {} as [] })],
  ])("refuses to encode %s", (_, encode) => {
    expect(encode).toThrow(MalformedFrameError);
  });

  it("drops unknown keys when decoding", () => {
    expect(decodeSoftApResponseBody("set", '{"r":0,"extra":true}')).toEqual({ r: 0 });
  });

  it.each([
    ["text that is not JSON", "version", "{"],
    ["a non-object", "version", "[2]"],
    ["null", "version", "null"],
    ["c as a number (softap-js compares the string)", "device-id", '{"id":"AB","c":1}'],
    ["c other than 0 or 1", "device-id", '{"id":"AB","c":"2"}'],
    ["r as a string", "set", '{"r":"0"}'],
    ["a missing r", "configure-ap", "{}"],
    ["b as a number", "public-key", '{"b":1,"r":0}'],
    ["scans that is not an array", "scan-ap", '{"scans":{}}'],
    ["a scan entry without rssi", "scan-ap", '{"scans":[{"ssid":"a","sec":0,"ch":1,"mdr":1}]}'],
  ] as const)("rejects %s when decoding", (_, command, json) => {
    expect(() => decodeSoftApResponseBody(command, json)).toThrow(MalformedFrameError);
  });
});
