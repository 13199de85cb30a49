/** Events: the account's live event stream, with a name filter, pause and copy. */
import { useRef, useState } from "preact/hooks";

import type { StreamEvent } from "@roost/client";

import type { Api } from "../api.js";
import { Field, LiveState, Page } from "../components.js";
import { useEventStream } from "../hooks.js";

const MAX_EVENTS = 500;

export function EventsPage(props: { api: Api }) {
  const [prefix, setPrefix] = useState("");
  const [applied, setApplied] = useState("");
  const [events, setEvents] = useState<StreamEvent[]>([]);
  const [paused, setPaused] = useState(false);
  const [missed, setMissed] = useState(0);
  const [copied, setCopied] = useState(false);
  const pausedRef = useRef(paused);
  pausedRef.current = paused;
  const stream = useEventStream({
    api: props.api,
    path: "/v1/devices/events",
    prefix: applied || undefined,
    onEvent: (event) => {
      if (pausedRef.current) setMissed((count) => count + 1);
      else setEvents((previous) => [event, ...previous].slice(0, MAX_EVENTS));
    },
  });
  return (
    <Page title="Events" actions={<LiveState state={stream} />}>
      <form
        class="filters"
        role="search"
        onSubmit={(event) => {
          event.preventDefault();
          setEvents([]);
          setApplied(prefix.trim());
        }}
      >
        <Field label="Event name starts with">
          <input
            value={prefix}
            placeholder="e.g. spark/status"
            onInput={(e) => setPrefix(e.currentTarget.value)}
          />
        </Field>
        <button type="submit">Filter</button>
        <button
          type="button"
          class="secondary"
          aria-pressed={paused}
          onClick={() => {
            setPaused(!paused);
            setMissed(0);
          }}
        >
          {paused ? "Resume" : "Pause"}
        </button>
        <button
          type="button"
          class="secondary"
          onClick={() =>
            void navigator.clipboard
              .writeText(events.map((event) => JSON.stringify(event)).join("\n"))
              .then(() => setCopied(true))
          }
        >
          {copied ? "Copied" : "Copy"}
        </button>
      </form>
      {paused ? (
        <p class="notice" role="status">
          Paused; {missed} events not shown.
        </p>
      ) : null}
      {events.length === 0 ? <p class="muted">Waiting for events…</p> : null}
      <table class="list events-table">
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Name</th>
            <th scope="col">Data</th>
            <th scope="col">Device</th>
          </tr>
        </thead>
        <tbody>
          {events.map((event, index) => (
            <tr key={`${event.published_at}-${index}`}>
              <td>{new Date(event.published_at).toLocaleTimeString()}</td>
              <td class="mono">{event.name}</td>
              <td class="data">{event.data}</td>
              <td class="mono">{event.coreid}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Page>
  );
}
