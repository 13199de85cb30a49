/**
 * Wi-Fi security codes of the SoftAP protocol (`sec` in `scan-ap` and `configure-ap`): raw WICED
 * `wiced_security_t` values, built from WICED's flag bits, and the EAP method numbers of enterprise networks.
 * @see spec/device-protocols.md A.5
 */

/** WICED security flag bits (`wwd_constants.h`) that the `sec` values combine. @see spec A.5 */
export const WICED_SECURITY_FLAGS = {
  WEP_ENABLED: 0x0001,
  TKIP_ENABLED: 0x0002,
  AES_ENABLED: 0x0004,
  SHARED_ENABLED: 0x8000,
  WPA_SECURITY: 0x0020_0000,
  WPA2_SECURITY: 0x0040_0000,
  ENTERPRISE_ENABLED: 0x0200_0000,
} as const;

const F = WICED_SECURITY_FLAGS;
const MIXED = F.TKIP_ENABLED | F.AES_ENABLED;

/**
 * The `sec` values the device reports and accepts, by WICED name. `WPA_MIXED_PSK` is sent only by Android.
 * @see spec/device-protocols.md A.5
 */
export const WIFI_SECURITY = {
  OPEN: 0,
  WEP_PSK: F.WEP_ENABLED,
  WEP_SHARED: F.WEP_ENABLED | F.SHARED_ENABLED,
  WPA_TKIP_PSK: F.WPA_SECURITY | F.TKIP_ENABLED,
  WPA_AES_PSK: F.WPA_SECURITY | F.AES_ENABLED,
  WPA_MIXED_PSK: F.WPA_SECURITY | MIXED,
  WPA2_TKIP_PSK: F.WPA2_SECURITY | F.TKIP_ENABLED,
  WPA2_AES_PSK: F.WPA2_SECURITY | F.AES_ENABLED,
  WPA2_MIXED_PSK: F.WPA2_SECURITY | MIXED,
  WPA_ENTERPRISE_TKIP: F.ENTERPRISE_ENABLED | F.WPA_SECURITY | F.TKIP_ENABLED,
  WPA_ENTERPRISE_AES: F.ENTERPRISE_ENABLED | F.WPA_SECURITY | F.AES_ENABLED,
  WPA2_ENTERPRISE_TKIP: F.ENTERPRISE_ENABLED | F.WPA2_SECURITY | F.TKIP_ENABLED,
  WPA2_ENTERPRISE_AES: F.ENTERPRISE_ENABLED | F.WPA2_SECURITY | F.AES_ENABLED,
  WPA2_ENTERPRISE_MIXED: F.ENTERPRISE_ENABLED | F.WPA2_SECURITY | MIXED,
} as const;

/** A WICED security name (see {@link WIFI_SECURITY}). */
export type WifiSecurityName = keyof typeof WIFI_SECURITY;

/** EAP method numbers sent as `eap` for enterprise networks (IANA EAP types). @see spec A.5 */
export const EAP_TYPES = {
  /** PEAP with MSCHAPv2 inside: identity and password. */
  PEAP: 25,
  /** EAP-TLS: client certificate and private key. */
  TLS: 13,
} as const;

const NAMES_BY_VALUE = new Map<number, WifiSecurityName>(
  Object.entries(WIFI_SECURITY).map(([name, value]) => [value, name as WifiSecurityName]),
);

/** The WICED name of a `sec` value, or undefined for a value no client or device uses. @see spec A.5 */
export function wifiSecurityName(value: number): WifiSecurityName | undefined {
  return NAMES_BY_VALUE.get(value);
}

/** True when `sec` has the enterprise bit, so `configure-ap` must carry `eap` and its credentials. @see spec A.5 */
export function isEnterpriseSecurity(value: number): boolean {
  return (value & F.ENTERPRISE_ENABLED) !== 0;
}
