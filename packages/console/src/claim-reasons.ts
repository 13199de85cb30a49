/**
 * Each reason of the claim timeline (the cloud's `CLAIM_REASONS`) in plain words, with what to do about it.
 * @see DESIGN.md "Beyond the anchors" 1
 */
export const CLAIM_REASON_TEXT: Readonly<Record<string, { what: string; todo: string }>> = {
  claimed: { what: "The device was claimed with this code.", todo: "Nothing: it is yours." },
  already_owned: {
    what: "The device already belonged to this account.",
    todo: "Nothing: the code was not needed.",
  },
  unknown_code: {
    what: "The device presented a code the cloud does not know.",
    todo: "Create a new claim code and run setup again; check that the device talks to this cloud.",
  },
  expired_code: {
    what: "The code had expired when the device presented it (codes last one hour).",
    todo: "Create a fresh claim code and run setup again.",
  },
  used_code: {
    what: "The code had already claimed another device; a code works once.",
    todo: "Create a new claim code for this device.",
  },
  revoked_code: {
    what: "The code was withdrawn before the device presented it.",
    todo: "Create a new claim code.",
  },
  wrong_product: {
    what: "The device belongs to another product than the code's.",
    todo: "Use the device's own product, or move the device into this product.",
  },
  device_not_in_product: {
    what: "The device is not part of the code's product.",
    todo: "Import the device's ID into the product (Products → Import), then set it up again.",
  },
  not_product_team: {
    what: "The device belongs to a product, and this account is neither its customer nor on its team.",
    todo: "Set the device up with the product's app, or ask its maker to add you to the team.",
  },
  owned_by_other: {
    what: "The device belongs to another account.",
    todo: "Ask its owner to release it, or request a transfer (Transfers) and wait for approval.",
  },
  unknown_device: {
    what: "The cloud does not know this device (no registered key).",
    todo: "Register the device's public key with this cloud first.",
  },
  key_mismatch: {
    what: "The device offered a different key than the one registered for its ID.",
    todo: "Check the device's keys; if it was re-keyed on purpose, register the new key.",
  },
  device_offline: {
    what: "The device was offline, so it could not be reached to claim it.",
    todo: "Bring the device online and try again.",
  },
};

/** The plain words of a reason (unknown reasons are shown as they are). */
export function describeReason(reason: string): { what: string; todo: string } {
  return CLAIM_REASON_TEXT[reason] ?? { what: `Refused: ${reason}.`, todo: "See the cloud's logs." };
}
