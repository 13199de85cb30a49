import type { Kysely } from "kysely";

import type { CloudConfig } from "../config.js";
import { AppError, NotFoundError } from "../errors.js";
import { newId } from "../security.js";
import type { Database } from "../storage/schema.js";
import type { Owner } from "./principal.js";

/** Where a transfer request stands. */
export type TransferStatus = "pending" | "approved" | "denied" | "cancelled";

/** A transfer request as `GET /v1/roost/transfers` shows it. */
export interface TransferView {
  id: string;
  device_id: string;
  status: TransferStatus;
  /** `incoming`: someone asks for a device of yours; `outgoing`: you asked for someone's device. */
  direction: "incoming" | "outgoing";
  requested_by: string | null;
  created_at: string;
  decided_at: string | null;
}

function ownerMatches(owner: Owner): { user_id: string | null; customer_id: string | null } {
  return owner.kind === "user"
    ? { user_id: owner.userId, customer_id: null }
    : { user_id: null, customer_id: owner.customerId };
}

/**
 * Device transfers that work (DESIGN.md "Beyond the anchors" 4): `POST /v1/devices` with
 * `request_transfer=true` asks for a device someone else owns; its owner approves (the device changes hands
 * in one transaction) or denies; the requester may cancel.
 */
export class TransferService {
  readonly #db: Kysely<Database>;
  readonly #config: CloudConfig;

  constructor(options: { db: Kysely<Database>; config: CloudConfig }) {
    this.#db = options.db;
    this.#config = options.config;
  }

  /** Records a request, or returns the requester's pending one for the same device. */
  async request(options: { deviceId: string; requester: Owner }): Promise<string> {
    const who = ownerMatches(options.requester);
    let query = this.#db
      .selectFrom("transfers")
      .select("id")
      .where("device_id", "=", options.deviceId)
      .where("status", "=", "pending");
    query = who.user_id
      ? query.where("requested_by_user_id", "=", who.user_id)
      : query.where("requested_by_customer_id", "=", who.customer_id);
    const existing = await query.executeTakeFirst();
    if (existing) return existing.id;
    const id = newId();
    await this.#db
      .insertInto("transfers")
      .values({
        id,
        device_id: options.deviceId,
        requested_by_user_id: who.user_id,
        requested_by_customer_id: who.customer_id,
        status: "pending",
        created_at: this.#config.clock(),
        decided_at: null,
      })
      .execute();
    return id;
  }

  /** The caller's transfers: requests for its devices, and its own requests. */
  async list(owner: Owner): Promise<TransferView[]> {
    const who = ownerMatches(owner);
    const rows = await this.#db
      .selectFrom("transfers")
      .innerJoin("devices", "devices.id", "transfers.device_id")
      .leftJoin("users", "users.id", "transfers.requested_by_user_id")
      .leftJoin("customers", "customers.id", "transfers.requested_by_customer_id")
      .select([
        "transfers.id",
        "transfers.device_id",
        "transfers.status",
        "transfers.created_at",
        "transfers.decided_at",
        "transfers.requested_by_user_id",
        "transfers.requested_by_customer_id",
        "devices.owner_user_id",
        "devices.owner_customer_id",
      ])
      .select((eb) => eb.fn.coalesce("users.username", "customers.email").as("requester"))
      .where((eb) =>
        who.user_id
          ? eb.or([
              eb("transfers.requested_by_user_id", "=", who.user_id),
              eb("devices.owner_user_id", "=", who.user_id),
            ])
          : eb.or([
              eb("transfers.requested_by_customer_id", "=", who.customer_id),
              eb("devices.owner_customer_id", "=", who.customer_id),
            ]),
      )
      .orderBy("transfers.created_at")
      .execute();
    const mine = (row: { requested_by_user_id: string | null; requested_by_customer_id: string | null }) =>
      who.user_id
        ? row.requested_by_user_id === who.user_id
        : row.requested_by_customer_id === who.customer_id;
    return rows.map((row) => ({
      id: row.id,
      device_id: row.device_id,
      status: row.status as TransferStatus,
      direction: mine(row) ? "outgoing" : "incoming",
      requested_by: row.requester,
      created_at: new Date(row.created_at).toISOString(),
      decided_at: row.decided_at === null ? null : new Date(row.decided_at).toISOString(),
    }));
  }

  /**
   * The device's owner approves or denies a pending request; the requester may cancel it. Approval moves
   * the device to the requester in one transaction, only if the approver still owns it.
   */
  async decide(options: {
    transferId: string;
    actor: Owner;
    decision: "approve" | "deny" | "cancel";
  }): Promise<{ deviceId: string; status: TransferStatus }> {
    const who = ownerMatches(options.actor);
    const now = this.#config.clock();
    return this.#db.transaction().execute(async (trx) => {
      const transfer = await trx
        .selectFrom("transfers")
        .selectAll()
        .where("id", "=", options.transferId)
        .executeTakeFirst();
      const device =
        transfer &&
        (await trx.selectFrom("devices").selectAll().where("id", "=", transfer.device_id).executeTakeFirst());
      const isOwner =
        device !== undefined &&
        (who.user_id ? device.owner_user_id === who.user_id : device.owner_customer_id === who.customer_id);
      const isRequester =
        transfer !== undefined &&
        (who.user_id
          ? transfer.requested_by_user_id === who.user_id
          : transfer.requested_by_customer_id === who.customer_id);
      const allowed = options.decision === "cancel" ? isRequester : isOwner;
      // Someone else's transfer does not exist for the caller.
      if (!transfer || !device || !allowed) throw new NotFoundError("Transfer not found");
      if (transfer.status !== "pending")
        throw new AppError("CONFLICT", `The transfer is already ${transfer.status}`);
      const status: TransferStatus =
        options.decision === "approve" ? "approved" : options.decision === "deny" ? "denied" : "cancelled";
      if (status === "approved") {
        const moved = await trx
          .updateTable("devices")
          .set({
            owner_user_id: transfer.requested_by_user_id,
            owner_customer_id: transfer.requested_by_customer_id,
            claimed_at: now,
            updated_at: now,
          })
          .where("id", "=", device.id)
          .where("owner_user_id", "is", device.owner_user_id)
          .where("owner_customer_id", "is", device.owner_customer_id)
          .executeTakeFirst();
        if (moved.numUpdatedRows === 0n) throw new AppError("CONFLICT", "The device changed hands meanwhile");
      }
      await trx
        .updateTable("transfers")
        .set({ status, decided_at: now })
        .where("id", "=", transfer.id)
        .execute();
      return { deviceId: device.id, status };
    });
  }
}
