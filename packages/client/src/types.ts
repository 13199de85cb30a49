/** A token response of `POST /oauth/token` and customer creation. @see spec/cloud-api.md §1.1 */
export interface TokenResponse {
  token_type: "bearer";
  access_token: string;
  expires_in: number;
  refresh_token: string;
}

/** `POST /v1/device_claims`. @see spec/cloud-api.md §3.1 */
export interface ClaimCodeResponse {
  claim_code: string;
  device_ids: string[];
  /** Roost extension: the id of the claim, for claim status. */
  claim_id: string;
}

/** A device as the API shows it (the fields Roost sends). @see spec/cloud-api.md §4.3 */
export interface Device {
  id: string;
  name: string | null;
  owner: string | null;
  last_ip_address: string | null;
  last_heard: string | null;
  last_handshake_at: string | null;
  product_id: number;
  platform_id: number;
  online: boolean;
  connected: boolean;
  notes: string | null;
  functions: string[];
  variables: Record<string, string>;
  [field: string]: unknown;
}

/** A product. */
export interface Product {
  id: number;
  slug: string;
  name: string;
  platform_id: number;
  description: string;
}

/** An OAuth client; `secret` only in the creation response. */
export interface OAuthClient {
  id: string;
  name: string;
  type: "installed" | "web";
  scope: string;
  redirect_uri?: string;
  secret?: string;
}

/** `GET /v1/products/:p/devices`. */
export interface ProductDevicesPage {
  devices: Device[];
  customers: { id: string; username: string }[];
  meta: { total_pages: number };
}

/** Roost extension: `GET /v1/roost/claims/:claim_id`. */
export interface ClaimStatus {
  claim_id: string;
  status: "pending" | "claimed" | "expired" | "revoked";
  device_id: string | null;
  created_at: string;
  expires_at: string;
  claimed_at: string | null;
  attempts: {
    at: string;
    device_id: string;
    outcome: "claimed" | "refused";
    reason: string;
    source: string;
  }[];
}
