// The web console in a real browser: playwright-core driving Debian's Chromium (/usr/bin/chromium; .ci/run
// installs it where missing) against a real cloud, with the console built by Vite from source and served by
// the cloud at /console/, and virtual devices. Every wait is on something the page shows (Playwright locators
// wait for their selector) or on the cloud's state; never a fixed delay.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { chromium } from "playwright-core";
import { build } from "vite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { runDevice } from "@roost/cli";
import type { RunningDevice } from "@roost/cli";
import type { RunningCloud } from "@roost/cloud";
import { SIGN_IN_LINK_CLIENT_ID } from "@roost/cloud";
import {
  api,
  cloudLink,
  createProduct,
  newDevice,
  newUser,
  register,
  startReceiver,
  startTestCloud,
  until,
  verifyRoostSignature,
} from "@roost/tests/support";
import type { Receiver, TestUser } from "@roost/tests/support";

const CONSOLE_ROOT = fileURLToPath(new URL("..", import.meta.url));
const CHROMIUM = "/usr/bin/chromium";
/** Set to a folder (docs/console) to keep the screenshots; otherwise they go to a temporary folder. */
const SCREENSHOTS = process.env.ROOST_CONSOLE_SCREENSHOTS;
const HOME = { ssid: "home", password: "correct horse" };
/** Generous limit for anything a loaded machine does: a page update, a device joining, a claim. */
const WAIT_MS = 30_000;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

