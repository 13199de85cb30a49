/** The account an access token acts for. @see spec/cloud-api.md §1 */
export type Principal =
  | { readonly kind: "user"; readonly userId: string; readonly username: string; readonly token: TokenInfo }
  | {
      readonly kind: "customer";
      readonly customerId: string;
      readonly productId: number;
      readonly email: string;
      readonly token: TokenInfo;
    }
  | { readonly kind: "product"; readonly productId: number; readonly token: TokenInfo };

/** What is known of the token that authenticated a request. */
export interface TokenInfo {
  readonly hash: string;
  readonly clientId: string;
  readonly expiresAt: number | null;
}

/** The owner of a device or claim code: a user, or a customer of a product. */
export type Owner =
  | { readonly kind: "user"; readonly userId: string }
  | { readonly kind: "customer"; readonly customerId: string; readonly productId: number };

/** The owner a principal acts as, or undefined for a product token (which owns nothing). */
export function ownerOf(principal: Principal): Owner | undefined {
  switch (principal.kind) {
    case "user":
      return { kind: "user", userId: principal.userId };
    case "customer":
      return { kind: "customer", customerId: principal.customerId, productId: principal.productId };
    case "product":
      return undefined;
  }
}
