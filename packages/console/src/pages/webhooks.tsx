/**
 * Webhooks: the user's hooks and, per product, the product's (`/v1/webhooks`, `/v1/products/:p/webhooks`):
 * list with state, create (the signing secret shown once), delete, enable/disable, rotate the secret, and a
 * hook's delivery log with a replay per delivery. Loaded only when opened. @see docs/webhooks.md
 */
import { useEffect, useState } from "preact/hooks";

import type { Api } from "../api.js";
import { errorText, formField } from "../api.js";
import { ErrorText, Field, Page } from "../components.js";
import { useLoad, useTick } from "../hooks.js";
import { href, navigate } from "../router.js";

/** A hook as `GET …/webhooks` lists it. */
export interface Webhook {
  id: string;
  event: string;
  url: string;
  requestType: string;
  deviceID?: string;
  created_at: string;
  disabled: boolean;
  responseTopic?: string;
  product_id?: number;
  roost: { disabled_reason: string | null; consecutive_failures: number; throttled_until: string | null };
}

/** One delivery of the log (`GET …/webhooks/:id/deliveries`). */
export interface Delivery {
  id: string;
  event: string;
  status: "pending" | "succeeded" | "failed";
  attempts: number;
  created_at: string;
  completed_at: string | null;
  replay_of: string | null;
  log: {
    time: string;
    attempt: number;
    status_code: number | null;
    error: string | null;
    latency_ms: number | null;
    response: string | null;
  }[];
}

/** How often an open delivery log asks for news, in ms (deliveries settle on the cloud's own schedule). */
const LOG_REFRESH_MS = 2000;
/** Characters of a receiver's answer shown in the log. */
const RESPONSE_CHARS = 80;

/** The API path of a scope's hooks. */
function hooksPath(product: string | undefined): string {
  return product ? `/v1/products/${encodeURIComponent(product)}/webhooks` : "/v1/webhooks";
}

/** The console path of a scope (and a hook in it). */
function pageHref(product: string | undefined, hookId?: string): string {
  const scope = product ? ["webhooks", "products", product] : ["webhooks"];
  return href(...scope, ...(hookId ? ["hook", hookId] : []));
}

/** The route's segments after `webhooks`: `[products, :p][hook, :id]`. */
export function WebhooksPage(props: { api: Api; segments: string[] }) {
  let rest = props.segments;
  let product: string | undefined;
  if (rest[0] === "products" && rest[1]) {
    product = rest[1];
    rest = rest.slice(2);
  }
  const hookId = rest[0] === "hook" ? rest[1] : undefined;
  return hookId ? (
    <HookPage api={props.api} product={product} hookId={hookId} />
  ) : (
    <HooksPage api={props.api} product={product} />
  );
}

/** "Disabled by its owner", "Disabled after 100 consecutive failures; last: HTTP 503". */
function disabledText(reason: string | null): string {
  if (!reason) return "Disabled";
  return /^disabled\b/i.test(reason) ? `D${reason.slice(1)}` : `Disabled: ${reason}`;
}

/** Active, throttled (paused after failures, retrying later) or disabled with its reason. */
function HookState(props: { hook: Webhook; now: number }) {
  const { hook, now } = props;
  if (hook.disabled)
    return (
      <span class="hook-state failure" data-hook-state="disabled">
        {disabledText(hook.roost.disabled_reason)}
      </span>
    );
  const until = hook.roost.throttled_until ? Date.parse(hook.roost.throttled_until) : 0;
  if (until > now)
    return (
      <span class="hook-state warn" data-hook-state="throttled">
        Throttled after {hook.roost.consecutive_failures} failures; retries at{" "}
        {new Date(until).toLocaleTimeString()}
      </span>
    );
  return (
    <span class="hook-state ok" data-hook-state="active">
      Active
      {hook.roost.consecutive_failures > 0 ? ` (${hook.roost.consecutive_failures} recent failures)` : ""}
    </span>
  );
}

