import type { Kysely } from "kysely";

import type { Database } from "../storage/schema.js";
import type { DtlsSession, DtlsSessionState, PeerAddress } from "./dtls-server.js";

/** A persisted DTLS session: whose it is, where it was last heard, and its state. */
export interface StoredDtlsSession {
  readonly deviceId: string;
  readonly address: PeerAddress;
  readonly state: DtlsSessionState;
  /** The stored text of the state: what a node expects to find when it next writes (compare-and-set). */
  readonly text: string;
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
const bytes = (text: string) => new Uint8Array(Buffer.from(text, "hex"));

/** The JSON of a session's state; the sequence number stored is the end of the reservation (never used yet). */
function encodeState(session: DtlsSession): string {
  const { keys, masterSecret, peerPublicKeyDer, epoch, inSequence } = session.state;
  return JSON.stringify({
    clientKey: hex(keys.client.key),
    clientIv: hex(keys.client.iv),
    serverKey: hex(keys.server.key),
    serverIv: hex(keys.server.iv),
    masterSecret: hex(masterSecret),
    peer: hex(peerPublicKeyDer),
    epoch,
    out: session.reservedUntil,
    in: inSequence,
  });
}

function decodeState(text: string, cid: string | null): DtlsSessionState {
  const s = JSON.parse(text) as Record<string, string | number>;
  const str = (name: string) => String(s[name]);
  return {
    keys: {
      client: { key: bytes(str("clientKey")), iv: bytes(str("clientIv")) },
      server: { key: bytes(str("serverKey")), iv: bytes(str("serverIv")) },
    },
    masterSecret: bytes(str("masterSecret")),
    peerPublicKeyDer: bytes(str("peer")),
    cid: cid ? bytes(cid) : undefined,
    epoch: Number(s.epoch),
    outSequence: Number(s.out),
    inSequence: Number(s.in),
  };
}

/**
 * Writes a device's session. Without `expected` (a new handshake: the device chose this session) it overwrites
 * whatever is stored. With it, only if the stored state is still `expected`, the text this node last wrote or
 * read: another node that continued the session since has written its own reservation, and this node must stop
 * sending (its sequence numbers could meet the other's). Returns whether it was written, and the text.
 */
export async function saveDtlsSession(
  db: Kysely<Database>,
  options: { deviceId: string; session: DtlsSession; now: number; expected?: string | undefined },
): Promise<{ saved: boolean; text: string }> {
  const { deviceId, session, now, expected } = options;
  const row = {
    cid: session.cid ? hex(session.cid) : null,
    address: session.address.address,
    port: session.address.port,
    state: encodeState(session),
    updated_at: now,
  };
  if (expected !== undefined) {
    const result = await db
      .updateTable("dtls_sessions")
      .set(row)
      .where("device_id", "=", deviceId)
      .where("state", "=", expected)
      .executeTakeFirst();
    return { saved: Number(result.numUpdatedRows) === 1, text: row.state };
  }
  await db
    .insertInto("dtls_sessions")
    .values({ device_id: deviceId, ...row })
    .onConflict((oc) => oc.column("device_id").doUpdateSet(row))
    .execute();
  return { saved: true, text: row.state };
}

/** Forgets a device's session (it closed it, or it is no longer the device's). */
export async function deleteDtlsSession(db: Kysely<Database>, deviceId: string): Promise<void> {
  await db.deleteFrom("dtls_sessions").where("device_id", "=", deviceId).execute();
}

function fromRow(row: Database["dtls_sessions"]): StoredDtlsSession {
  return {
    deviceId: row.device_id,
    address: { address: row.address, port: row.port },
    state: decodeState(row.state, row.cid),
    text: row.state,
  };
}

/** Every stored session (a single node restoring what it held). */
export async function loadDtlsSessions(db: Kysely<Database>): Promise<StoredDtlsSession[]> {
  return (await db.selectFrom("dtls_sessions").selectAll().execute()).map(fromRow);
}

/** The session with this Connection ID (a record reached a node that does not hold it). */
export async function findDtlsSessionByCid(
  db: Kysely<Database>,
  cid: Uint8Array,
): Promise<StoredDtlsSession | undefined> {
  const row = await db.selectFrom("dtls_sessions").selectAll().where("cid", "=", hex(cid)).executeTakeFirst();
  return row && fromRow(row);
}

/** A device's stored session (a move-session record reached a node that does not hold it). */
export async function findDtlsSessionByDevice(
  db: Kysely<Database>,
  deviceId: string,
): Promise<StoredDtlsSession | undefined> {
  const row = await db
    .selectFrom("dtls_sessions")
    .selectAll()
    .where("device_id", "=", deviceId)
    .executeTakeFirst();
  return row && fromRow(row);
}
