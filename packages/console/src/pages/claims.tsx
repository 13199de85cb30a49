/**
 * Claim codes: create one, show it with a QR code and its expiry countdown, and watch its status live —
 * pending, each attempt (a refusal's reason in plain words, with what to do), claimed.
 */
import { useEffect, useState } from "preact/hooks";
import { renderSVG } from "uqr";

import type { ClaimStatus } from "@roost/client";

import type { Api } from "../api.js";
import { errorText } from "../api.js";
import { describeReason } from "../claim-reasons.js";
import { ErrorText, LiveState, Page } from "../components.js";
import { useEventStream, useLoad, useTick } from "../hooks.js";
import { href, navigate } from "../router.js";

/** The code itself is shown once by the API; the console keeps it for this tab only. */
const codeKey = (claimId: string) => `roost.claim-code.${claimId}`;

const STATUS_TEXT: Record<ClaimStatus["status"], string> = {
  pending: "Waiting for a device",
  claimed: "Claimed",
  expired: "Expired",
  revoked: "Withdrawn",
};

function countdown(expiresAt: string, now: number): string {
  const seconds = Math.max(0, Math.round((Date.parse(expiresAt) - now) / 1000));
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

function CreateButton(props: { api: Api }) {
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  return (
    <div>
      <button
        type="button"
        disabled={busy}
        onClick={() => {
          setBusy(true);
          props.api.client
            .createClaimCode()
            .then((created) => {
              sessionStorage.setItem(codeKey(created.claim_id), created.claim_code);
              navigate(href("claims", created.claim_id));
            })
            .catch((caught: unknown) => setError(errorText(caught)))
            .finally(() => setBusy(false));
        }}
      >
        Create a claim code
      </button>
      <ErrorText error={error} />
    </div>
  );
}

export function ClaimsPage(props: { api: Api }) {
  const { api } = props;
  const claims = useLoad(() => api.listClaims(), [api]);
  const now = useTick(1000);
  useEventStream({ api, path: "/v1/devices/events", prefix: "roost/claim", onEvent: () => claims.reload() });
  return (
    <Page title="Claim codes" actions={<CreateButton api={api} />}>
      <p class="muted">
        A claim code lets a device join your account: setup hands it to the device, which presents it to the
        cloud. Each code works once and lasts one hour.
      </p>
      <ErrorText error={claims.error} />
      {claims.value?.length === 0 ? <p class="empty">No claim codes yet.</p> : null}
      <table class="list">
        <thead>
          <tr>
            <th scope="col">Created</th>
            <th scope="col">Status</th>
            <th scope="col">Attempts</th>
            <th scope="col">Device</th>
          </tr>
        </thead>
        <tbody>
          {(claims.value ?? []).map((claim) => (
            <tr key={claim.claim_id}>
              <td>
                <a href={href("claims", claim.claim_id)}>{new Date(claim.created_at).toLocaleString()}</a>
              </td>
              <td>
                {STATUS_TEXT[claim.status]}
                {claim.status === "pending" ? ` (${countdown(claim.expires_at, now)} left)` : ""}
              </td>
              <td>{claim.attempts.length}</td>
              <td class="mono">{claim.device_id ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Page>
  );
}

export function ClaimPage(props: { api: Api; claimId: string }) {
  const { api, claimId } = props;
  const claim = useLoad(() => api.client.getClaimStatus(claimId), [api, claimId]);
  const stream = useEventStream({
    api,
    path: "/v1/devices/events",
    prefix: "roost/claim",
    onEvent: (event) => {
      try {
        if ((JSON.parse(event.data ?? "{}") as { claim_id?: string }).claim_id === claimId) claim.reload();
      } catch {
        claim.reload();
      }
    },
  });
  const now = useTick(1000);
  const code = sessionStorage.getItem(codeKey(claimId));
  const value = claim.value;
  const expired = value?.status === "pending" && Date.parse(value.expires_at) <= now;
  // When the countdown reaches zero the cloud's answer changes to expired: fetch it.
  useEffect(() => {
    if (expired) claim.reload();
  }, [expired]);
  const [copied, setCopied] = useState(false);

  return (
    <Page title="Claim code" actions={<LiveState state={stream} />}>
      <ErrorText error={claim.error} />
      {value ? (
        <>
          <p class={`status ${value.status}`} role="status" data-claim-status={value.status}>
            {STATUS_TEXT[value.status]}
            {value.status === "pending" ? (
              <>
                {" "}
                — expires in <span class="mono">{countdown(value.expires_at, now)}</span>
              </>
            ) : null}
            {value.status === "claimed" && value.device_id ? (
              <>
                {" "}
                by <a href={href("devices", value.device_id)}>{value.device_id}</a>
              </>
            ) : null}
          </p>
          {code && value.status === "pending" ? (
            <div class="card code">
              <div
                class="qr"
                role="img"
                aria-label="QR code of the claim code"
                dangerouslySetInnerHTML={{ __html: renderSVG(code, { border: 2 }) }}
              />
              <div class="stack">
                <label for="claim-code">The code (give it to the device during setup)</label>
                <input id="claim-code" class="mono" readOnly value={code} />
                <button
                  type="button"
                  onClick={() => void navigator.clipboard.writeText(code).then(() => setCopied(true))}
                >
                  {copied ? "Copied" : "Copy"}
                </button>
              </div>
            </div>
          ) : null}
          <section class="card" aria-labelledby="timeline">
            <h2 id="timeline">Timeline</h2>
            <ol class="timeline">
              <li>
                <time dateTime={value.created_at}>{new Date(value.created_at).toLocaleString()}</time> created
              </li>
              {value.attempts.map((attempt) => {
                const text = describeReason(attempt.reason);
                return (
                  <li key={attempt.at} class={attempt.outcome} data-reason={attempt.reason}>
                    <time dateTime={attempt.at}>{new Date(attempt.at).toLocaleString()}</time>{" "}
                    <strong>{attempt.outcome === "claimed" ? "Claimed" : "Refused"}</strong>: device{" "}
                    <span class="mono">{attempt.device_id}</span>. {text.what}
                    {attempt.outcome === "refused" ? (
                      <span class="todo"> What to do: {text.todo}</span>
                    ) : null}
                  </li>
                );
              })}
              {value.status === "pending" ? (
                <li class="muted">Waiting for a device to present the code…</li>
              ) : null}
            </ol>
          </section>
        </>
      ) : null}
    </Page>
  );
}