/** A secret shown once, with a copy button. */
function Secret(props: { label: string; secret: string; what: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <div class="card notice stack" role="status">
      <p>
        {props.what} Its signing secret is shown <strong>only now</strong>: copy it to your receiver, which
        checks <span class="mono">X-Roost-Signature</span> with it.
      </p>
      <div class="row">
        <input class="mono grow" readOnly aria-label={props.label} value={props.secret} />
        <button
          type="button"
          class="secondary"
          onClick={() =>
            void navigator.clipboard.writeText(props.secret).then(
              () => setCopied(true),
              () => setCopied(false),
            )
          }
        >
          {copied ? "Copied" : "Copy"}
        </button>
      </div>
    </div>
  );
}

/** "Name: value" lines to a headers object; refuses a line without a colon. */
export function parseHeaders(text: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    if (line.trim().length === 0) continue;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new Error(`Header line "${line.trim()}" needs the form "Name: value".`);
    headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  }
  return headers;
}

/** The create form's fields as the API's body. */
function hookBody(data: FormData): Record<string, unknown> {
  const body: Record<string, unknown> = {
    event: formField(data, "event"),
    url: formField(data, "url"),
    requestType: formField(data, "requestType") || "POST",
  };
  const device = formField(data, "device").trim();
  if (device) body.deviceID = device;
  const json = formField(data, "json").trim();
  if (json) {
    // A JSON object is sent as one (templates in its strings); anything else as a template string.
    try {
      const parsed: unknown = JSON.parse(json);
      body.json = parsed !== null && typeof parsed === "object" ? parsed : json;
    } catch {
      body.json = json;
    }
  }
  const headers = parseHeaders(formField(data, "headers"));
  if (Object.keys(headers).length > 0) body.headers = headers;
  const topic = formField(data, "responseTopic").trim();
  if (topic) body.responseTopic = topic;
  return body;
}

