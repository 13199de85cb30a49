// Particle's own Device OS (gcc builds v2.3.1 and v5.1.0, /work/shared/devos) against a real Roost cloud over
// the Gen 2 TCP protocol: handshake, Hello, describe, presence with the platform, claim by ID, and a function
// call from particle-api-js that the firmware itself answers; v2.3.1, which logs what it receives, also
// completes its ping after 15 s of silence in the same session. @see spec/device-protocols.md Part B
import { randomBytes } from "node:crypto";
import Particle from "particle-api-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import { encodeServerKeyFile } from "@roost/protocol";
import type { DevosVersion } from "@roost/tests/support";
import {
  DEVOS_AVAILABLE,
  firmwareRsaKeyPair,
  newUser,
  register,
  startCloudOnOwnLoopback,
  startDevos,
  until,
} from "@roost/tests/support";

/** How long the firmware may take to get online on a loaded machine. */
const ONLINE_MS = 60_000;

describe.skipIf(!DEVOS_AVAILABLE)("real Device OS over TCP (Gen 2 protocol)", () => {
  let cloud: RunningCloud & { deviceHost: string };
  let token: string;
  let particle: Particle;

  beforeAll(async () => {
    // The firmware answers at once or never (see the function call below): 5 s is plenty on a loaded machine.
    cloud = await startCloudOnOwnLoopback({ deviceRequestTimeoutMs: 5000 });
    token = (await newUser(cloud)).token;
    particle = new Particle({ baseUrl: cloud.url });
  });
  afterAll(async () => {
    await cloud?.close();
  });

  /** A registered RSA-1024 device identity and the two key files the firmware reads. */
  async function gen2Device(): Promise<{ id: string; deviceKeyDer: Uint8Array; serverKeyFile: Uint8Array }> {
    const { privateKey, publicKey } = firmwareRsaKeyPair();
    const id = randomBytes(12).toString("hex");
    await register(cloud, token, {
      device: { id, publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString() },
    });
    return {
      id,
      deviceKeyDer: new Uint8Array(privateKey.export({ type: "pkcs1", format: "der" })),
      serverKeyFile: encodeServerKeyFile({
        protocol: "tcp",
        publicKeyDer: cloud.serverKey.publicKeyDer,
        address: { kind: "ipv4", address: cloud.deviceHost },
      }),
    };
  }

  async function online(id: string): Promise<boolean> {
    return (await cloud.services.devices.get(id))?.online === 1;
  }

  // Both builds announce platform 3 (gcc) over TCP: v5.1.0 takes `--platform_id` for its describe, but its
  // Hello still carries the build's own platform (seen on the wire).
  // v2.3.1 logs each CoAP message it receives ("rcv'd message type=N"); v5.1.0 does not.
  const cases: { version: DevosVersion; args: string[]; logsMessages: boolean }[] = [
    { version: "v2.3.1", args: [], logsMessages: true },
    { version: "v5.1.0", args: ["--platform_id", "6"], logsMessages: false },
  ];
  const GCC_PLATFORM = 3;

  for (const { version, args, logsMessages } of cases) {
    it(
      `${version}: handshakes, says Hello, is listed online with its platform, is claimed by ID, and a variable read and a function call from particle-api-js reach it`,
      { timeout: 120_000 },
      async () => {
        const device = await gen2Device();
        await using firmware = startDevos({ version, protocol: "tcp", deviceId: device.id, ...device, args });
        await firmware.waitForLine(/Handshake completed/, ONLINE_MS);
        await until(() => online(device.id), `${version} online`, ONLINE_MS);

        // The gateway took its Hello: the platform it announced is on the device row,
        const row = await cloud.services.devices.get(device.id);
        expect(row?.platform_id).toBe(GCC_PLATFORM);
        // It dialled the test's own loopback address from its key file (the source is the kernel's 127.0.0.1).
        await firmware.waitForLine(
          new RegExp(`Connected to ${cloud.deviceHost.replaceAll(".", "\\.")}:5683`),
        );

        // Claim by ID, then the owner's listing through particle-api-js.
        const claimed = await particle.claimDevice({ deviceId: device.id, auth: token });
        expect(claimed.body.ok).toBe(true);
        const listed = await particle.listDevices({ auth: token });
        const entry = (listed.body as { id: string }[]).find((d) => d.id === device.id);
        expect(entry).toMatchObject({ connected: true, online: true, platform_id: GCC_PLATFORM });

        // The device posted its describe. These builds have no application functions or variables
        // (`{"f":[],"v":{}}`), so the cloud passes names on and the firmware answers for itself.
        await until(
          async () => (await cloud.services.devices.get(device.id))?.functions === "[]",
          `${version} describe`,
          ONLINE_MS,
        );
        // A variable it does not have: the firmware answers 4.04, which reaches api-js as a 404.
        const variable = await particle
          .getVariable({ deviceId: device.id, name: "temperature", auth: token })
          .then(
            () => undefined,
            (error: { statusCode: number }) => error,
          );
        expect(variable?.statusCode).toBe(404);
        // (Only the firmware says 4.04 here: without an answer the API would say 408.)
        if (logsMessages) await firmware.waitForLine(/rcv'd message type=3\b/);
        // A function it does not have: the firmware takes the call (CoAP message type 2 = function call) and,
        // finding no such function, never answers (Device OS userFuncSchedule returns -1); the API times out.
        const call = await particle
          .callFunction({ deviceId: device.id, name: "digitalwrite", argument: "D7,HIGH", auth: token })
          .then(
            () => undefined,
            (error: { statusCode: number }) => error,
          );
        expect(call?.statusCode).toBe(408);
        if (logsMessages) {
          await firmware.waitForLine(/rcv'd message type=2\b/);
          // Then silence: after 15 s the firmware pings (spec B.6). Within the minute of its Hello's
          // `last_heard`, the device's transport answers it without waking the session, in JavaScript AES
          // (tcp-transport.ts, `answerPing`): the firmware decrypts the empty ACK and completes its ping, in
          // the same session.
          const quiet = firmware.lines.length;
          const answeredAlone = cloud.gateway?.stats.pingsAnsweredAlone ?? 0;
          await firmware.waitForLine(/message id \d+ complete with code 0\.00/, 30_000, quiet);
          expect(cloud.gateway?.stats.pingsAnsweredAlone).toBe(answeredAlone + 1);
          expect(firmware.lines.filter((line) => /Handshake completed/.test(line))).toHaveLength(1);
          expect(await online(device.id)).toBe(true);
        }
      },
    );
  }
});
