// A restarted Roost continues a real Device OS v5.1.0's DTLS session: the session state is in the database, the
// device never learns the server restarted, and a function call after the restart reaches it over the session
// it already had, with no second handshake. @see issue 12 "Sessions that survive"
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Particle from "particle-api-js";
import { afterAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import { encodeServerKeyFile } from "@roost/protocol";
import {
  DEVOS_AVAILABLE,
  newUser,
  registeredGen3Device,
  startCloudOnOwnLoopback,
  startDevos,
  until,
} from "@roost/tests/support";

const ONLINE_MS = 60_000;

describe.skipIf(!DEVOS_AVAILABLE)("a restarted cloud keeps real Gen 3 devices' DTLS sessions", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "roost-restart-"));
  const clouds: RunningCloud[] = [];
  afterAll(async () => {
    for (const cloud of clouds) await cloud.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it(
    "v5.1.0: after the restart a function call from particle-api-js reaches the running device over its existing session (no second handshake)",
    { timeout: 180_000 },
    async () => {
      const first = await startCloudOnOwnLoopback({ dataDir, deviceRequestTimeoutMs: 5000 });
      clouds.push(first);
      const { token } = await newUser(first);
      const { id, privateKey } = await registeredGen3Device(first, token);
      await using firmware = startDevos({
        version: "v5.1.0",
        protocol: "udp",
        deviceId: id,
        deviceKeyDer: new Uint8Array(privateKey.export({ type: "sec1", format: "der" })),
        serverKeyFile: encodeServerKeyFile({
          protocol: "udp",
          publicKeyDer: first.serverKey.ec.publicKeyDer,
          address: { kind: "ipv4", address: first.deviceHost },
        }),
        args: ["--platform_id", "12"],
      });
      const online = async (cloud: RunningCloud) => (await cloud.services.devices.get(id))?.online === 1;
      await until(() => online(first), "the device online", ONLINE_MS);
      await firmware.waitForLine(/Cloud connected/, ONLINE_MS);
      const particle1 = new Particle({ baseUrl: first.url });
      expect((await particle1.claimDevice({ deviceId: id, auth: token })).body.ok).toBe(true);
      const handshakes = () => firmware.lines.filter((line) => /Handshake completed/.test(line)).length;
      const handshakesBefore = handshakes();
      expect(handshakesBefore).toBeGreaterThan(0);

      // Stop the cloud (as a SIGTERM to `roost serve` does) and start it again on the same data and address.
      await first.close();
      clouds.length = 0;
      const second = await startCloudOnOwnLoopback({
        dataDir,
        deviceHost: first.deviceHost,
        deviceRequestTimeoutMs: 5000,
      });
      clouds.push(second);
      await until(() => online(second), "the device online again, from its stored session", ONLINE_MS);

      // The firmware has no application functions, so it takes the call and never answers (API 408); its log
      // shows the call arrived, decrypted with the keys of the session it had before the restart.
      const particle2 = new Particle({ baseUrl: second.url });
      const call = await particle2
        .callFunction({ deviceId: id, name: "digitalwrite", argument: "D7,HIGH", auth: token })
        .then(
          () => undefined,
          (error: { statusCode: number }) => error,
        );
      expect(call?.statusCode).toBe(408);
      await firmware.waitForLine(/digitalwrite/);
      expect(handshakes()).toBe(handshakesBefore);
    },
  );
});
