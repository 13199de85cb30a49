import { createHmac } from "node:crypto";
import Mustache from "mustache";

import { BadRequestError } from "../errors.js";
import type { OutgoingRequest } from "./send.js";

/** The HTTP methods a hook may use. @see docs/webhooks.md "Create" */
export const REQUEST_TYPES = ["GET", "POST", "PUT", "DELETE", "PATCH"] as const;

/** A JSON value as a template: strings anywhere in it (keys included) are mustache templates. */
export type JsonTemplate =
  string | number | boolean | null | JsonTemplate[] | { [key: string]: JsonTemplate };

/** Everything of a hook that shapes its request and its answer to the device (Particle's field names). */
export interface HookSettings {
  readonly name: string | null;
  readonly json: JsonTemplate | undefined;
  readonly form: Readonly<Record<string, JsonTemplate>> | undefined;
  readonly query: Readonly<Record<string, JsonTemplate>> | undefined;
  readonly headers: Readonly<Record<string, string>> | undefined;
  /** HTTP Basic (`{username, password}`, the docs' form) or a bearer token (`{bearer}`, api-js's typedef). */
  readonly auth:
    { readonly username: string; readonly password: string } | { readonly bearer: string } | undefined;
  readonly body: string | undefined;
  readonly responseTemplate: string | undefined;
  readonly responseTopic: string | undefined;
  readonly errorResponseTopic: string | undefined;
  readonly noDefaults: boolean;
  readonly rejectUnauthorized: boolean;
  readonly mydevices: boolean;
}

/** The event a delivery carries, with what templates may name. */
export interface HookEvent {
  readonly name: string;
  readonly data: string | null;
  readonly coreid: string;
  readonly publishedAt: string;
  readonly productId: number | null;
  readonly productVersion: number | null;
  readonly isPublic: boolean;
  /** The device's owner when published (a user or customer id), for routing the answer. */
  readonly ownerUserId: string | null;
  readonly ownerCustomerId: string | null;
}

/** Header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256>`. @see docs/webhooks.md "Signatures" */
export const SIGNATURE_HEADER = "x-roost-signature";
/** Header carrying the delivery id, the same on every retry of it: receivers dedupe on it. */
export const DELIVERY_HEADER = "x-roost-delivery";
/** Header carrying, on a replay, the id of the delivery replayed. */
export const REPLAY_HEADER = "x-roost-replay-of";
/** Header carrying the hook id. */
export const HOOK_HEADER = "x-roost-hook";

/** `t=…,v1=…` for a body signed at `timestampSeconds`: HMAC-SHA256 over `"<t>.<body>"`. */
export function signatureHeader(options: { secret: string; timestampSeconds: number; body: string }): string {
  const mac = createHmac("sha256", options.secret)
    .update(`${options.timestampSeconds}.${options.body}`, "utf8")
    .digest("hex");
  return `t=${options.timestampSeconds},v1=${mac}`;
}

/**
 * What a template may name: the keys of the event data when it is a JSON object (so `{{temp}}` or
 * `{{a.b}}`), then Particle's variables, which win over data keys of the same name.
 * @see docs/webhooks.md "Templates"
 */
export function templateContext(event: HookEvent): Record<string, unknown> {
  let data: unknown;
  try {
    data = event.data === null ? undefined : JSON.parse(event.data);
  } catch {
    data = undefined;
  }
  const fromData = typeof data === "object" && data !== null && !Array.isArray(data) ? data : {};
  const productId = event.productId === null ? "" : String(event.productId);
  const productVersion = event.productVersion === null ? "" : String(event.productVersion);
  return {
    ...fromData,
    PARTICLE_EVENT_NAME: event.name,
    PARTICLE_EVENT_VALUE: event.data ?? "",
    PARTICLE_DEVICE_ID: event.coreid,
    PARTICLE_PUBLISHED_AT: event.publishedAt,
    PRODUCT_ID: productId,
    PRODUCT_VERSION: productVersion,
    // The names of Particle's first webhooks, still in many published hook files.
    SPARK_EVENT_NAME: event.name,
    SPARK_EVENT_VALUE: event.data ?? "",
    SPARK_CORE_ID: event.coreid,
    SPARK_PUBLISHED_AT: event.publishedAt,
  };
}

/** Renders one template string. Mustache's `{{x}}` escapes HTML, `{{{x}}}` does not, as in Particle's docs. */
export function render(template: string, context: Record<string, unknown>): string {
  return Mustache.render(template, context);
}

function renderJson(template: JsonTemplate, context: Record<string, unknown>): JsonTemplate {
  if (typeof template === "string") return render(template, context);
  if (Array.isArray(template)) return template.map((item) => renderJson(item, context));
  if (typeof template === "object" && template !== null)
    return Object.fromEntries(
      Object.entries(template).map(([key, value]) => [render(key, context), renderJson(value, context)]),
    );
  return template;
}

