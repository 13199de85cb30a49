/** Small building blocks shared by the pages. */
import type { ComponentChildren } from "preact";

/** A page's heading and body; the heading takes focus on navigation so screen readers announce it. */
export function Page(props: { title: string; actions?: ComponentChildren; children: ComponentChildren }) {
  return (
    <section class="page" aria-labelledby="page-title">
      <header class="page-head">
        <h1 id="page-title" tabIndex={-1}>
          {props.title}
        </h1>
        {props.actions}
      </header>
      {props.children}
    </section>
  );
}

/** An error line (announced by screen readers). */
export function ErrorText(props: { error: string | undefined }) {
  return props.error ? (
    <p class="error" role="alert">
      {props.error}
    </p>
  ) : null;
}

/** An online/offline badge: a dot plus the word, never color alone. */
export function OnlineBadge(props: { online: boolean }) {
  return (
    <span class={`badge ${props.online ? "online" : "offline"}`} data-online={String(props.online)}>
      <span class="dot" aria-hidden="true" />
      {props.online ? "online" : "offline"}
    </span>
  );
}

/** The state of a live stream, as a small status line. */
export function LiveState(props: { state: string }) {
  return (
    <span class={`live ${props.state}`} role="status" data-stream={props.state}>
      {props.state === "live" ? "Live" : props.state === "connecting" ? "Connecting…" : "Reconnecting…"}
    </span>
  );
}

/** A labelled form field. */
export function Field(props: { label: string; hint?: string; children: ComponentChildren }) {
  return (
    <label class="field">
      <span class="label">{props.label}</span>
      {props.children}
      {props.hint ? <span class="hint">{props.hint}</span> : null}
    </label>
  );
}
