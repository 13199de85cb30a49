export { ApiError, RETRYABLE_STATUSES, isApiError, messageOf } from "./api-error.js";
export { createApiClient } from "./client.js";
export type { ApiClient, ApiClientOptions, Fetch } from "./client.js";
export type {
  ClaimCodeResponse,
  ClaimStatus,
  Device,
  OAuthClient,
  Product,
  ProductDevicesPage,
  TokenResponse,
} from "./types.js";
export { openEventStream } from "./event-stream.js";
export type { EventStream, EventStreamOptions, StreamEvent } from "./event-stream.js";
