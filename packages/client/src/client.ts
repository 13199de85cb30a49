import { ApiError } from "./api-error.js";
import type {
  ClaimCodeResponse,
  ClaimStatus,
  Device,
  OAuthClient,
  Product,
  ProductDevicesPage,
  TokenResponse,
} from "./types.js";

/** The `fetch` the client uses; inject one for tests, proxies or React Native. */
export type Fetch = (input: string, init: RequestInit) => Promise<Response>;

/** Options of {@link createApiClient}. */
export interface ApiClientOptions {
  /** Base URL of the cloud, e.g. `http://127.0.0.1:8080`. */
  baseUrl: string;
  /** Access token sent as `Authorization: Bearer`. */
  accessToken?: string | undefined;
  /** @default globalThis.fetch */
  fetch?: Fetch;
}

/** How a request carries its body, and any extra headers. */
interface Body {
  json?: unknown;
  form?: Record<string, string>;
  headers?: Record<string, string>;
}

/** Product (`id` or slug) in a path. */
type ProductRef = number | string;

/** A typed client for the Cloud API (Particle-compatible plus Roost's extensions). */
export interface ApiClient {
  /** The same client acting with another token. */
  withToken(accessToken: string): ApiClient;
  signUp(options: { username: string; password: string }): Promise<{ ok: true }>;
  /** Password grant. `clientId`/`clientSecret` default to `particle`. */
  login(options: {
    username: string;
    password: string;
    clientId?: string;
    clientSecret?: string;
    expiresIn?: number;
  }): Promise<TokenResponse>;
  /** Product token or (with `customerEmail`) a customer-scoped token, from a product client's credentials. */
  clientCredentials(options: {
    clientId: string;
    clientSecret: string;
    customerEmail?: string;
    expiresIn?: number;
  }): Promise<TokenResponse>;
  getUser(): Promise<{ username: string; [field: string]: unknown }>;
  deleteCurrentToken(): Promise<{ ok: true }>;
  createProduct(options: { name: string; platformId: number; description?: string }): Promise<Product>;
  listProducts(): Promise<Product[]>;
  createClient(options: {
    product: ProductRef;
    name: string;
    type: "installed" | "web";
    scope?: string;
    redirectUri?: string;
  }): Promise<OAuthClient>;
  /** Creates a customer with the product client's credentials (two-legged when `noPassword`). */
  createCustomer(options: {
    product: ProductRef;
    clientId: string;
    clientSecret: string;
    email: string;
    password?: string;
    noPassword?: boolean;
  }): Promise<TokenResponse>;
  /** A claim code for the caller, or for a product when the token is its customer's. */
  createClaimCode(options?: { product?: ProductRef }): Promise<ClaimCodeResponse>;
  listDevices(): Promise<Device[]>;
  getDevice(idOrName: string): Promise<Device>;
  claimDevice(options: { id: string; requestTransfer?: boolean }): Promise<Record<string, unknown>>;
  updateDevice(options: {
    idOrName: string;
    name?: string;
    notes?: string;
  }): Promise<Record<string, unknown>>;
  releaseDevice(idOrName: string): Promise<{ ok: true }>;
  registerDeviceKey(options: {
    deviceId: string;
    publicKeyPem: string;
    productId?: number;
    algorithm?: "rsa" | "ecc";
  }): Promise<Record<string, unknown>>;
  listProductDevices(options: {
    product: ProductRef;
    page?: number;
    perPage?: number;
  }): Promise<ProductDevicesPage>;
  /** Roost extension: a claim code's status and timeline (the code's owner only). */
  getClaimStatus(claimId: string): Promise<ClaimStatus>;
  importProductDevices(options: {
    product: ProductRef;
    ids: string[];
  }): Promise<{ updated: number; nonmemberDeviceIds: string[]; invalidDeviceIds: string[] }>;
}