function HooksPage(props: { api: Api; product: string | undefined }) {
  const { api, product } = props;
  const products = useLoad(() => api.client.listProducts(), [api]);
  const hooks = useLoad(() => api.call<Webhook[]>("GET", hooksPath(product)), [api, product]);
  const now = useTick(5000);
  const [created, setCreated] = useState<{ id: string; secret: string }>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const act = (method: string, path: string, body?: Record<string, unknown>) => {
    setError(undefined);
    api.call(method, path, body).then(
      () => hooks.reload(),
      (caught: unknown) => setError(errorText(caught)),
    );
  };
  return (
    <Page title="Webhooks">
      <div class="row">
        <Field label="Whose hooks">
          <select
            value={product ?? ""}
            onChange={(event) => navigate(pageHref(event.currentTarget.value || undefined))}
          >
            <option value="">Your devices</option>
            {(products.value ?? []).map((item) => (
              <option key={item.id} value={String(item.id)}>
                Product {item.name} (#{item.id})
              </option>
            ))}
          </select>
        </Field>
      </div>
      <ErrorText error={hooks.error ?? error} />
      {hooks.value?.length === 0 ? <p class="empty">No webhooks yet.</p> : null}
      {hooks.value && hooks.value.length > 0 ? (
        <table class="list stacked" aria-label="Webhooks">
          <thead>
            <tr>
              <th scope="col">Event prefix</th>
              <th scope="col">URL</th>
              <th scope="col">State</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {hooks.value.map((hook) => (
              <tr key={hook.id} data-hook-id={hook.id}>
                <td class="mono" data-label="Event prefix">
                  <a href={pageHref(product, hook.id)}>{hook.event}</a>
                </td>
                <td class="data" data-label="URL">
                  <span class="muted">{hook.requestType}</span> <span class="mono">{hook.url}</span>
                  {hook.deviceID ? <span class="muted"> · device {hook.deviceID}</span> : null}
                </td>
                <td data-label="State">
                  <HookState hook={hook} now={now} />
                </td>
                <td class="actions">
                  <a href={pageHref(product, hook.id)}>Deliveries</a>
                  <button
                    type="button"
                    class="link"
                    onClick={() =>
                      act("PUT", `${hooksPath(product)}/${hook.id}`, { disabled: !hook.disabled })
                    }
                  >
                    {hook.disabled ? "Enable" : "Disable"}
                    <span class="sr-only"> {hook.event}</span>
                  </button>
                  <button
                    type="button"
                    class="link danger"
                    onClick={() => {
                      if (!globalThis.confirm(`Delete the webhook on ${hook.event}, with its delivery log?`))
                        return;
                      act("DELETE", `${hooksPath(product)}/${hook.id}`);
                    }}
                  >
                    Delete<span class="sr-only"> {hook.event}</span>
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {created ? (
        <Secret label="Webhook secret" secret={created.secret} what={`Webhook ${created.id} created.`} />
      ) : null}
      <form
        class="card stack"
        aria-labelledby="new-hook"
        onSubmit={(event) => {
          event.preventDefault();
          const form = event.currentTarget;
          setError(undefined);
          let body;
          try {
            body = hookBody(new FormData(form));
          } catch (caught) {
            return setError(errorText(caught));
          }
          setBusy(true);
          api
            .call<{ id: string; secret: string }>("POST", hooksPath(product), body)
            .then((answer) => {
              setCreated({ id: answer.id, secret: answer.secret });
              form.reset();
              hooks.reload();
            })
            .catch((caught: unknown) => setError(errorText(caught)))
            .finally(() => setBusy(false));
        }}
      >
        <h2 id="new-hook">New webhook</h2>
        <div class="row">
          <Field label="Event prefix" hint="temp matches temp, temperature and temp/kitchen">
            <input name="event" required class="mono" />
          </Field>
          <Field label="Request type">
            <select name="requestType">
              {["POST", "GET", "PUT", "PATCH", "DELETE"].map((method) => (
                <option key={method}>{method}</option>
              ))}
            </select>
          </Field>
        </div>
        <Field label="URL" hint="http or https; may use templates such as {{{PARTICLE_DEVICE_ID}}}">
          <input name="url" type="url" required class="mono" placeholder="https://example.com/hook" />
        </Field>
        <Field label="Device filter" hint="a device ID or name; empty for every device">
          <input name="device" class="mono" />
        </Field>
        <Field
          label="JSON body (template)"
          hint='merged with event, data, coreid, published_at; e.g. {"temp": "{{temp}}"}'
        >
          <textarea name="json" rows={4} class="mono" />
        </Field>
        <Field label="Headers" hint='one "Name: value" per line'>
          <textarea name="headers" rows={2} class="mono" />
        </Field>
        <Field label="Response topic" hint="replaces hook-response/<event> for the answer sent to the device">
          <input name="responseTopic" class="mono" />
        </Field>
        <button type="submit" disabled={busy}>
          Create webhook
        </button>
      </form>
    </Page>
  );
}

function HookPage(props: { api: Api; product: string | undefined; hookId: string }) {
  const { api, product, hookId } = props;
  const path = `${hooksPath(product)}/${encodeURIComponent(hookId)}`;
  const hook = useLoad(() => api.call<Webhook>("GET", path), [api, path]);
  const log = useLoad(
    async () => (await api.call<{ deliveries: Delivery[] }>("GET", `${path}/deliveries?limit=50`)).deliveries,
    [api, path],
  );
  const now = useTick(5000);
  const [auto, setAuto] = useState(true);
  const [secret, setSecret] = useState<string>();
  const [error, setError] = useState<string>();
  const [note, setNote] = useState<string>();
  const reloadLog = log.reload;
  useEffect(() => {
    if (!auto) return undefined;
    const timer = setInterval(reloadLog, LOG_REFRESH_MS);
    return () => clearInterval(timer);
  }, [auto, reloadLog]);
  const value = hook.value;
  return (
    <Page title={value ? `Webhook on ${value.event}` : "Webhook"}>
      <p>
        <a href={pageHref(product)}>← All webhooks{product ? ` of product ${product}` : ""}</a>
      </p>
      <ErrorText error={hook.error ?? error} />
      {value ? (
        <section class="card stack" aria-labelledby="hook-facts">
          <h2 id="hook-facts">Settings</h2>
          <dl class="facts">
            <dt>Event prefix</dt>
            <dd class="mono">{value.event}</dd>
            <dt>URL</dt>
            <dd class="mono data">
              {value.requestType} {value.url}
            </dd>
            <dt>Device</dt>
            <dd class="mono">{value.deviceID ?? "any"}</dd>
            <dt>State</dt>
            <dd>
              <HookState hook={value} now={now} />
            </dd>
          </dl>
          <div class="row">
            <button
              type="button"
              class="secondary"
              onClick={() => {
                api.call("PUT", path, { disabled: !value.disabled }).then(
                  () => hook.reload(),
                  (caught: unknown) => setError(errorText(caught)),
                );
              }}
            >
              {value.disabled ? "Enable" : "Disable"}
            </button>
            <button
              type="button"
              class="secondary"
              onClick={() => {
                if (!globalThis.confirm("Rotate the secret? The current one stops working at once.")) return;
                api.call<{ secret: string }>("POST", `${path}/secret`).then(
                  (answer) => setSecret(answer.secret),
                  (caught: unknown) => setError(errorText(caught)),
                );
              }}
            >
              Rotate secret
            </button>
          </div>
          {secret ? <Secret label="New webhook secret" secret={secret} what="New secret made." /> : null}
        </section>
      ) : null}
      <section class="card stack" aria-labelledby="deliveries">
        <div class="row">
          <h2 id="deliveries" class="grow">
            Delivery log
          </h2>
          <label class="choice">
            <input type="checkbox" checked={auto} onChange={(e) => setAuto(e.currentTarget.checked)} />
            Refresh automatically
          </label>
          <button type="button" class="secondary" onClick={reloadLog}>
            Refresh
          </button>
        </div>
        <ErrorText error={log.error} />
        {note ? <p role="status">{note}</p> : null}
        {log.value?.length === 0 ? <p class="empty">No deliveries yet.</p> : null}
        {log.value && log.value.length > 0 ? (
          <table class="list stacked" aria-label="Deliveries">
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Event</th>
                <th scope="col">Status</th>
                <th scope="col">Latency</th>
                <th scope="col">Attempt</th>
                <th scope="col">Response</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {log.value.map((delivery) => {
                const last = delivery.log.at(-1);
                const response = last?.error ?? last?.response ?? "";
                return (
                  <tr key={delivery.id} data-delivery-id={delivery.id} data-delivery-status={delivery.status}>
                    <td data-label="Time">{new Date(last?.time ?? delivery.created_at).toLocaleString()}</td>
                    <td class="mono" data-label="Event">
                      {delivery.event}
                      {delivery.replay_of ? <span class="muted"> (replay)</span> : null}
                    </td>
                    <td
                      data-label="Status"
                      class={
                        delivery.status === "succeeded" ? "ok" : delivery.status === "failed" ? "failure" : ""
                      }
                    >
                      {delivery.status}
                      {last?.status_code ? ` · HTTP ${last.status_code}` : ""}
                    </td>
                    <td data-label="Latency">
                      {typeof last?.latency_ms === "number" ? `${last.latency_ms} ms` : ""}
                    </td>
                    <td data-label="Attempt">{delivery.attempts}</td>
                    <td class="mono data" data-label="Response" title={response}>
                      {response.length > RESPONSE_CHARS ? `${response.slice(0, RESPONSE_CHARS)}…` : response}
                    </td>
                    <td class="actions">
                      <button
                        type="button"
                        class="link"
                        onClick={() => {
                          setNote(undefined);
                          api.call<{ id: string }>("POST", `${path}/deliveries/${delivery.id}/replay`).then(
                            (answer) => {
                              setNote(`Replaying ${delivery.event} as delivery ${answer.id}.`);
                              reloadLog();
                            },
                            (caught: unknown) => setError(errorText(caught)),
                          );
                        }}
                      >
                        Replay<span class="sr-only"> {delivery.event}</span>
                      </button>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        ) : null}
      </section>
    </Page>
  );
}
