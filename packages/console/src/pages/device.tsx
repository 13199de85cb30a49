/**
 * One device: rename, call its functions, read its variables, its live events, its claim timeline, unclaim,
 * and any transfer requested for it.
 */
import { useState } from "preact/hooks";

import type { StreamEvent } from "@roost/client";

import type { Api } from "../api.js";
import { errorText, platformName } from "../api.js";
import { describeReason } from "../claim-reasons.js";
import { ErrorText, Field, LiveState, OnlineBadge, Page } from "../components.js";
import { ago, useEventStream, useLoad, useTick } from "../hooks.js";
import { href, navigate } from "../router.js";

const MAX_EVENTS = 100;

/** Variable types as Particle names them; Roost's device list currently sends the device's type codes. */
const VARIABLE_TYPE_NAMES: Record<string, string> = {
  "1": "bool",
  "2": "int32",
  "4": "string",
  "9": "double",
};

function FunctionCall(props: { api: Api; deviceId: string; name: string }) {
  const [arg, setArg] = useState("");
  const [result, setResult] = useState<string>();
  const [busy, setBusy] = useState(false);
  const id = `fn-${props.name}`;
  return (
    <form
      class="row"
      aria-label={`Call ${props.name}`}
      onSubmit={(event) => {
        event.preventDefault();
        setBusy(true);
        props.api
          .call<{ return_value: number }>(
            "POST",
            `/v1/devices/${encodeURIComponent(props.deviceId)}/${encodeURIComponent(props.name)}`,
            { arg },
          )
          .then(
            (answer) => setResult(`returned ${answer.return_value}`),
            (error: unknown) => setResult(`failed: ${errorText(error)}`),
          )
          .finally(() => setBusy(false));
      }}
    >
      <label for={id} class="mono">
        {props.name}
      </label>
      <input
        id={id}
        value={arg}
        placeholder="argument"
        onInput={(event) => setArg(event.currentTarget.value)}
      />
      <button type="submit" disabled={busy}>
        Call
      </button>
      <output class="result" data-function={props.name}>
        {result}
      </output>
    </form>
  );
}

function VariableRead(props: { api: Api; deviceId: string; name: string; type: unknown }) {
  const [value, setValue] = useState<string>();
  const [busy, setBusy] = useState(false);
  return (
    <div class="row">
      <span class="mono">{props.name}</span>
      <span class="muted">{VARIABLE_TYPE_NAMES[String(props.type)] ?? String(props.type)}</span>
      <button
        type="button"
        disabled={busy}
        aria-label={`Read ${props.name}`}
        onClick={() => {
          setBusy(true);
          props.api
            .call<{ result: unknown }>(
              "GET",
              `/v1/devices/${encodeURIComponent(props.deviceId)}/${encodeURIComponent(props.name)}`,
            )
            .then(
              (answer) => setValue(JSON.stringify(answer.result)),
              (error: unknown) => setValue(`failed: ${errorText(error)}`),
            )
            .finally(() => setBusy(false));
        }}
      >
        Read
      </button>
      <output class="result" data-variable={props.name}>
        {value}
      </output>
    </div>
  );
}

