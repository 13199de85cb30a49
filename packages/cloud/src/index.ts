export { createCloudConfig } from "./config.js";
export type {
  CloudConfig,
  CloudOptions,
  Clock,
  HttpLimitsConfig,
  RateLimitConfig,
  RetentionConfig,
  WebhookConfig,
} from "./config.js";
export { startCloud } from "./server.js";
export { SIGN_IN_LINK_CLIENT_ID } from "./services/tokens.js";
export type { RunningCloud, StartCloudOptions } from "./server.js";
export { openStorage } from "./storage/database.js";
export type { Storage, StorageOptions } from "./storage/database.js";
export type { Database } from "./storage/schema.js";
export { createServices } from "./services/index.js";
export type { Services } from "./services/index.js";
export { CLAIM_REASONS } from "./services/claims.js";
export type {
  ClaimCodeResponse,
  ClaimReason,
  ClaimResult,
  ClaimState,
  ClaimStatus,
} from "./services/claims.js";
export { CLAIM_ATTEMPT_EVENT } from "./gateway/connection.js";
export { importDevicePublicKey } from "./gateway/device-key.js";
export { startCryptoPool } from "./gateway/crypto-pool.js";
export type { HandshakeCrypto } from "./gateway/crypto-pool.js";
export { newClaimCode, newClaimCodeRowId, randomBytesPooled } from "./security.js";
export type { Principal, Owner } from "./services/principal.js";
export { InProcessEventBus } from "./events/bus.js";
export type { DeviceCommand, DeviceCommandResult, EventBus } from "./events/bus.js";
export { connectNatsBus } from "./events/nats-bus.js";
export type { NatsBusOptions } from "./events/nats-bus.js";
export type { CloudEvent } from "./events/model.js";
export { DtlsServer, DtlsSession } from "./gateway/dtls-server.js";
export type { DtlsServerOptions, DtlsSessionState, PeerAddress } from "./gateway/dtls-server.js";
export { DEVICE_CLAIMED_EVENT, DEVICE_TRANSFERRED_EVENT, DEVICE_UNCLAIMED_EVENT } from "./events/model.js";
export type { WebhookDispatcher } from "./webhooks/dispatcher.js";
export { HOOK_COREID } from "./webhooks/dispatcher.js";
export { DELIVERY_HEADER, REPLAY_HEADER, SIGNATURE_HEADER } from "./webhooks/template.js";