function renderFields(
  template: Readonly<Record<string, JsonTemplate>>,
  context: Record<string, unknown>,
): Record<string, string> {
  const rendered = renderJson(template, context) as Record<string, JsonTemplate>;
  return Object.fromEntries(
    Object.entries(rendered).map(([key, value]) => [
      key,
      typeof value === "string" ? value : JSON.stringify(value),
    ]),
  );
}

/** The fields every request carries unless `noDefaults`. @see docs/webhooks.md "Default body" */
function defaultFields(event: HookEvent): Record<string, string> {
  return {
    event: event.name,
    data: event.data ?? "",
    published_at: event.publishedAt,
    coreid: event.coreid,
  };
}

/**
 * The request a hook makes for an event: URL with `query`, method, headers with `auth`, and the body from
 * `json`, `form` or `body` (the default fields merged in unless `noDefaults`; with none of them, the
 * default fields as a form, or as the query of a GET/DELETE). Roost's own headers and signature are added
 * by {@link signRequest}. @see docs/webhooks.md
 */
export function renderRequest(options: {
  url: string;
  method: string;
  settings: HookSettings;
  event: HookEvent;
}): OutgoingRequest {
  const { settings, event } = options;
  const context = templateContext(event);
  const url = new URL(render(options.url, context));
  const method = options.method.toUpperCase();
  const headers: Record<string, string> = {};
  const defaults = settings.noDefaults ? {} : defaultFields(event);
  let body: string | undefined;
  if (settings.json !== undefined) {
    let json: unknown;
    if (typeof settings.json === "string") {
      const text = render(settings.json, context);
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
        body = text;
      }
    } else {
      json = renderJson(settings.json, context);
    }
    if (body === undefined) {
      const merged =
        typeof json === "object" && json !== null && !Array.isArray(json) ? { ...defaults, ...json } : json;
      body = JSON.stringify(merged);
    }
    headers["content-type"] = "application/json";
  } else if (settings.form !== undefined) {
    body = new URLSearchParams({ ...defaults, ...renderFields(settings.form, context) }).toString();
    headers["content-type"] = "application/x-www-form-urlencoded";
  } else if (settings.body !== undefined) {
    body = render(settings.body, context);
  } else if (Object.keys(defaults).length > 0) {
    if (method === "GET" || method === "DELETE") {
      for (const [key, value] of Object.entries(defaults)) url.searchParams.append(key, value);
    } else {
      body = new URLSearchParams(defaults).toString();
      headers["content-type"] = "application/x-www-form-urlencoded";
    }
  }
  if (settings.query)
    for (const [key, value] of Object.entries(renderFields(settings.query, context)))
      url.searchParams.append(key, value);
  if (settings.auth && "bearer" in settings.auth) {
    headers.authorization = `Bearer ${render(settings.auth.bearer, context)}`;
  } else if (settings.auth) {
    const user = render(settings.auth.username, context);
    const password = render(settings.auth.password, context);
    headers.authorization = `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
  }
  for (const [name, value] of Object.entries(settings.headers ?? {}))
    headers[name.toLowerCase()] = render(value, context);
  headers["user-agent"] ??= "Roost-Webhooks/1";
  return { url: url.toString(), method, headers, body };
}

/** Adds Roost's delivery, hook and signature headers (the timestamp is the sending time). */
export function signRequest(
  request: OutgoingRequest,
  options: {
    secret: string;
    hookId: string;
    deliveryId: string;
    replayOf?: string | null;
    timestampSeconds: number;
  },
): OutgoingRequest {
  return {
    ...request,
    headers: {
      ...request.headers,
      [HOOK_HEADER]: options.hookId,
      [DELIVERY_HEADER]: options.deliveryId,
      ...(options.replayOf ? { [REPLAY_HEADER]: options.replayOf } : {}),
      [SIGNATURE_HEADER]: signatureHeader({
        secret: options.secret,
        timestampSeconds: options.timestampSeconds,
        body: request.body ?? "",
      }),
    },
  };
}

/** Checks that every template in the settings parses, so a broken hook is refused at creation. */
export function checkTemplates(values: readonly unknown[]): void {
  const visit = (value: unknown): void => {
    if (typeof value === "string") {
      try {
        Mustache.parse(value);
      } catch (error) {
        throw new BadRequestError(`invalid template ${JSON.stringify(value)}: ${(error as Error).message}`);
      }
    } else if (Array.isArray(value)) value.forEach(visit);
    else if (typeof value === "object" && value !== null)
      for (const [key, item] of Object.entries(value)) {
        visit(key);
        visit(item);
      }
  };
  values.forEach(visit);
}
