export { ApiError, RETRYABLE_STATUSES, isApiError, messageOf } from "./api-error.js";
export { createApiClient } from "./client.js";
export type { ApiClient, ApiClientOptions, Fetch } from "./client.js";
export type {
  ClaimCodeResponse,
  Device,
  OAuthClient,
  Product,
  ProductDevicesPage,
  TokenResponse,
} from "./types.js";
