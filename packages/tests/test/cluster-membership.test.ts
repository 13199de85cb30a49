import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { CloudLink } from "@roost/device";
import type { ServeProcess, TemporaryDatabase, TestDevice } from "@roost/tests/support";
import {
  api,
  createTemporaryDatabase,
  newDevice,
  newUser,
  startServeProcess,
  until,
} from "@roost/tests/support";

const POSTGRES_URL = process.env.ROOST_TEST_POSTGRES_URL;
const NATS_URL = process.env.ROOST_TEST_NATS_URL;

const HEARTBEAT_MS = 400;
const DEAD_AFTER_MS = 2500;

/** A device and its current link. */
interface Member {
  device: TestDevice;
  link: CloudLink;
}

describe.skipIf(!POSTGRES_URL || !NATS_URL)(
  "cluster membership: three `roost serve` processes, one paused past the dead threshold (issue 9)",
  () => {
    let database: TemporaryDatabase;
    let db: pg.Pool;
    const nodes: ServeProcess[] = [];
    const links: CloudLink[] = [];

    beforeAll(async () => {
      database = await createTemporaryDatabase(POSTGRES_URL ?? "");
      const args = [
        "--database-url",
        database.url,
        "--nats-url",
        NATS_URL ?? "",
        "--allow-signup",
        // The test registers fresh device IDs, as a manufacturer's tool would in development.
        "--open-device-registration",
        "--heartbeat-ms",
        String(HEARTBEAT_MS),
        "--dead-after-ms",
        String(DEAD_AFTER_MS),
        "--log-level",
        "info",
      ];
      // The first node creates the schema; the others start on it at once.
      nodes.push(await startServeProcess(args));
      nodes.push(...(await Promise.all([startServeProcess(args), startServeProcess(args)])));
      db = new pg.Pool({ connectionString: database.url, max: 4 });
      // `end()` resolves before its clients' sockets have closed, and the database is then dropped WITH
      // (FORCE): a client still closing hears "terminating connection due to administrator command" with no
      // query to fail, which would surface as an uncaught error. A failing query still rejects as before.
      db.on("connect", (client) => client.on("error", () => undefined));
    }, 180_000);

    afterAll(async () => {
      for (const link of links) link.close();
      for (const node of nodes) node.child.kill("SIGCONT");
      await Promise.all(nodes.map((node) => node.kill()));
      await db?.end();
      await database?.[Symbol.asyncDispose]();
    });

    async function presence(
      ids: readonly string[],
    ): Promise<Map<string, { online: number; node: string | null }>> {
      const rows = await db.query<{ id: string; online: number; gateway_node: string | null }>(
        "SELECT id, online, gateway_node FROM devices WHERE id = ANY($1)",
        [ids],
      );
      return new Map(rows.rows.map((row) => [row.id, { online: row.online, node: row.gateway_node }]));
    }

    async function allListed(members: readonly Member[], node: ServeProcess | null): Promise<boolean> {
      const rows = await presence(members.map((member) => member.device.id));
      return members.every((member) => {
        const row = rows.get(member.device.id);
        return node ? row?.online === 1 && row.node === node.nodeId : row?.online === 0;
      });
    }

    it("heals a node paused past the dead threshold, never lets it clobber devices that moved, and sweeps it within threshold + one beat once killed", async () => {
      const [a, b, c] = nodes as [ServeProcess, ServeProcess, ServeProcess];
      const { token, username } = await newUser(a);
      const connect = async (node: ServeProcess, device: TestDevice): Promise<CloudLink> => {
        const link = new CloudLink({
          host: "127.0.0.1",
          port: node.devicePort,
          deviceId: device.id,
          privateKey: device.privateKey,
          serverPublicKey: node.serverPublicKey,
          // Ping often enough for the gateway's idle timeout, but never give up on a paused node.
          pingIntervalMs: 5000,
          pingTimeoutMs: 120_000,
        });
        links.push(link);
        await link.connect();
        return link;
      };
      const enroll = async (node: ServeProcess, count: number): Promise<Member[]> =>
        Promise.all(
          Array.from({ length: count }, async () => {
            const device = newDevice();
            const registered = await api(a, {
              method: "POST",
              path: `/v1/provisioning/${device.id}`,
              token,
              json: { publicKey: device.publicKeyPem },
            });
            expect(registered.status).toBe(200);
            // The owner has claimed it (claims are tested elsewhere).
            await db.query(
              "UPDATE devices SET owner_user_id = (SELECT id FROM users WHERE username = $1) WHERE id = $2",
              [username, device.id],
            );
            return { device, link: await connect(node, device) };
          }),
        );
      const onA = await enroll(a, 5);
      const onB = await enroll(b, 5);
      const staying = await enroll(c, 6);
      const moving = await enroll(c, 4);
      await until(
        async () => (await allListed(onA, a)) && (await allListed(onB, b)),
        "A's and B's devices online",
      );
      await until(async () => allListed([...staying, ...moving], c), "C's devices online");

      // C stops (a GC pause, a VM stall) past the dead threshold: another node declares it dead and lists
      // its devices offline.
      c.child.kill("SIGSTOP");
      await until(
        async () => (await db.query("SELECT 1 FROM gateway_nodes WHERE id = $1", [c.nodeId])).rowCount === 0,
        "C to be declared dead",
        30_000,
      );
      await until(
        async () => allListed([...staying, ...moving], null),
        "C's devices to be swept offline",
        30_000,
      );

      // Meanwhile some of C's devices give up on it and reconnect through A.
      for (const member of moving) {
        member.link.close();
        member.link = await connect(a, member.device);
      }
      await until(async () => allListed(moving, a), "the moved devices online on A", 30_000);

      // C resumes: it re-registers, lists the devices it still holds online again, and the old connections
      // of the moved devices end on it without touching their rows.
      c.child.kill("SIGCONT");
      await c.waitFor(/re-registered/, 30_000);
      await until(async () => allListed(staying, c), "C's staying devices listed online on C again", 30_000);
      for (const member of moving)
        await c.waitFor(
          new RegExp(`"deviceId":"${member.device.id}"[^\\n]*"device connection closed"`),
          30_000,
        );
      // Two more beats of C after that: nothing it does later may clobber them either.
      const seen = async () =>
        Number(
          (await db.query("SELECT last_seen FROM gateway_nodes WHERE id = $1", [c.nodeId])).rows[0]
            ?.last_seen,
        );
      const first = await seen();
      await until(async () => (await seen()) > first, "a beat of C", 30_000);
      const second = await seen();
      await until(async () => (await seen()) > second, "another beat of C", 30_000);
      expect(await allListed(moving, a)).toBe(true);
      expect(await allListed(staying, c)).toBe(true);
      expect(await allListed(onA, a)).toBe(true);
      expect(await allListed(onB, b)).toBe(true);
      // The moved devices still answer through any node.
      for (const member of moving) {
        const ping = await api(b, { method: "PUT", path: `/v1/devices/${member.device.id}/ping`, token });
        expect(ping.body).toMatchObject({ online: true });
      }

      // Devices that connect to C after it came back are swept too when it really dies.
      const late = await enroll(c, 3);
      await until(async () => allListed(late, c), "late devices online on C");
      const killedAt = Date.now();
      await c.kill("SIGKILL");
      await until(
        async () => allListed([...staying, ...late], null),
        "C's devices offline after the kill",
        30_000,
      );
      const sweptAfterMs = Date.now() - killedAt;
      console.log(
        `killed node's devices listed offline after ${sweptAfterMs} ms (threshold ${DEAD_AFTER_MS} + beat ${HEARTBEAT_MS})`,
      );
      // Threshold + one beat, plus a margin for the database round trips of a loaded machine.
      expect(sweptAfterMs).toBeLessThan(DEAD_AFTER_MS + HEARTBEAT_MS + 1500);
      expect(await allListed(moving, a)).toBe(true);
      expect(await allListed(onA, a)).toBe(true);
      expect(await allListed(onB, b)).toBe(true);
    }, 240_000);
  },
);
