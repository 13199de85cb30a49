import { Command, InvalidArgumentError } from "commander";

import { createApiClient } from "@roost/client";

import { startDev } from "./dev.js";
import { parsePlatform, parseWifi, registerDevice, runDevice, runFleet } from "./device.js";
import { exportServerKey } from "./keys.js";
import { serve } from "./serve.js";
import {
  claimCode,
  listDevices,
  login,
  resolveSession,
  sessionPath,
  showClaim,
  watchEvents,
} from "./session.js";
import type { SetupCommandOptions } from "./setup.js";
import { setupCommand } from "./setup.js";

function integer(name: string, { min = 0, max = 65_535 } = {}) {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    }
    return Number(value);
  };
}

/** Builds the `roost` command line. `env` is read here and nowhere below. */
export function createProgram(env: NodeJS.ProcessEnv = process.env): Command {
  const program = new Command("roost")
    .description("Roost: a self-hosted, Particle-compatible device cloud for claiming and onboarding devices")
    .showHelpAfterError();

  program
    .command("serve")
    .description("Start the cloud: the Particle-compatible HTTP API on --port")
    .option("-p, --port <port>", "HTTP port (0 picks a free one)", integer("port"), 8080)
    .option("--host <address>", "address to listen on", "127.0.0.1")
    .option("-d, --data <dir>", "data folder for the embedded SQLite database and server keys", "./.roost")
    .option(
      "--database-url <url>",
      "PostgreSQL URL (postgres://…) instead of SQLite; also ROOST_DATABASE_URL",
      env.ROOST_DATABASE_URL,
    )
    .option(
      "--device-port <port>",
      "TCP port of the device gateway (0 picks a free one)",
      integer("device-port"),
      5683,
    )
    .option(
      "--udp-port <port>",
      "UDP port of Gen 3 devices (DTLS; 0 picks a free one)",
      integer("udp-port"),
      5684,
    )
    .option("--no-udp", "serve no Gen 3 (UDP) devices")
    .option(
      "--auto-register-devices",
      "register an unknown device's offered key instead of refusing it (development only)",
      false,
    )
    .option(
      "--nats-url <url>",
      "NATS URL for the event bus between nodes (scale-out); also ROOST_NATS_URL",
      env.ROOST_NATS_URL,
    )
    .option(
      "--nats-prefix <prefix>",
      "NATS subject prefix (default: roost.<deployment id kept in the database>, so deployments sharing a NATS never mix)",
      env.ROOST_NATS_PREFIX,
    )
    .option(
      "--heartbeat-ms <ms>",
      "how often this node writes its heartbeat and sweeps dead nodes' devices offline",
      integer("heartbeat-ms", { min: 50, max: 3_600_000 }),
      10_000,
    )
    .option(
      "--dead-after-ms <ms>",
      "silence (on the database's clock) after which a node is declared dead (default: 3 heartbeats)",
      integer("dead-after-ms", { min: 100, max: 86_400_000 }),
    )
    .option(
      "--crypto-workers <n>",
      "worker threads for the device handshakes' public-key crypto (default: one per core; 0 runs it on the event loop)",
      integer("crypto-workers", { min: 0, max: 256 }),
    )
    .option("--allow-signup", "open POST /v1/users so that anyone can create an account", false)
    .option(
      "--open-device-registration",
      "let anyone signed in register unknown device IDs with POST /v1/provisioning (development: reveals which IDs exist)",
      false,
    )
    .option(
      "--webhooks-allow-private",
      "let webhooks reach loopback, private and link-local addresses (development only)",
      false,
    )
    .option(
      "--claim-code-ttl <seconds>",
      "claim code lifetime in seconds",
      integer("claim-code-ttl", { min: 1, max: 31_536_000 }),
    )
    .option(
      "--log-level <level>",
      "log level: fatal, error, warn, info, debug, trace or silent",
      env.ROOST_LOG_LEVEL ?? "info",
    )
    .addHelpText(
      "after",
      "\nExamples:\n  roost serve --allow-signup\n  roost serve --port 0 --data /tmp/roost\n  roost serve --database-url postgres://postgres@127.0.0.1:5432/roost\n  roost serve --database-url postgres://db/roost --nats-url nats://nats:4222 --host 0.0.0.0 --heartbeat-ms 5000",
    )
    .action(
      async (options: {
        port: number;
        host: string;
        data: string;
        databaseUrl?: string;
        allowSignup: boolean;
        openDeviceRegistration: boolean;
        claimCodeTtl?: number;
        logLevel: string;
        devicePort: number;
        udpPort: number;
        udp: boolean;
        autoRegisterDevices: boolean;
        natsUrl?: string;
        natsPrefix?: string;
        heartbeatMs: number;
        deadAfterMs?: number;
        cryptoWorkers?: number;
        webhooksAllowPrivate: boolean;
      }) => {
        const stopped = untilSignal();
        const cloud = await serve(
          {
            ...options,
            udpPort: options.udp ? options.udpPort : false,
            databaseUrl: options.databaseUrl || undefined,
            natsUrl: options.natsUrl || undefined,
            natsPrefix: options.natsPrefix || undefined,
            claimCodeTtl: options.claimCodeTtl,
          },
          (line) => console.log(line),
        );
        await stopped;
        await cloud.close();
      },
    );
  program
    .command("keys")
    .description("Keys of the device protocol")
    .command("server")
    .description("Print or save the cloud's server public key (for devices and `particle keys server`)")
    .requiredOption("--cloud <url>", "the cloud's API URL", env.ROOST_CLOUD_URL)
    .option("--format <format>", "pem or der", "pem")
    .option("--out <file>", "write to a file instead of printing")
    .option(
      "--protocol <protocol>",
      "write the key file a device stores instead: tcp (512 bytes, RSA) or udp (320 bytes, P-256), with the gateway's address",
    )
    .option("--host <address>", "the IPv4 address or domain devices dial (with --protocol)")
    .addHelpText(
      "after",
      "\nExamples:\n  roost keys server --cloud http://127.0.0.1:8080 --out server.pem\n  roost keys server --cloud http://127.0.0.1:8080 --protocol udp --out server_key.der",
    )
    .action(
      async (options: { cloud: string; format: string; out?: string; protocol?: string; host?: string }) => {
        if (options.format !== "pem" && options.format !== "der")
          throw new InvalidArgumentError("--format must be pem or der");
        if (options.protocol !== undefined && options.protocol !== "tcp" && options.protocol !== "udp")
          throw new InvalidArgumentError("--protocol must be tcp or udp");
        await exportServerKey(
          {
            cloudUrl: options.cloud,
            format: options.format,
            out: options.out,
            protocol: options.protocol,
            host: options.host,
          },
          (line) => console.log(line),
        );
      },
    );

  program
    .command("dev")
    .description(
      "Development sandbox (what `npm start` runs): the cloud, a demo account and one virtual device ready to claim",
    )
    .option("-p, --port <port>", "HTTP port", integer("port"), 8080)
    .option("--device-port <port>", "device gateway port", integer("device-port"), 5683)
    .option("--softap-port <port>", "the virtual device's SoftAP TCP port", integer("softap-port"), 5609)
    .option(
      "--softap-http-port <port>",
      "the virtual device's SoftAP HTTP port (a real device: 80), for the console's setup page",
      integer("softap-http-port"),
      5610,
    )
    .option("--host <address>", "address to listen on", "127.0.0.1")
    .option("-d, --data <dir>", "data folder", "./.roost")
    .action(
      async (options: {
        port: number;
        devicePort: number;
        softapPort: number;
        softapHttpPort: number;
        host: string;
        data: string;
      }) => {
        const stopped = untilSignal();
        const dev = await startDev(options, (line) => console.log(line));
        await stopped;
        await dev.stop();
      },
    );

  const session = sessionPath(env);
  const clientFor = (options: { cloud?: string; token?: string }) => {
    const resolved = resolveSession(options, session);
    return createApiClient({ baseUrl: resolved.cloud, accessToken: resolved.token });
  };
  program
    .command("login")
    .description("Log in with a user name and password and remember the token")
    .requiredOption("--cloud <url>", "the cloud's API URL", env.ROOST_CLOUD_URL)
    .requiredOption("--username <email>", "user name (e-mail)")
    .requiredOption("--password <password>", "password (or ROOST_PASSWORD)", env.ROOST_PASSWORD)
    .action(async (options: { cloud: string; username: string; password: string }) => {
      await login({ ...options, path: session }, (line) => console.log(line));
    });
  program
    .command("claim-code")
    .description("Create a claim code for your account (or, with a customer token, for its product)")
    .option("--cloud <url>", "the cloud's API URL (default: from roost login)")
    .option("--token <token>", "access token (default: from roost login)", env.ROOST_TOKEN)
    .option("--product <idOrSlug>", "product, when the token is a customer's")
    .action(async (options: { cloud?: string; token?: string; product?: string }) => {
      await claimCode({ client: clientFor(options), product: options.product }, (line) => console.log(line));
    });
  program
    .command("devices")
    .description("List your devices")
    .option("--cloud <url>", "the cloud's API URL (default: from roost login)")
    .option("--token <token>", "access token (default: from roost login)", env.ROOST_TOKEN)
    .action(async (options: { cloud?: string; token?: string }) => {
      await listDevices({ client: clientFor(options) }, (line) => console.log(line));
    });
  program
    .command("events")
    .description("Print your devices' events as they happen (until Ctrl-C)")
    .argument("[prefix]", "event name prefix")
    .option("--cloud <url>", "the cloud's API URL (default: from roost login)")
    .option("--token <token>", "access token (default: from roost login)", env.ROOST_TOKEN)
    .option("--device <idOrName>", "only this device")
    .option("--max <n>", "stop after n events", integer("max", { min: 1, max: 1_000_000 }))
    .action(
      async (
        prefix: string | undefined,
        options: { cloud?: string; token?: string; device?: string; max?: number },
      ) => {
        const resolved = resolveSession(options, session);
        const controller = new AbortController();
        const stop = () => controller.abort();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
        await watchEvents(
          {
            ...resolved,
            prefix,
            device: options.device,
            max: options.max,
            signal: controller.signal,
            // On stderr, so that stdout stays one JSON event per line; scripts (and tests) wait for it.
            onOpen: () => console.error("Watching events (Ctrl-C to stop)"),
          },
          (line) => console.log(line),
        );
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
      },
    );
  program
    .command("claims")
    .description("Claim codes")
    .command("show")
    .description("Show a claim code's status and every attempt to use it")
    .argument("<claimId>", "the claim_id returned with the claim code")
    .option("--cloud <url>", "the cloud's API URL (default: from roost login)")
    .option("--token <token>", "access token (default: from roost login)", env.ROOST_TOKEN)
    .action(async (claimId: string, options: { cloud?: string; token?: string }) => {
      await showClaim({ client: clientFor(options), claimId }, (line) => console.log(line));
    });

  program
    .command("setup")
    .description("Set up a device over SoftAP and claim it: Wi-Fi credentials, claim code, verification")
    .option("--cloud <url>", "the cloud's API URL (default: from roost login)", env.ROOST_CLOUD_URL)
    .option("--token <token>", "a user access token (user mode)")
    .option("--username <email>", "user name, or the customer's e-mail in product mode")
    .option("--password <password>", "the account's password (not the Wi-Fi password)")
    .option("--product <idOrSlug>", "product mode: the product the device belongs to")
    .option(
      "--customer-token <token>",
      "two-legged mode: a customer token your backend obtained (with --product)",
    )
    .option("--client-id <id>", "product mode with simple auth: the product's installed OAuth client")
    .option("--client-secret <secret>", "…and its secret")
    .option("--sign-up", "product mode with simple auth: create the customer first", false)
    .option(
      "--softap <address>",
      "the device's SoftAP: tcp://HOST:PORT or http://HOST[:PORT] (a real device: tcp://192.168.0.1:5609)",
    )
    .option("--ssid <ssid>", "the Wi-Fi network to give the device")
    .option("--wifi-password <password>", "that network's password")
    .option("--skip-claim", "setup only: Wi-Fi, no claim", false)
    .option(
      "--take-over",
      "when another account owns the device, send the claim code anyway (the cloud decides)",
    )
    .option(
      "--nmcli",
      "switch this computer to the device's Photon-… network with NetworkManager, and back",
      false,
    )
    .option(
      "--claim-timeout <seconds>",
      "how long to wait for the claim",
      integer("claim-timeout", { min: 1, max: 3600 }),
    )
    .option("-y, --yes", "never prompt: fail with a clear message when something is missing", false)
    .addHelpText(
      "after",
      "\nExamples:\n  roost setup                       # asks for everything\n  roost setup --cloud http://127.0.0.1:8080 --username me@example.com --password … \\\n    --softap tcp://127.0.0.1:5609 --ssid home --wifi-password secret --yes\n  roost setup --customer-token T --product 1000 --softap http://192.168.0.1 --ssid home --wifi-password secret --nmcli",
    )
    .action(async (options: SetupCommandOptions & { claimTimeout?: number }) => {
      const code = await setupCommand(
        {
          ...options,
          claimTimeoutMs: options.claimTimeout === undefined ? undefined : options.claimTimeout * 1000,
        },
        {
          interactive: process.stdin.isTTY === true && process.stdout.isTTY === true,
          print: (line) => console.log(line),
        },
        env,
      );
      process.exitCode = code;
    });

  const device = program
    .command("device")
    .description(
      "Virtual devices: Photon/P1 (TCP) and Gen 3 Argon, Boron, P2, Photon 2, M-SoM (DTLS over UDP)",
    );
  const platformHelp =
    "a new device's platform: photon, p1 (Gen 2, TCP) or argon, boron, p2, photon2, msom (Gen 3, UDP; P-256 key)";
  device
    .command("run")
    .description(
      "Run one virtual device: a Photon/P1 in listening mode (SoftAP), then on Wi-Fi and connected; a Gen 3 device connected over UDP at once",
    )
    .requiredOption("--state <dir>", "the device's state folder (ID, keys, claim code, Wi-Fi credentials)")
    .requiredOption("--cloud <url>", "the cloud's API URL", env.ROOST_CLOUD_URL)
    .option(
      "--gateway <host:port,...>",
      "device gateway address(es), if not the one the cloud advertises; several (one per node) are tried in turn",
    )
    .option("--platform <name>", platformHelp, parsePlatform)
    .option(
      "--claim-code <code>",
      "store this claim code, as setup over BLE or USB would (a Gen 3 device presents it after its handshake)",
    )
    .option(
      "--softap-port <port>",
      "SoftAP TCP port (a real device: 5609; Gen 2 only)",
      integer("softap-port"),
      5609,
    )
    .option(
      "--softap-http-port <port>",
      "SoftAP HTTP port (a real device: 80); off unless given",
      integer("softap-http-port"),
    )
    .option(
      "--wifi <ssid:password[:security]>",
      "a simulated Wi-Fi network (repeatable)",
      (value: string, all: string[]) => [...all, value],
      [] as string[],
    )
    .addHelpText(
      "after",
      "\nA Gen 3 device starts on the first --wifi network and connects over UDP (default port 5684); run again with\n" +
        "the same --state, it resumes its saved DTLS session without a handshake. A Gen 2 device with stored Wi-Fi\n" +
        "credentials joins at once; a new one starts in listening mode for SoftAP setup.\n" +
        "\nExamples:\n  roost device run --state ./device-1 --cloud http://127.0.0.1:8080 --wifi home:secret\n" +
        "  roost device run --state ./argon-1 --platform argon --cloud http://127.0.0.1:8080 --claim-code CODE",
    )
    .action(
      async (options: {
        state: string;
        cloud: string;
        gateway?: string;
        softapPort: number;
        softapHttpPort?: number;
        wifi: string[];
        platform?: number;
        claimCode?: string;
      }) => {
        const stopped = untilSignal();
        const running = await runDevice(
          {
            state: options.state,
            platformId: options.platform,
            claimCode: options.claimCode,
            powerOn: true,
            cloudUrl: options.cloud,
            gateway: options.gateway,
            softapPort: options.softapPort,
            softapHttpPort: options.softapHttpPort,
            wifi: options.wifi.map(parseWifi),
          },
          (line) => console.log(line),
        );
        await stopped;
        await running.stop();
      },
    );
  device
    .command("register")
    .description("Register the device's public key with the cloud, as a manufacturer would")
    .requiredOption("--state <dir>", "the device's state folder")
    .requiredOption("--cloud <url>", "the cloud's API URL", env.ROOST_CLOUD_URL)
    .requiredOption("--token <token>", "an access token (user or product)", env.ROOST_TOKEN)
    .option("--product <id>", "product to put the device in", integer("product", { max: 2_147_483_647 }))
    .option("--platform <name>", platformHelp, parsePlatform)
    .action(
      async (options: {
        state: string;
        cloud: string;
        token: string;
        product?: number;
        platform?: number;
      }) => {
        await registerDevice(
          {
            state: options.state,
            cloudUrl: options.cloud,
            token: options.token,
            product: options.product,
            platformId: options.platform,
          },
          (line) => console.log(line),
        );
      },
    );
  device
    .command("fleet")
    .description("Run N virtual devices in one process, registered and connected (for load and demos)")
    .requiredOption("--count <n>", "how many devices", integer("count", { min: 1, max: 100_000 }))
    .requiredOption("--cloud <url>", "the cloud's API URL", env.ROOST_CLOUD_URL)
    .requiredOption("--token <token>", "an access token to register the devices with", env.ROOST_TOKEN)
    .option("--product <id>", "product to put the devices in", integer("product", { max: 2_147_483_647 }))
    .option(
      "--gateway <host:port,...>",
      "device gateway address(es), if not the one the cloud advertises; several (one per node) are tried in turn",
    )
    .option(
      "--claim",
      "give each device a claim code of the token's account, so that it claims itself",
      false,
    )
    .option("--platform <name>", "the devices' platform (as for `device run`)", parsePlatform)
    .action(
      async (options: {
        count: number;
        cloud: string;
        token: string;
        product?: number;
        gateway?: string;
        claim: boolean;
        platform?: number;
      }) => {
        const stopped = untilSignal();
        const fleet = await runFleet(
          { ...options, cloudUrl: options.cloud, platformId: options.platform },
          (line) => console.log(line),
        );
        await stopped;
        fleet.stop();
      },
    );
  return program;
}

/**
 * Resolves on the first SIGINT or SIGTERM. Commands call it before they start what they run: a signal that
 * comes while it starts then stops it once started, instead of killing the process with it half started
 * (and the exit code of a killed process).
 */
function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      console.log(`Received ${signal}, stopping`);
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}

/** Runs the command line and returns the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    await createProgram().parseAsync(argv);
    return 0;
  } catch (error) {
    console.error(`roost: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
}
