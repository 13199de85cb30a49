import type { Generated, Selectable } from "kysely";

/** The largest value an `integer` column holds on PostgreSQL (int4); SQLite would take more, so services check it. */
export const MAX_INTEGER = 2_147_483_647;

/**
 * The one relational schema of Roost, shared by SQLite and PostgreSQL. Times are epoch milliseconds,
 * booleans are 0/1 integers, JSON is text: the lowest common denominator keeps the queries identical.
 */
export interface Database {
  users: UsersTable;
  products: ProductsTable;
  product_members: ProductMembersTable;
  oauth_clients: OAuthClientsTable;
  customers: CustomersTable;
  access_tokens: TokensTable;
  refresh_tokens: TokensTable;
  claim_codes: ClaimCodesTable;
  claim_attempts: ClaimAttemptsTable;
  devices: DevicesTable;
  transfers: TransfersTable;
  login_failures: LoginFailuresTable;
  server_settings: ServerSettingsTable;
  gateway_nodes: GatewayNodesTable;
  dtls_sessions: DtlsSessionsTable;
  device_connection_attempts: DeviceConnectionAttemptsTable;
  rate_counters: RateCountersTable;
  stream_slots: StreamSlotsTable;
  webhooks: WebhooksTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_attempts: WebhookAttemptsTable;
}

/** A webhook of a user (`user_id`) or a product (`product_id`). `settings` is the JSON of its templates. */
export interface WebhooksTable {
  id: string;
  user_id: string | null;
  product_id: number | null;
  event: string;
  url: string;
  request_type: string;
  device_id: string | null;
  settings: string;
  /** The HMAC signing key; kept as is because every request is signed with it (it is shown once, at creation). */
  secret: string;
  disabled: Generated<number>;
  disabled_reason: string | null;
  consecutive_failures: Generated<number>;
  throttled_until: number | null;
  created_at: number;
  updated_at: number;
}

/** One event to send to one hook: the durable outbox row. `event` is the JSON of the event it carries. */
export interface WebhookDeliveriesTable {
  seq: Generated<number>;
  id: string;
  hook_id: string;
  event: string;
  event_name: string;
  status: "pending" | "succeeded" | "failed";
  attempts: Generated<number>;
  next_attempt_at: number;
  /** The node sending it now, until `lease_until`; an expired lease may be taken by any node. */
  lease_owner: string | null;
  lease_until: number | null;
  replay_of: string | null;
  created_at: number;
  completed_at: number | null;
}

/** One attempt to send a delivery: the hook's delivery log. */
export interface WebhookAttemptsTable {
  id: string;
  delivery_id: string;
  hook_id: string;
  attempt: number;
  at: number;
  status_code: number | null;
  error: string | null;
  latency_ms: number;
  response: string | null;
  node: string;
}

/** A Gen 3 device's DTLS session: keys and counters (JSON in `state`), its CID and last address. */
export interface DtlsSessionsTable {
  device_id: string;
  /** Hex of the Connection ID we gave the device, if any. */
  cid: string | null;
  address: string;
  port: number;
  /** JSON of the session state (see gateway/dtls-store.ts). */
  state: string;
  updated_at: number;
}

export interface GatewayNodesTable {
  id: string;
  last_seen: number;
}

export interface ServerSettingsTable {
  name: string;
  value: string;
  updated_at: number;
}

export interface DeviceConnectionAttemptsTable {
  id: string;
  device_id: string;
  ip: string;
  outcome: string;
  reason: string;
  at: number;
}

export interface UsersTable {
  id: string;
  username: string;
  password_hash: string;
  created_at: number;
}

export interface ProductsTable {
  id: Generated<number>;
  slug: string;
  name: string;
  description: string;
  platform_id: number;
  owner_user_id: string;
  created_at: number;
}

export interface ProductMembersTable {
  product_id: number;
  user_id: string;
  role: string;
}

export interface OAuthClientsTable {
  id: string;
  secret_hash: string;
  name: string;
  type: string;
  redirect_uri: string | null;
  scope: string | null;
  product_id: number | null;
  owner_user_id: string | null;
  created_at: number;
}

export interface CustomersTable {
  id: string;
  product_id: number;
  email: string;
  password_hash: string | null;
  created_at: number;
}

/** Who a token, refresh token or claim code belongs to. */
export type PrincipalKind = "user" | "customer" | "product";

export interface TokensTable {
  token_hash: string;
  principal_kind: PrincipalKind;
  user_id: string | null;
  customer_id: string | null;
  product_id: number | null;
  client_id: string;
  expires_at: number | null;
  created_at: number;
}

export interface ClaimCodesTable {
  id: string;
  code_hash: string;
  principal_kind: "user" | "customer";
  user_id: string | null;
  customer_id: string | null;
  product_id: number | null;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  revoked_at: number | null;
  device_id: string | null;
  /**
   * 1 when the code is found by its hash (a preset ICCID or IMEI, a code made before migration 0015a), 0
   * when it carries its row's ID (security.ts, `newClaimCode`).
   */
  by_hash: number;
}

export interface ClaimAttemptsTable {
  id: string;
  claim_code_id: string | null;
  device_id: string;
  outcome: string;
  reason: string;
  source: string;
  at: number;
}

export interface DevicesTable {
  id: string;
  public_key: string;
  key_algorithm: string;
  registered_by_user_id: string | null;
  name: string | null;
  notes: string | null;
  owner_user_id: string | null;
  owner_customer_id: string | null;
  product_id: number | null;
  platform_id: number;
  /** 1 when the platform was reported by the device's Hello or given at registration; 0 when assumed. */
  platform_confirmed: Generated<number>;
  quarantined: Generated<number>;
  denied: Generated<number>;
  development: Generated<number>;
  online: Generated<number>;
  last_heard: number | null;
  last_handshake_at: number | null;
  last_ip_address: string | null;
  system_firmware_version: string | null;
  firmware_version: number | null;
  serial_number: string | null;
  functions: Generated<string>;
  variables: Generated<string>;
  claimed_at: number | null;
  created_at: number;
  updated_at: number;
  /** The gateway node holding the device's connection while it is online. */
  gateway_node: Generated<string | null>;
  /**
   * Bumped each time a session of the device registers, on whichever node: the holder of the current epoch
   * is the only one that may write presence, answer commands or announce `offline`.
   */
  session_epoch: Generated<number>;
}

/** A fixed-window request counter shared by every node (cluster-wide API rate limits). */
export interface RateCountersTable {
  key: string;
  window_start: number;
  count: number;
}

/** Open event streams per client IP and node, so that the per-IP cap holds across nodes. */
export interface StreamSlotsTable {
  ip: string;
  node_id: string;
  count: number;
}

export interface TransfersTable {
  id: string;
  device_id: string;
  requested_by_user_id: string | null;
  requested_by_customer_id: string | null;
  status: string;
  created_at: number;
  decided_at: number | null;
}

export interface LoginFailuresTable {
  ip: string;
  failures: number;
  blocked_until: number | null;
  updated_at: number;
}

/** A device row as read. */
export type DeviceRecord = Selectable<DevicesTable>;
