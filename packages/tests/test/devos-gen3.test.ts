// Particle's own Device OS (gcc builds v2.3.1 and v5.1.0, /work/shared/devos) against a real Roost cloud over
// the Gen 3 protocol: DTLS 1.2 over UDP with P-256 raw public keys (v5.1.0 with the Connection ID), then the
// same CoAP session as Gen 2. @see docs/gen3-wire-format.md
import Particle from "particle-api-js";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import { encodeServerKeyFile } from "@roost/protocol";
import type { DevosVersion } from "@roost/tests/support";
import {
  api,
  DEVOS_AVAILABLE,
  newUser,
  registeredGen3Device,
  startCloudOnOwnLoopback,
  startDevos,
  until,
} from "@roost/tests/support";

/** How long the firmware may take to get online on a loaded machine. */
const ONLINE_MS = 60_000;
const GCC_PLATFORM = 3;

describe.skipIf(!DEVOS_AVAILABLE)("real Device OS over UDP (Gen 3 protocol: DTLS 1.2, P-256)", () => {
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

  /** A P-256 device registered as `particle keys send` does, and the two key files the firmware reads. */
  async function gen3Device(): Promise<{ id: string; deviceKeyDer: Uint8Array; serverKeyFile: Uint8Array }> {
    const { id, privateKey } = await registeredGen3Device(cloud, token, { platformId: 12 });
    return {
      id,
      deviceKeyDer: new Uint8Array(privateKey.export({ type: "sec1", format: "der" })),
      serverKeyFile: encodeServerKeyFile({
        protocol: "udp",
        publicKeyDer: cloud.serverKey.ec.publicKeyDer,
        address: { kind: "ipv4", address: cloud.deviceHost },
      }),
    };
  }

  async function online(id: string): Promise<boolean> {
    return (await cloud.services.devices.get(id))?.online === 1;
  }

  // Over UDP v5.1.0 announces the platform it is given (here Argon, 12); v2.3.1 always says gcc (3).
  // v5.1.0 logs each received CoAP message in full; v2.3.1 logs its type (8 = event, Device OS coap.h).
  // (2 = function call.)
  const cases: {
    version: DevosVersion;
    args: string[];
    platformId: number;
    eventLine: RegExp;
    callLine: RegExp;
  }[] = [
    {
      version: "v2.3.1",
      args: [],
      platformId: GCC_PLATFORM,
      eventLine: /rcv'd message type=8\b/,
      callLine: /rcv'd message type=2\b/,
    },
    {
      version: "v5.1.0",
      args: ["--platform_id", "12"],
      platformId: 12,
      eventLine: /roost-test/,
      callLine: /digitalwrite/,
    },
  ];

  for (const { version, args, platformId, eventLine, callLine } of cases) {
    it(
      `${version}: completes the DTLS handshake, says Hello, describes itself, publishes and subscribes, is listed online, is claimed by ID, and a variable read and a function call from particle-api-js reach it`,
      { timeout: 120_000 },
      async () => {
        const device = await gen3Device();
        const events: string[] = [];
        const stop = cloud.services.bus.subscribe((event) => {
          if (event.coreid === device.id) events.push(event.name);
        });
        onTestFinished(stop);
        await using firmware = startDevos({ version, protocol: "udp", deviceId: device.id, ...device, args });
        // The firmware's own line first: on a timeout it reports the firmware's last log lines.
        await firmware.waitForLine(/Cloud connected/, ONLINE_MS);
        await until(() => online(device.id), `${version} online over UDP`, ONLINE_MS);

        const row = await cloud.services.devices.get(device.id);
        expect(row?.platform_id).toBe(platformId);

        // Claim by ID, then the owner's listing through particle-api-js.
        const claimed = await particle.claimDevice({ deviceId: device.id, auth: token });
        expect(claimed.body.ok).toBe(true);
        const listed = await particle.listDevices({ auth: token });
        const entry = (listed.body as { id: string }[]).find((d) => d.id === device.id);
        expect(entry).toMatchObject({ connected: true, online: true, platform_id: platformId });

        // Its events arrived: presence and the system events it publishes on connecting.
        await until(() => events.includes("particle/device/updates/enabled"), `${version} events`, ONLINE_MS);
        expect(events).toContain("spark/status");
        // Its subscriptions hold: an event of its owner under `particle/` reaches it.
        const published = await api(cloud, {
          method: "POST",
          path: "/v1/devices/events",
          token,
          json: { name: "particle/roost-test", data: "hello-device", private: true },
        });
        expect(published.status).toBe(200);
        await firmware.waitForLine(eventLine);

        // Its describe arrived (no application functions or variables in these builds).
        await until(
          async () => (await cloud.services.devices.get(device.id))?.functions === "[]",
          `${version} describe`,
          ONLINE_MS,
        );
        // A variable it does not have: the firmware answers 4.04 (only the device says that here: without an
        // answer the API would say 408).
        const variable = await particle
          .getVariable({ deviceId: device.id, name: "temperature", auth: token })
          .then(
            () => undefined,
            (error: { statusCode: number }) => error,
          );
        expect(variable?.statusCode).toBe(404);
        // A function it does not have: the firmware takes the call and, finding no such function, never
        // answers (Device OS userFuncSchedule returns -1); the API times out.
        const call = await particle
          .callFunction({ deviceId: device.id, name: "digitalwrite", argument: "D7,HIGH", auth: token })
          .then(
            () => undefined,
            (error: { statusCode: number }) => error,
          );
        expect(call?.statusCode).toBe(408);
        await firmware.waitForLine(callLine);
      },
    );
  }
});