/** Creates an {@link ApiClient}. Errors are thrown as {@link ApiError} with the parsed body. */
export function createApiClient({
  baseUrl,
  accessToken,
  fetch = globalThis.fetch.bind(globalThis),
}: ApiClientOptions): ApiClient {
  const base = baseUrl.replace(/\/+$/, "");

  async function request<T>(method: string, path: string, body: Body = {}): Promise<T> {
    const init: RequestInit & { headers: Record<string, string> } = {
      method,
      headers: { accept: "application/json", ...body.headers },
    };
    if (accessToken && !init.headers.authorization) init.headers.authorization = `Bearer ${accessToken}`;
    if (body.json !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body.json);
    } else if (body.form) {
      init.headers["content-type"] = "application/x-www-form-urlencoded";
      init.body = new URLSearchParams(body.form).toString();
    }
    const response = await fetch(`${base}${path}`, init);
    const text = await response.text();
    let parsed: unknown = undefined;
    if (text.length > 0) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (!response.ok) throw new ApiError({ status: response.status, body: parsed, method, path });
    return (parsed ?? {}) as T;
  }

  const seg = (value: string | number) => encodeURIComponent(String(value));
  const basic = (id: string, secret: string) => ({ authorization: `Basic ${btoa(`${id}:${secret}`)}` });

  return {
    withToken: (token) => createApiClient({ baseUrl, accessToken: token, fetch }),
    signUp: (o) => request("POST", "/v1/users", { json: o }),
    login: (o) =>
      request("POST", "/oauth/token", {
        form: {
          grant_type: "password",
          username: o.username,
          password: o.password,
          client_id: o.clientId ?? "particle",
          client_secret: o.clientSecret ?? "particle",
          ...(o.expiresIn !== undefined ? { expires_in: String(o.expiresIn) } : {}),
        },
      }),
    clientCredentials: (o) =>
      request("POST", "/oauth/token", {
        form: {
          grant_type: "client_credentials",
          ...(o.customerEmail ? { scope: `customer=${o.customerEmail}` } : {}),
          ...(o.expiresIn !== undefined ? { expires_in: String(o.expiresIn) } : {}),
        },
        headers: basic(o.clientId, o.clientSecret),
      }),
    getUser: () => request("GET", "/v1/user"),
    deleteCurrentToken: () => request("DELETE", "/v1/access_tokens/current"),
    createProduct: async (o) =>
      (
        await request<{ product: Product }>("POST", "/v1/user/products", {
          json: { name: o.name, platform_id: o.platformId, description: o.description },
        })
      ).product,
    listProducts: async () => (await request<{ products: Product[] }>("GET", "/v1/user/products")).products,
    createClient: async (o) =>
      (
        await request<{ client: OAuthClient }>("POST", `/v1/products/${seg(o.product)}/clients`, {
          json: { name: o.name, type: o.type, scope: o.scope, redirect_uri: o.redirectUri },
        })
      ).client,
    createCustomer: (o) =>
      request("POST", `/v1/products/${seg(o.product)}/customers`, {
        form: {
          email: o.email,
          ...(o.noPassword ? { no_password: "true" } : { password: o.password ?? "" }),
        },
        headers: basic(o.clientId, o.clientSecret),
      }),
    createClaimCode: (o = {}) =>
      request(
        "POST",
        o.product === undefined ? "/v1/device_claims" : `/v1/products/${seg(o.product)}/device_claims`,
        { json: {} },
      ),
    listDevices: () => request("GET", "/v1/devices"),
    getDevice: (idOrName) => request("GET", `/v1/devices/${seg(idOrName)}`),
    claimDevice: (o) =>
      request("POST", "/v1/devices", {
        json: { id: o.id, ...(o.requestTransfer ? { request_transfer: true } : {}) },
      }),
    updateDevice: (o) =>
      request("PUT", `/v1/devices/${seg(o.idOrName)}`, { json: { name: o.name, notes: o.notes } }),
    releaseDevice: (idOrName) => request("DELETE", `/v1/devices/${seg(idOrName)}`),
    registerDeviceKey: (o) =>
      request("POST", `/v1/provisioning/${seg(o.deviceId)}`, {
        json: {
          deviceID: o.deviceId,
          publicKey: o.publicKeyPem,
          algorithm: o.algorithm ?? "rsa",
          product_id: o.productId,
        },
      }),
    listProductDevices: (o) =>
      request("GET", `/v1/products/${seg(o.product)}/devices?page=${o.page ?? 1}&perPage=${o.perPage ?? 25}`),
    getClaimStatus: (claimId) => request("GET", `/v1/roost/claims/${seg(claimId)}`),
    importProductDevices: (o) =>
      request("POST", `/v1/products/${seg(o.product)}/devices`, { form: { file: o.ids.join("\n") } }),
  };
}
