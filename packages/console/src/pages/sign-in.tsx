/** Sign in, sign up (when the server allows it) and the one-time sign-in link of `roost dev`. */
import { useEffect, useState } from "preact/hooks";

import { createApiClient, isApiError } from "@roost/client";

import { CLOUD_URL, errorText, exchangeSignInLink, formField } from "../api.js";
import { ErrorText, Field } from "../components.js";
import type { Route } from "../router.js";
import { href, navigate } from "../router.js";
import { saveSession, saveSoftApUrl } from "../session.js";

const anonymous = createApiClient({ baseUrl: CLOUD_URL });

async function signIn(username: string, password: string): Promise<void> {
  const { access_token: token } = await anonymous.login({ username, password });
  saveSession({ token, username });
  navigate(href("devices"));
}

function CredentialsForm(props: {
  submit: string;
  onSubmit: (username: string, password: string) => Promise<void>;
}) {
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  return (
    <form
      class="card stack"
      onSubmit={(event) => {
        event.preventDefault();
        const data = new FormData(event.currentTarget);
        setBusy(true);
        setError(undefined);
        props
          .onSubmit(formField(data, "username"), formField(data, "password"))
          .catch((caught: unknown) => setError(errorText(caught)))
          .finally(() => setBusy(false));
      }}
    >
      <Field label="Email">
        <input name="username" type="email" autoComplete="username" required />
      </Field>
      <Field label="Password">
        <input name="password" type="password" autoComplete="current-password" required />
      </Field>
      <ErrorText error={error} />
      <button type="submit" disabled={busy}>
        {props.submit}
      </button>
    </form>
  );
}

/** The sign-in form. */
export function SignInPage() {
  return (
    <section class="page">
      <h1>Sign in to Roost</h1>
      <CredentialsForm submit="Sign in" onSubmit={signIn} />
      <p>
        No account? <a href={href("sign-up")}>Sign up</a> (when this server allows it).
      </p>
    </section>
  );
}

/** The sign-up form: `POST /v1/users`, then sign in. */
export function SignUpPage() {
  return (
    <section class="page">
      <h1>Create an account</h1>
      <CredentialsForm
        submit="Sign up"
        onSubmit={async (username, password) => {
          try {
            await anonymous.signUp({ username, password });
          } catch (error) {
            if (isApiError(error) && (error.status === 403 || error.status === 404))
              throw new Error("Sign-up is closed on this server: ask its administrator for an account.");
            throw error;
          }
          await signIn(username, password);
        }}
      />
      <p>
        Have an account? <a href={href("sign-in")}>Sign in</a>.
      </p>
    </section>
  );
}

/**
 * `#/sign-in-link?token=…&softap=…`: spends the link's one-time token for a session, remembers the SoftAP
 * address, and leaves no token in the history.
 */
export function SignInLinkPage(props: { route: Route }) {
  const [error, setError] = useState<string>();
  const token = props.route.query.get("token") ?? "";
  const softap = props.route.query.get("softap");
  useEffect(() => {
    void (async () => {
      try {
        const session = await exchangeSignInLink(token);
        const user = await createApiClient({ baseUrl: CLOUD_URL, accessToken: session }).getUser();
        if (softap) saveSoftApUrl(softap);
        saveSession({ token: session, username: user.username });
        navigate(href("devices"), { replace: true });
      } catch (caught) {
        globalThis.history.replaceState(null, "", href("sign-in-link"));
        setError(errorText(caught));
      }
    })();
  }, [token, softap]);
  return (
    <main id="main" class="narrow">
      <section class="page">
        <h1>Signing in…</h1>
        <ErrorText error={error && `This sign-in link did not work: ${error}`} />
        {error ? (
          <p>
            <a href={href("sign-in")}>Sign in with your email and password</a> instead.
          </p>
        ) : null}
      </section>
    </main>
  );
}