describe.skipIf(!existsSync(CHROMIUM))("the web console in Chromium", { timeout: 120_000 }, () => {
  let cloud: RunningCloud;
  let browser: Browser;
  let folder: string;
  let shots: string;
  let clockOffsetMs = 0;
  let owner: TestUser & { password: string };
  let context: BrowserContext;
  let device: RunningDevice | undefined;
  let receiver: Receiver | undefined;
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    folder = mkdtempSync(join(tmpdir(), "roost-console-"));
    shots = SCREENSHOTS ? resolve(SCREENSHOTS) : join(folder, "shots");
    mkdirSync(shots, { recursive: true });
    const outDir = join(folder, "console");
    await build({ root: CONSOLE_ROOT, logLevel: "warn", build: { outDir, emptyOutDir: true } });
    // Webhooks may reach the test's receiver on 127.0.0.1 (roost dev's setting; off by default).
    cloud = await startTestCloud({
      consoleDir: outDir,
      clock: () => Date.now() + clockOffsetMs,
      webhooks: { allowPrivate: true, retryBaseMs: 20, pollMs: 50 },
    });
    owner = {
      ...(await newUser(cloud, { username: "maker@example.com", password: "maker password" })),
      password: "maker password",
    };
    // A fresh browser profile per launch (Playwright makes a temporary user data dir), no network beyond 127.0.0.1.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    context = await newContext();
  }, 180_000);

  afterAll(async () => {
    for (const item of contexts) await item.close().catch(() => undefined);
    await browser?.close();
    await device?.stop();
    await receiver?.close();
    await cloud?.close();
    rmSync(folder, { recursive: true, force: true });
  });

  async function newContext(): Promise<BrowserContext> {
    const created = await browser.newContext({
      viewport: DESKTOP,
      permissions: ["clipboard-read", "clipboard-write"],
    });
    created.setDefaultTimeout(WAIT_MS);
    // A script error in the page fails loudly in the test output.
    created.on("page", (page) =>
      page.on("pageerror", (error) => console.error(`page error: ${error.message}`)),
    );
    contexts.push(created);
    return created;
  }

  /** The page at desktop and at phone width, full length, as docs/console/<name>-desktop.png and -phone.png. */
  async function shoot(page: Page, name: string): Promise<void> {
    await page.setViewportSize(DESKTOP);
    await page.screenshot({ path: join(shots, `${name}-desktop.png`), fullPage: true });
    await page.setViewportSize(PHONE);
    await page.screenshot({ path: join(shots, `${name}-phone.png`), fullPage: true });
    await page.setViewportSize(DESKTOP);
  }

  it("/ leads to the console's sign-in page, and signing in with email and password opens the devices", async () => {
    const page = await context.newPage();
    await page.goto(`${cloud.url}/`);
    await page.getByRole("heading", { name: "Sign in to Roost" }).waitFor();
    expect(new URL(page.url()).pathname).toBe("/console/");
    await shoot(page, "sign-in");

    await page.getByLabel("Email").fill(owner.username);
    await page.getByLabel("Password").fill("wrong password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByRole("alert").textContent()).resolves.toMatch(/invalid/i);

    // With the keyboard alone: Tab through the fields, Enter submits.
    await page.getByLabel("Email").focus();
    await page.keyboard.press("ControlOrMeta+a");
    await page.keyboard.type(owner.username);
    await page.keyboard.press("Tab");
    await page.keyboard.press("ControlOrMeta+a");
    await page.keyboard.type(owner.password);
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Devices" }).waitFor();
    await expect(page.locator(".username").textContent()).resolves.toBe(owner.username);
    // The page's heading takes focus after navigation, for screen readers.
    await expect(page.evaluate("document.activeElement.id")).resolves.toBe("page-title");
    await page.close();
  });

  it("signs a new account up (the server allows it) and signs it out", async () => {
    const page = await (await newContext()).newPage();
    await page.goto(`${cloud.url}/console/#/sign-up`);
    await page.getByLabel("Email").fill("newcomer@example.com");
    await page.getByLabel("Password").fill("newcomer password");
    await page.getByRole("button", { name: "Sign up" }).click();
    await page.getByRole("heading", { name: "Devices" }).waitFor();
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("heading", { name: "Sign in to Roost" }).waitFor();
    await expect(page.evaluate('localStorage.getItem("roost.session")')).resolves.toBeNull();
  });

  it("a one-time sign-in link (roost dev's) signs in once and leaves no token in the address", async () => {
    const link = await api(cloud, {
      method: "POST",
      path: "/oauth/token",
      json: {
        grant_type: "password",
        username: owner.username,
        password: owner.password,
        client_id: SIGN_IN_LINK_CLIENT_ID,
        expires_in: "600",
      },
    });
    expect(link.status).toBe(200);
    const token: string = link.body.access_token;
    // The link's token opens no API route by itself.
    expect((await api(cloud, { method: "GET", path: "/v1/devices", token })).status).toBe(401);

    const fresh = await newContext();
    const page = await fresh.newPage();
    const url = `${cloud.url}/console/#/sign-in-link?token=${encodeURIComponent(token)}&softap=${encodeURIComponent("http://127.0.0.1:1")}`;
    await page.goto(url);
    await page.getByRole("heading", { name: "Devices" }).waitFor();
    expect(page.url()).not.toContain(token);
    // The setup page's device address came with the link (evaluated in the page, as text: no DOM types here).
    await expect(page.evaluate('localStorage.getItem("roost.softap")')).resolves.toBe("http://127.0.0.1:1");

    const again = await (await newContext()).newPage();
    await again.goto(url);
    await again.getByText("This sign-in link did not work").waitFor();
    await expect(again.getByRole("alert").textContent()).resolves.toMatch(/already used or expired/);
  });

  it("a virtual device is claimed through the setup page and turns up online on the devices page without a reload", async () => {
    device = await runDevice(
      {
        state: join(folder, "device-1"),
        cloudUrl: cloud.url,
        softapPort: 0,
        softapHttpPort: 0,
        wifi: [HOME],
        pingIntervalMs: 15_000,
      },
      () => undefined,
    );
    await register(cloud, owner.token, {
      device: { id: device.device.id, publicKeyPem: device.device.store.publicKeyPem },
    });
    const id = device.device.id;

    const devices = await context.newPage();
    await devices.goto(`${cloud.url}/console/#/devices`);
    await devices.locator('[data-stream="live"]').waitFor();
    await devices.getByText("No devices yet").waitFor();

    const setup = await context.newPage();
    await setup.goto(`${cloud.url}/console/#/setup`);
    await setup.getByLabel("Device setup address").fill(`http://127.0.0.1:${device.softapHttpPort}`);
    await shoot(setup, "setup");
    await setup.getByRole("button", { name: "Start setup" }).click();
    // The page asks the person to join the device's network, then lists the networks the device scanned.
    await setup.getByRole("button", { name: /I joined Photon-/ }).click();
    await setup.getByRole("radio", { name: /home/ }).check();
    await shoot(setup, "setup-wifi");
    await setup.getByLabel("Wi-Fi password").fill(HOME.password);
    await setup.getByRole("button", { name: "Send to the device" }).click();
    await setup.getByRole("button", { name: /I am back on my network/ }).click();
    await setup.locator('[data-setup-result="claimed"]').waitFor();
    await expect(setup.locator("[data-setup-result]").textContent()).resolves.toContain(
      `${id} is claimed and online`,
    );
    await shoot(setup, "setup-done");
    expect(device.device.store.state.claimed).toBe(true);

    // The devices page, open all along, shows the device online from the event stream alone.
    await devices.locator(`tr[data-device-id="${id}"] [data-online="true"]`).waitFor();
    await shoot(devices, "devices");
  });

  it("a function call and a variable read from the device page reach the virtual device", async () => {
    const id = device?.device.id ?? "";
    // The device describes its functions once connected; the page lists what the cloud knows.
    await until(
      async () => {
        const response = await api(cloud, { method: "GET", path: `/v1/devices/${id}`, token: owner.token });
        return response.body.functions?.includes("digitalwrite") === true;
      },
      "the device's description",
      WAIT_MS,
    );
    const page = await context.newPage();
    await page.goto(`${cloud.url}/console/#/devices/${id}`);
    await page.locator('[data-stream="live"]').waitFor();

    await page.locator("#fn-digitalwrite").fill("D7,HIGH");
    await page.getByRole("button", { name: "Call" }).nth(1).click();
    await page.locator('[data-function="digitalwrite"]', { hasText: "returned 1" }).waitFor();
    // The pin's state lives on the device: reading it back goes to the device again.
    await page.locator("#fn-digitalread").fill("D7");
    await page.getByRole("button", { name: "Call" }).nth(0).click();
    await page.locator('[data-function="digitalread"]', { hasText: "returned 1" }).waitFor();

    await page.getByRole("button", { name: "Read uptime" }).click();
    await page.locator('[data-variable="uptime"]').filter({ hasText: /^\d+$/ }).waitFor();
    await page.getByText("Claim attempts").waitFor();
    await page.locator(".timeline li.claimed").first().waitFor();
    await shoot(page, "device");
  });

  it("a claim code refused because it expired shows the reason and what to do on the claim code's page", async () => {
    const page = await context.newPage();
    await page.goto(`${cloud.url}/console/#/claims`);
    await page.getByRole("button", { name: "Create a claim code" }).click();
    await page.locator('[data-claim-status="pending"]').waitFor();
    await page.locator('[data-stream="live"]').waitFor();
    const code = await page.getByLabel(/The code/).inputValue();
    expect(code).toHaveLength(63);
    await shoot(page, "claim-code");

    // An hour later by the cloud's clock, a device presents the code.
    const late = newDevice();
    await register(cloud, owner.token, { device: late });
    clockOffsetMs = 3601_000;
    const link = cloudLink(cloud, late, { claimCode: () => code });
    try {
      await link.connect();
      const attempt = page.locator('.timeline li[data-reason="expired_code"]');
      await attempt.waitFor();
      await expect(attempt.textContent()).resolves.toMatch(
        /Refused: device [0-9a-f]{24}\. The code had expired .* What to do: Create a fresh claim code/,
      );
      await page.locator('[data-claim-status="expired"]').waitFor();
      await shoot(page, "claim-code-refused");
      // The list of codes says the same (the cloud's clock still an hour ahead).
      await page.goto(`${cloud.url}/console/#/claims`);
      await page.getByRole("cell", { name: "Expired" }).first().waitFor();
      await shoot(page, "claim-codes");
    } finally {
      link.close();
      clockOffsetMs = 0;
    }
  });

  it("importing a pasted list of device IDs into a product shows a result per ID", async () => {
    const page = await context.newPage();
    await page.goto(`${cloud.url}/console/#/products`);
    await page.getByLabel("Name").fill("Thermostat");
    await page.getByRole("button", { name: "Create product" }).click();
    await page.getByRole("heading", { name: "Thermostat" }).waitFor();
    const productId = Number(/#\/products\/(\d+)/.exec(page.url())?.[1]);

    const known = [newDevice(), newDevice()];
    for (const item of known) await register(cloud, owner.token, { device: item });
    const elsewhere = newDevice();
    const other = await createProduct(cloud, owner.token, `other-${randomBytes(3).toString("hex")}`);
    await register(cloud, owner.token, { device: elsewhere, productId: other.id });
    const unknown = randomBytes(12).toString("hex");

    const sections = page.getByRole("navigation", { name: "Product sections" });
    await sections.getByRole("link", { name: "Import IDs" }).click();
    await page
      .getByRole("textbox", { name: "Device IDs", exact: true })
      .fill([known[0]?.id, `${known[1]?.id},${unknown}`, elsewhere.id.toUpperCase()].join("\n"));
    await page.getByRole("button", { name: "Import" }).click();
    const results = page.getByRole("table", { name: "Import results" });
    await results.waitFor();
    const rows = await results
      .locator("tbody tr")
      .evaluateAll((trs) =>
        trs.map((tr) => [tr.querySelector("td")?.textContent, tr.getAttribute("data-import-result")]),
      );
    expect(rows).toEqual([
      [known[0]?.id, "added"],
      [known[1]?.id, "added"],
      [unknown, "invalid"],
      [elsewhere.id.toUpperCase(), "other-product"],
    ]);
    await shoot(page, "product-import");
    const listed = await api(cloud, {
      method: "GET",
      path: `/v1/products/${productId}/devices`,
      token: owner.token,
    });
    expect(listed.body.devices.map((d: { id: string }) => d.id).sort()).toEqual(
      known.map((d) => d.id).sort(),
    );

    await sections.getByRole("link", { name: "Devices" }).click();
    await page.locator("td.mono", { hasText: known[0]?.id ?? "" }).waitFor();
    await shoot(page, "product-devices");
    await sections.getByRole("link", { name: "OAuth clients" }).click();
    await page.getByLabel("Client name").fill("thermostat-app");
    await page.getByRole("button", { name: "Create client" }).click();
    await expect(page.getByLabel("Client secret").inputValue()).resolves.toMatch(/^[0-9a-f]{20,}$/);
    await shoot(page, "product-clients");
    await page.goto(`${cloud.url}/console/#/products`);
    await page.getByRole("link", { name: "Thermostat" }).waitFor();
    await shoot(page, "products");
  });

  it("the events page streams the account's events live, and pauses", async () => {
    const page = await context.newPage();
    await page.goto(`${cloud.url}/console/#/events`);
    await page.locator('[data-stream="live"]').waitFor();
    device?.device.publish("thermostat/temperature", "21.5", { private: true });
    await page.getByRole("cell", { name: "thermostat/temperature" }).waitFor();
    await page.getByRole("button", { name: "Pause" }).click();
    device?.device.publish("thermostat/temperature", "22.0", { private: true });
    await page.getByText("Paused; 1 events not shown.").waitFor();
    await shoot(page, "events");
  });

  it("the devices page follows a device going offline and back online, live", async () => {
    const page = await context.newPage();
    await page.goto(`${cloud.url}/console/#/devices`);
    await page.locator('[data-stream="live"]').waitFor();
    const other = newDevice();
    await register(cloud, owner.token, { device: other });
    const created = await api(cloud, {
      method: "POST",
      path: "/v1/device_claims",
      token: owner.token,
      json: {},
    });
    const first = cloudLink(cloud, other, { claimCode: () => created.body.claim_code });
    await first.connect();
    const badge = page.locator(`tr[data-device-id="${other.id}"] [data-online]`);
    await page.locator(`tr[data-device-id="${other.id}"] [data-online="true"]`).waitFor();
    first.close();
    await page.locator(`tr[data-device-id="${other.id}"] [data-online="false"]`).waitFor();
    const second = cloudLink(cloud, other);
    try {
      await second.connect();
      await page.locator(`tr[data-device-id="${other.id}"] [data-online="true"]`).waitFor();
      await expect(badge.textContent()).resolves.toBe("online");
    } finally {
      second.close();
    }
  });

  it("a transfer requested by another user is approved by the device's owner", async () => {
    const id = device?.device.id ?? "";
    const requester = await newUser(cloud, { username: "buyer@example.com", password: "buyer password" });
    const asked = await api(cloud, {
      method: "POST",
      path: "/v1/devices",
      token: requester.token,
      json: { id, request_transfer: true },
    });
    expect(asked.status).toBeLessThan(300);

    const page = await context.newPage();
    await page.goto(`${cloud.url}/console/#/transfers`);
    const row = page.locator('tr[data-transfer-status="pending"]', { hasText: id });
    await row.getByText(requester.username).waitFor();
    await shoot(page, "transfers");
    await row.getByRole("button", { name: "Approve" }).click();
    await page.getByText(`Transfer of ${id}: approved.`).waitFor();
    // The device is the requester's now, so its transfer leaves the former owner's list.
    await row.waitFor({ state: "detached" });
    const now = await api(cloud, { method: "GET", path: `/v1/devices/${id}`, token: requester.token });
    expect(now.status).toBe(200);
    // The former owner is refused like anyone else's device (403, spec/cloud-api.md §6).
    expect((await api(cloud, { method: "GET", path: `/v1/devices/${id}`, token: owner.token })).status).toBe(
      403,
    );
  });

  it("a webhook made on the webhooks page delivers to a receiver; the delivery log shows it live and replays it", async () => {
    receiver = await startReceiver();
    receiver.fallback = { status: 200, body: '{"stored":true}' };
    const page = await context.newPage();
    await page.goto(`${cloud.url}/console/#/webhooks`);
    await page.getByText("No webhooks yet.").waitFor();
    await page.getByLabel("Event prefix").fill("greenhouse");
    await page.getByLabel("URL").fill(`${receiver.url}/hooks/{{{PARTICLE_EVENT_NAME}}}`);
    await page.getByLabel("JSON body (template)").fill('{"reading": "{{{PARTICLE_EVENT_VALUE}}}"}');
    await page.getByLabel("Headers").fill("X-Site: north");
    await page.getByRole("button", { name: "Create webhook" }).click();
    const secret = await page.getByLabel("Webhook secret").inputValue();
    expect(secret.length).toBeGreaterThanOrEqual(32);
    await page.getByRole("button", { name: "Copy" }).click();
    await page.getByRole("button", { name: "Copied" }).waitFor();
    await expect(page.evaluate("navigator.clipboard.readText()")).resolves.toBe(secret);
    const row = page.getByRole("table", { name: "Webhooks" }).locator("tbody tr", { hasText: "greenhouse" });
    await row.locator('[data-hook-state="active"]').waitFor();
    await shoot(page, "webhooks");

    await row.getByRole("link", { name: "greenhouse" }).click();
    await page.getByRole("heading", { name: "Webhook on greenhouse" }).waitFor();
    await page.getByText("No deliveries yet.").waitFor();
    const published = await api(cloud, {
      method: "POST",
      path: "/v1/devices/events",
      token: owner.token,
      json: { name: "greenhouse/humidity", data: "71", private: true },
    });
    expect(published.status).toBe(200);
    const [request] = await receiver.received(1);
    expect(request?.url).toBe("/hooks/greenhouse/humidity");
    expect(request?.headers["x-site"]).toBe("north");
    expect(JSON.parse(request?.body ?? "")).toMatchObject({ event: "greenhouse/humidity", reading: "71" });
    expect(
      verifyRoostSignature({
        header: request?.headers["x-roost-signature"],
        body: request?.body ?? "",
        secret,
      }),
    ).toBe(true);

    // The open page refreshes its log by itself (no reload, no click): the delivery shows as succeeded.
    const delivered = page.locator('tr[data-delivery-status="succeeded"]', {
      hasText: "greenhouse/humidity",
    });
    await delivered.waitFor();
    await expect(delivered.textContent()).resolves.toMatch(/HTTP 200.*\{"stored":true\}/);
    await shoot(page, "webhook-deliveries");

    await delivered.getByRole("button", { name: /Replay/ }).click();
    const [, replayed] = await receiver.received(2);
    expect(replayed?.url).toBe("/hooks/greenhouse/humidity");
    expect(replayed?.headers["x-roost-replay-of"]).toBe(request?.headers["x-roost-delivery"]);
    await page.locator('tr[data-delivery-status="succeeded"]', { hasText: "(replay)" }).waitFor();

    // Disable, then rotate the secret: shown once, and different.
    await page.getByRole("button", { name: "Disable" }).click();
    await page.locator('[data-hook-state="disabled"]').waitFor();
    page.once("dialog", (dialog) => void dialog.accept());
    await page.getByRole("button", { name: "Rotate secret" }).click();
    const rotated = await page.getByLabel("New webhook secret").inputValue();
    expect(rotated).not.toBe(secret);

    // Back on the list: enable it again, then delete it.
    await page.getByRole("link", { name: /All webhooks/ }).click();
    await row.locator('[data-hook-state="disabled"]').waitFor();
    await row.getByRole("button", { name: /Enable/ }).click();
    await row.locator('[data-hook-state="active"]').waitFor();
    page.once("dialog", (dialog) => void dialog.accept());
    await row.getByRole("button", { name: /Delete/ }).click();
    await page.getByText("No webhooks yet.").waitFor();
    const left = await api(cloud, { method: "GET", path: "/v1/webhooks", token: owner.token });
    expect(left.body).toEqual([]);

    // A product's hooks: chosen in "Whose hooks", created on the product's webhooks path.
    const products = await api(cloud, { method: "GET", path: "/v1/user/products", token: owner.token });
    const thermostat = (products.body.products as { id: number; name: string }[]).find(
      (item) => item.name === "Thermostat",
    );
    const productId = thermostat?.id ?? 0;
    await page.getByLabel("Whose hooks").selectOption({ label: `Product Thermostat (#${productId})` });
    await page.waitForURL(new RegExp(`#/webhooks/products/${productId}$`));
    await page.getByText("No webhooks yet.").waitFor();
    await page.getByLabel("Event prefix").fill("roost/device/");
    await page.getByLabel("URL").fill(`${receiver.url}/claims`);
    await page.getByRole("button", { name: "Create webhook" }).click();
    await page.getByLabel("Webhook secret").waitFor();
    const productHooks = await api(cloud, {
      method: "GET",
      path: `/v1/products/${productId}/webhooks`,
      token: owner.token,
    });
    expect(productHooks.body).toMatchObject([{ event: "roost/device/", product_id: productId }]);
  });
});