export function DevicePage(props: { api: Api; deviceId: string }) {
  const { api, deviceId } = props;
  const device = useLoad(() => api.client.getDevice(deviceId), [api, deviceId]);
  const attempts = useLoad(() => api.deviceClaims(deviceId), [api, deviceId]);
  const transfers = useLoad(
    async () => (await api.listTransfers()).filter((t) => t.device_id === deviceId && t.status === "pending"),
    [api, deviceId],
  );
  const [events, setEvents] = useState<StreamEvent[]>([]);
  const [online, setOnline] = useState<boolean>();
  const stream = useEventStream({
    api,
    path: `/v1/devices/${encodeURIComponent(deviceId)}/events`,
    onEvent: (event) => {
      if (event.name === "spark/status" && (event.data === "online" || event.data === "offline")) {
        setOnline(event.data === "online");
        if (event.data === "online") device.reload();
      }
      if (event.name.startsWith("roost/claim")) attempts.reload();
      setEvents((previous) => [event, ...previous].slice(0, MAX_EVENTS));
    },
  });
  const [name, setName] = useState<string>();
  const [error, setError] = useState<string>();
  const now = useTick(10_000);
  const value = device.value;

  const act = (work: () => Promise<unknown>) => {
    setError(undefined);
    work().catch((caught: unknown) => setError(errorText(caught)));
  };

  return (
    <Page title={value?.name ?? deviceId} actions={<LiveState state={stream} />}>
      <ErrorText error={device.error ?? error} />
      {value ? (
        <>
          <dl class="facts">
            <dt>Status</dt>
            <dd>
              <OnlineBadge online={online ?? value.online} />
            </dd>
            <dt>ID</dt>
            <dd class="mono">{value.id}</dd>
            <dt>Platform</dt>
            <dd>{platformName(value)}</dd>
            <dt>Product</dt>
            {/* A developer device reports its platform id as product id (spec/cloud-api.md §4). */}
            <dd>{value.product_id === value.platform_id ? "none" : value.product_id}</dd>
            <dt>Last heard</dt>
            <dd>{ago(value.last_heard, now)}</dd>
          </dl>

          <section class="card" aria-labelledby="rename">
            <h2 id="rename">Name</h2>
            <form
              class="row"
              onSubmit={(event) => {
                event.preventDefault();
                act(async () => {
                  await api.client.updateDevice({ idOrName: deviceId, name: name ?? value.name ?? "" });
                  device.reload();
                });
              }}
            >
              <Field label="New name">
                <input
                  name="name"
                  value={name ?? value.name ?? ""}
                  onInput={(event) => setName(event.currentTarget.value)}
                  pattern="[A-Za-z0-9_-]+"
                  title="Letters, digits, dashes and underscores"
                  required
                />
              </Field>
              <button type="submit">Rename</button>
            </form>
          </section>

          <section class="card" aria-labelledby="functions">
            <h2 id="functions">Functions</h2>
            {value.functions.length === 0 ? (
              <p class="muted">None (or the device has not described itself yet).</p>
            ) : null}
            {value.functions.map((fn) => (
              <FunctionCall key={fn} api={api} deviceId={value.id} name={fn} />
            ))}
          </section>

          <section class="card" aria-labelledby="variables">
            <h2 id="variables">Variables</h2>
            {Object.keys(value.variables).length === 0 ? <p class="muted">None.</p> : null}
            {Object.entries(value.variables).map(([variable, type]) => (
              <VariableRead key={variable} api={api} deviceId={value.id} name={variable} type={type} />
            ))}
          </section>

          {transfers.value && transfers.value.length > 0 ? (
            <section class="card" aria-labelledby="transfer">
              <h2 id="transfer">Transfer requests</h2>
              {transfers.value.map((transfer) => (
                <div class="row" key={transfer.id}>
                  <span>
                    {transfer.direction === "incoming"
                      ? `${transfer.requested_by ?? "Someone"} asks for this device.`
                      : "You asked for this device."}
                  </span>
                  {transfer.direction === "incoming"
                    ? (["approve", "deny"] as const).map((decision) => (
                        <button
                          key={decision}
                          type="button"
                          class={decision === "deny" ? "secondary" : undefined}
                          onClick={() =>
                            act(async () => {
                              await api.call("POST", `/v1/roost/transfers/${transfer.id}/${decision}`);
                              if (decision === "approve") navigate(href("transfers"));
                              else transfers.reload();
                            })
                          }
                        >
                          {decision === "approve" ? "Approve" : "Deny"}
                        </button>
                      ))
                    : null}
                </div>
              ))}
            </section>
          ) : null}

          <section class="card" aria-labelledby="claims">
            <h2 id="claims">Claim attempts</h2>
            <ErrorText error={attempts.error} />
            {attempts.value?.length === 0 ? <p class="muted">None recorded.</p> : null}
            <ol class="timeline">
              {(attempts.value ?? []).map((attempt) => (
                <li key={attempt.at} class={attempt.outcome}>
                  <time dateTime={attempt.at}>{new Date(attempt.at).toLocaleString()}</time>{" "}
                  <strong>{attempt.outcome}</strong> ({attempt.source}): {describeReason(attempt.reason).what}
                </li>
              ))}
            </ol>
          </section>

          <section class="card" aria-labelledby="events">
            <h2 id="events">Events</h2>
            {events.length === 0 ? <p class="muted">Waiting for events…</p> : null}
            <ol class="events">
              {events.map((event, index) => (
                <li key={`${event.published_at}-${index}`}>
                  <time dateTime={event.published_at}>
                    {new Date(event.published_at).toLocaleTimeString()}
                  </time>{" "}
                  <span class="mono">{event.name}</span> <span class="data">{event.data}</span>
                </li>
              ))}
            </ol>
          </section>

          <section class="card danger" aria-labelledby="unclaim">
            <h2 id="unclaim">Unclaim</h2>
            <p>Release this device from your account: anyone can then claim it.</p>
            <button
              type="button"
              class="danger"
              onClick={() => {
                if (!globalThis.confirm(`Unclaim ${value.name ?? value.id}?`)) return;
                act(async () => {
                  await api.client.releaseDevice(value.id);
                  navigate(href("devices"));
                });
              }}
            >
              Unclaim device
            </button>
          </section>
        </>
      ) : null}
    </Page>
  );
}
