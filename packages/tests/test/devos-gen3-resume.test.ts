// A real Device OS v5.1.0 behind a NAT that rebinds: its records start arriving from a new source port, and
// the cloud follows it by its Connection ID, because the record authenticates; a forged record carrying the
// same CID from elsewhere is dropped and moves nothing. The NAT is a small UDP relay on the address the
// firmware dials. @see docs/gen3-wire-format.md §2, §5
import { randomBytes, randomInt } from "node:crypto";
import { createSocket } from "node:dgram";
import type { Socket } from "node:dgram";
import Particle from "particle-api-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

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

/** A NAT for one device: device ⇄ relay (on `host`:5684) ⇄ upstream socket ⇄ gateway. `rebind` opens a new upstream port. */
class Nat {
  #device: { address: string; port: number } | undefined;
  /** The last Connection ID seen on the device's CID records (type 25: bytes 11–18). */
  cid: Buffer | undefined;
  #upstream: Socket;
  readonly #old: Socket[] = [];
  private constructor(
    readonly front: Socket,
    readonly gateway: { address: string; port: number },
  ) {
    this.#upstream = this.#open();
    front.on("message", (datagram, from) => {
      this.#device = { address: from.address, port: from.port };
      if (datagram[0] === 25) this.cid = datagram.subarray(11, 19);
      this.#upstream.send(datagram, gateway.port, gateway.address);
    });
  }

  static async start(host: string, gateway: { address: string; port: number }): Promise<Nat> {
    const front = createSocket("udp4");
    await new Promise<void>((resolve, reject) => {
      front.once("error", reject);
      front.bind(5684, host, () => resolve());
    });
    return new Nat(front, gateway);
  }

  #open(): Socket {
    const socket = createSocket("udp4");
    socket.bind(0, "127.0.0.1");
    socket.on("message", (datagram) => {
      if (this.#device) this.front.send(datagram, this.#device.port, this.#device.address);
    });
    return socket;
  }

  /** From now on the device's datagrams leave from a new port; the old one still delivers replies until closed. */
  rebind(): void {
    this.#old.push(this.#upstream);
    this.#upstream = this.#open();
  }

  /** The old mapping expires: nothing sent to the old port reaches the device any more. */
  expireOld(): void {
    for (const socket of this.#old.splice(0)) socket.close();
  }

  close(): void {
    this.expireOld();
    this.#upstream.close();
    this.front.close();
  }
}

describe.skipIf(!DEVOS_AVAILABLE)(
  "a real Gen 3 device whose source port changes keeps its DTLS session",
  () => {
    let cloud: RunningCloud & { deviceHost: string };
    let nat: Nat;
    let token: string;
    let particle: Particle;

    beforeAll(async () => {
      // The gateway on one loopback address; the NAT on another, where the firmware dials.
      cloud = await startCloudOnOwnLoopback({ deviceRequestTimeoutMs: 5000 });
      token = (await newUser(cloud)).token;
      particle = new Particle({ baseUrl: cloud.url });
      for (let attempt = 0; !nat; attempt++) {
        const host = `127.${randomInt(1, 255)}.${randomInt(0, 256)}.${randomInt(1, 255)}`;
        nat = await Nat.start(host, { address: cloud.deviceHost, port: cloud.gateway?.udpPort ?? 0 }).catch(
          (error: unknown) => {
            if (attempt > 20) throw error;
            return undefined as unknown as Nat;
          },
        );
      }
    });
    afterAll(async () => {
      nat?.close();
      await cloud?.close();
    });

    /** A variable the firmware does not have: it answers 4.04 itself, so a 404 means the round trip worked. */
    async function roundTrip(id: string): Promise<number | undefined> {
      const error = await particle.getVariable({ deviceId: id, name: "temperature", auth: token }).then(
        () => undefined,
        (failure: { statusCode: number }) => failure,
      );
      return error?.statusCode;
    }

    it(
      "v5.1.0: after the NAT rebinds, the gateway follows the device to its new port by its CID; a forged record with its CID changes nothing",
      { timeout: 180_000 },
      async () => {
        const { id, privateKey } = await registeredGen3Device(cloud, token);
        await using firmware = startDevos({
          version: "v5.1.0",
          protocol: "udp",
          deviceId: id,
          deviceKeyDer: new Uint8Array(privateKey.export({ type: "sec1", format: "der" })),
          serverKeyFile: encodeServerKeyFile({
            protocol: "udp",
            publicKeyDer: cloud.serverKey.ec.publicKeyDer,
            address: { kind: "ipv4", address: nat.front.address().address },
          }),
          args: ["--platform_id", "12"],
        });
        await firmware.waitForLine(/Cloud connected/, ONLINE_MS);
        await until(async () => (await cloud.services.devices.get(id))?.online === 1, "online", ONLINE_MS);
        expect((await particle.claimDevice({ deviceId: id, auth: token })).statusCode).toBe(200);
        const session = cloud.gateway?.session(id);
        const handshakes = cloud.gateway?.stats.dtlsHandshakes;
        expect(await roundTrip(id)).toBe(404);

        // A forged record with the device's own CID and garbage, from a third port: it does not authenticate, so it
        // is dropped and the session stays where it was (were it moved, the next round trip would go astray).
        expect(nat.cid?.length).toBe(8);
        const forger = createSocket("udp4");
        await new Promise<void>((resolve) => forger.bind(0, "127.0.0.1", () => resolve()));
        const forged = Buffer.concat([
          Buffer.from("19fefd0001000000000fff", "hex"),
          randomBytes(8),
          Buffer.from("0020", "hex"),
          randomBytes(32),
        ]);
        await new Promise<void>((resolve) =>
          forger.send(forged, cloud.gateway?.udpPort ?? 0, cloud.deviceHost, () => resolve()),
        );
        forger.close();
        expect(await roundTrip(id)).toBe(404);

        // The NAT rebinds: the device's answer leaves from a new port. The gateway's request still goes to the
        // old port (which delivers it), the reply comes from the new one and, authenticated by its CID, moves the
        // session there.
        nat.rebind();
        expect(await roundTrip(id)).toBe(404);
        // The old mapping expires: only a gateway that followed the device reaches it now.
        nat.expireOld();
        expect(await roundTrip(id)).toBe(404);
        expect(cloud.gateway?.session(id)).toBe(session);
        expect(cloud.gateway?.stats.dtlsHandshakes).toBe(handshakes);
      },
    );
  },
);
