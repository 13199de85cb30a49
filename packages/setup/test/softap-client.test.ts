import { describe, expect, it } from "vitest";

import { createSoftApClient, isSetupError } from "../src/index.js";
import type { SoftApTransport } from "../src/index.js";
import { createFakeDevice } from "./fakes.js";

function replying(reply: string | undefined): SoftApTransport & { sent: [string, string | undefined][] } {
  const sent: [string, string | undefined][] = [];
  return {
    sent,
    send(command, body) {
      sent.push([command, body]);
      return Promise.resolve(reply);
    },
  };
}

describe("createSoftApClient (spec A.4)", () => {
  it("reads device-id as a lower-case ID and the string flag c", async () => {
    const client = createSoftApClient(replying('{"id":"0123456789ABCDEF01234567","c":"1"}'));
    expect(await client.deviceInfo()).toEqual({ id: "0123456789abcdef01234567", claimed: true });
  });

  it("sends the claim code as set {k: cc, v}", async () => {
    const transport = replying('{"r":0}');
    await createSoftApClient(transport).setClaimCode("abc");
    expect(transport.sent).toEqual([["set", '{"k":"cc","v":"abc"}']]);
  });

  it("reads the public key from the 294-byte dump as SubjectPublicKeyInfo DER", async () => {
    const device = createFakeDevice();
    const der = await createSoftApClient(device.transport).publicKey();
    expect(der.length).toBe(162);
  });

  it("maps scan entries to named fields", async () => {
    const client = createSoftApClient(
      replying('{"scans":[{"ssid":"home","rssi":-40,"sec":4194308,"ch":6,"mdr":54000}]}'),
    );
    expect(await client.scan()).toEqual([{ ssid: "home", rssi: -40, security: 4194308, channel: 6 }]);
  });

  it.each([
    ["a body the device rejected (no JSON)", undefined, /rejected the set request/],
    ["r = -1", '{"r":-1}', /did not store the claim code \(set answered r=-1\)/],
    ["an unreadable reply", '{"r":"0"}', /unreadable/],
  ])("turns %s into SOFTAP_FAILED", async (_name, reply, message) => {
    const error = await createSoftApClient(replying(reply))
      .setClaimCode("abc")
      .catch((caught: unknown) => caught);
    expect(isSetupError(error, "SOFTAP_FAILED")).toBe(true);
    expect((error as Error).message).toMatch(message);
  });

  it("explains a negative configure-ap result as a password the device could not decrypt", async () => {
    const error = await createSoftApClient(replying('{"r":-16640}'))
      .configure({ ssid: "home", security: 4194308, channel: 6, encryptedPassword: "00" })
      .catch((caught: unknown) => caught);
    expect(isSetupError(error, "SOFTAP_FAILED")).toBe(true);
    expect((error as Error).message).toMatch(/could not decrypt the Wi-Fi password/);
  });

  it("wraps a transport that throws something other than a SetupError as SOFTAP_UNREACHABLE", async () => {
    const client = createSoftApClient({ send: () => Promise.reject(new Error("EHOSTUNREACH")) });
    const error = await client.deviceInfo().catch((caught: unknown) => caught);
    expect(isSetupError(error, "SOFTAP_UNREACHABLE")).toBe(true);
  });
});
