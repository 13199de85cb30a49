import { lookup as dnsLookup } from "node:dns";
import type { LookupAddress, LookupOptions } from "node:dns";
import { isIP } from "node:net";
import ipaddr from "ipaddr.js";

/**
 * Why a webhook may not reach an address: everything but public unicast is refused by default (loopback,
 * RFC 1918 private, link-local with the 169.254.169.254 cloud metadata service, unique-local IPv6, carrier-grade
 * NAT, multicast, reserved). IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
 * Returns undefined when the address is allowed.
 */
export function refusedAddressReason(address: string, allowPrivate: boolean): string | undefined {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.process(address);
  } catch {
    return `${address} is not an IP address`;
  }
  const range = parsed.range();
  if (range === "unicast") return undefined;
  // Even in development a request to "nowhere" or to a multicast group is a mistake.
  if (allowPrivate && range !== "unspecified" && range !== "multicast" && range !== "broadcast")
    return undefined;
  return `${address} is a ${range} address; webhooks may only reach public addresses (see --webhooks-allow-private)`;
}

/** Why an address may not be reached, or undefined when it may. */
export type AddressPolicy = (address: string) => string | undefined;

/** A delivery was refused before any byte left: the target resolves to a forbidden address. */
export class AddressRefusedError extends Error {
  override readonly name = "AddressRefusedError";
}

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * A `lookup` for `http.request` that resolves the name and refuses forbidden addresses, so the check holds
 * for the address actually connected to (no second resolution an attacker's DNS could answer differently).
 * Node calls it with `all: true` when it races address families, so both answer forms are served.
 */
export function createCheckedLookup(refuse: AddressPolicy) {
  return (hostname: string, options: LookupOptions, callback: LookupCallback): void => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) {
        callback(error, []);
        return;
      }
      const allowed = addresses.filter((entry) => refuse(entry.address) === undefined);
      const first = allowed[0];
      if (!first) {
        const reason = addresses[0] ? refuse(addresses[0].address) : `${hostname} has no address`;
        callback(new AddressRefusedError(`${hostname}: ${reason}`), []);
        return;
      }
      if (options.all) callback(null, allowed);
      else callback(null, first.address, first.family);
    });
  };
}

/** Checks a URL's host when it is an IP literal (Node connects to those without calling `lookup`). */
export function checkLiteralHost(hostname: string, refuse: AddressPolicy): void {
  const bare = hostname.startsWith("[") ? hostname.slice(1, -1) : hostname;
  if (isIP(bare) === 0) return;
  const reason = refuse(bare);
  if (reason) throw new AddressRefusedError(reason);
}
