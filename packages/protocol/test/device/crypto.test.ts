import { constants, generateKeyPairSync, privateDecrypt, publicDecrypt, randomBytes } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";

import {
  ChainedCipher,
  decodeMessage,
  encodeFrame,
  encodeMessage,
  FrameSplitter,
  HANDSHAKE_CIPHERTEXT_LENGTH,
  HANDSHAKE_REPLY_LENGTH,
  MalformedFrameError,
  SERVER_PUBLIC_KEY_MODULUS_OFFSET,
  type SessionCredentials,
} from "../../src/index.js";
import {
  createHandshakeCiphertext,
  createHandshakeReply,
  createNodeAesCbc,
  createSessionAesCbc,
  createSessionCiphers,
  exportPrivateKeyDer,
  exportPrivateKeyPem,
  exportPublicKeyDer,
  exportPublicKeyPem,
  generateDeviceKeyPair,
  generateServerKeyPair,
  hmacSha1,
  importPrivateKey,
  importPublicKey,
  openHandshakeCiphertext,
  openHandshakeReply,
  parseDevicePublicKey,
  parseServerPublicKey,
  removePkcs1Type2Padding,
  rsaDecryptPkcs1,
  rsaEncryptPkcs1,
  rsaSignRaw,
  rsaVerifyRaw,
  type RsaKeyPair,
} from "../../src/node.js";
import { hex, toHex, utf8 } from "./hex.js";

const DEVICE_ID = "0123456789abcdef01234567";

let device: RsaKeyPair;
let server: RsaKeyPair;
let otherServer: RsaKeyPair;

beforeAll(async () => {
  [device, server, otherServer] = await Promise.all([
    generateDeviceKeyPair(),
    generateServerKeyPair(),
    generateServerKeyPair(),
  ]);
});

/** Random bytes as a plain Uint8Array (a Buffer would not deep-equal the codec's output). */
function random(length: number): Uint8Array {
  return new Uint8Array(randomBytes(length));
}

function credentials(): SessionCredentials {
  return { key: random(16), iv: random(16), salt: random(8) };
}

describe("key helpers (spec B.1)", () => {
  it("generates a device key whose SPKI DER is the 162-byte layout the device builds", () => {
    const der = exportPublicKeyDer(device.publicKey);
    expect(der).toHaveLength(162);
    expect(parseDevicePublicKey(der).asymmetricKeyDetails).toMatchObject({ modulusLength: 1024 });
    expect(exportPrivateKeyDer(device.privateKey).length).toBeLessThanOrEqual(612);
  });

  it("generates a server key whose 294-byte SPKI DER has the modulus at offset 33", () => {
    const der = exportPublicKeyDer(server.publicKey);
    expect(der).toHaveLength(294);
    const jwk = server.publicKey.export({ format: "jwk" });
    const modulus = Buffer.from(jwk.n ?? "", "base64url");
    expect(
      toHex(der.subarray(SERVER_PUBLIC_KEY_MODULUS_OFFSET, SERVER_PUBLIC_KEY_MODULUS_OFFSET + 256)),
    ).toBe(modulus.toString("hex"));
    expect(() => parseServerPublicKey(der)).not.toThrow();
    expect(() => parseServerPublicKey(exportPublicKeyPem(server.publicKey))).not.toThrow();
  });

  it("round-trips keys through PEM and the device's PKCS#1 DER", () => {
    const fromPem = importPrivateKey(exportPrivateKeyPem(server.privateKey));
    const fromDer = importPrivateKey(exportPrivateKeyDer(device.privateKey));
    expect(exportPrivateKeyPem(fromPem)).toMatch(/^-----BEGIN RSA PRIVATE KEY-----/);
    expect(exportPrivateKeyDer(fromDer)).toEqual(exportPrivateKeyDer(device.privateKey));
    expect(exportPublicKeyDer(importPublicKey(exportPublicKeyPem(device.publicKey)))).toEqual(
      exportPublicKeyDer(device.publicKey),
    );
  });

  it("rejects an RSA-1024 key as the server key", () => {
    expect(() => parseServerPublicKey(exportPublicKeyDer(device.publicKey))).toThrow(MalformedFrameError);
  });

  it("rejects a server key whose exponent is not 65537, which the device hard-codes", () => {
    const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 3 });
    expect(() => parseServerPublicKey(exportPublicKeyPem(publicKey))).toThrow(MalformedFrameError);
  });

  it.each([
    ["garbage bytes", () => Uint8Array.from({ length: 162 }, (_, i) => i)],
    ["an RSA-2048 key", () => exportPublicKeyDer(server.publicKey)],
  ])("rejects %s as the device key in a handshake", (_name, der) => {
    expect(() => parseDevicePublicKey(der())).toThrow(MalformedFrameError);
  });

  it("reports unparseable key input as MalformedFrameError", () => {
    expect(() => importPublicKey("not a key")).toThrow(MalformedFrameError);
    expect(() => importPrivateKey(hex`30 03 02 01 00`)).toThrow(MalformedFrameError);
  });
});

describe("RSA PKCS#1 v1.5 on Node 20+ (spec B.7)", () => {
  it("decrypts with RSA_NO_PADDING and strips the type-2 padding itself", () => {
    const message = utf8("forty bytes of session credentials......");
    for (const pair of [device, server]) {
      const ciphertext = rsaEncryptPkcs1(pair.publicKey, message);
      expect(rsaDecryptPkcs1(pair.privateKey, ciphertext)).toEqual(message);
    }
  });

  it("works where Node's own PKCS#1 privateDecrypt is refused (CVE-2023-46809)", () => {
    const ciphertext = rsaEncryptPkcs1(server.publicKey, utf8("nonce"));
    let nodeResult: Uint8Array | undefined;
    try {
      nodeResult = privateDecrypt(
        { key: server.privateKey, padding: constants.RSA_PKCS1_PADDING },
        ciphertext,
      );
    } catch (error) {
      // Node 18.19.1+/20.11.1+/21.6.2+ without implicit-rejection OpenSSL refuses; that is why the workaround exists.
      expect((error as { code?: string }).code).toBe("ERR_INVALID_ARG_VALUE");
    }
    const ours = rsaDecryptPkcs1(server.privateKey, ciphertext);
    expect(ours).toEqual(utf8("nonce"));
    if (nodeResult !== undefined) expect(ours).toEqual(new Uint8Array(nodeResult));
  });

  it("refuses to encrypt more than k − 11 bytes", () => {
    expect(() => rsaEncryptPkcs1(device.publicKey, new Uint8Array(118))).toThrow(MalformedFrameError);
  });

  it("rejects a ciphertext that is not one modulus-sized block", () => {
    expect(() => rsaDecryptPkcs1(server.privateKey, new Uint8Array(255))).toThrow(MalformedFrameError);
  });

  it("rejects a ciphertext made for another key", () => {
    const ciphertext = rsaEncryptPkcs1(otherServer.publicKey, utf8("nonce"));
    expect(() => rsaDecryptPkcs1(server.privateKey, ciphertext)).toThrow(MalformedFrameError);
  });

  it("rejects a ciphertext not below the modulus", () => {
    expect(() => rsaDecryptPkcs1(server.privateKey, new Uint8Array(256).fill(0xff))).toThrow(
      MalformedFrameError,
    );
  });
});

describe("constant-time type-2 unpadding (spec B.7, RFC 8017 §7.2.2)", () => {
  const padding = "5a".repeat(8);

  it.each([
    ["a message after 8 padding bytes", hex`00 02 ${padding} 00 c0 ff ee`, hex`c0 ff ee`],
    ["an empty message at the end of the block", hex`00 02 ${padding} ${"11".repeat(5)} 00`, hex``],
    ["a message containing zero bytes after the separator", hex`00 02 ${padding} 00 00 01 00`, hex`00 01 00`],
  ])("returns %s", (_name, block, message) => {
    expect(removePkcs1Type2Padding(block)).toEqual(message);
  });

  it.each([
    ["a first byte other than 00", hex`01 02 ${padding} 00 aa`],
    ["a block type other than 02", hex`00 01 ${padding} 00 aa`],
    ["no zero separator", hex`00 02 ${padding} aa bb`],
    ["fewer than 8 padding bytes", hex`00 02 ${"5a".repeat(7)} 00 aa bb`],
    ["an empty block", hex``],
  ])("rejects %s with one generic error", (_name, block) => {
    expect(() => removePkcs1Type2Padding(block)).toThrow(new MalformedFrameError("RSA decryption failed"));
  });
});

describe("raw type-1 signatures and HMAC-SHA1 (spec B.2 step 4)", () => {
  it("computes HMAC-SHA1 (RFC 2202 test case 1)", () => {
    expect(hmacSha1(new Uint8Array(20).fill(0x0b), utf8("Hi There"))).toEqual(
      hex`b617318655057264e28bc0b6fb378c8ef146be00`,
    );
  });

  it("signs the 20-byte digest directly, with no DigestInfo wrapper", () => {
    const digest = hmacSha1(utf8("key"), utf8("data"));
    const signature = rsaSignRaw(server.privateKey, digest);
    expect(signature).toHaveLength(256);
    const block = publicDecrypt({ key: server.publicKey, padding: constants.RSA_NO_PADDING }, signature);
    // 00 01 FF…FF 00 H: the padding fills everything before the bare 20-byte digest.
    expect(toHex(block)).toBe(`0001${"ff".repeat(256 - 3 - 20)}00${toHex(digest)}`);
  });

  it("verifies a signature and refuses a changed digest or a foreign key", () => {
    const digest = hmacSha1(utf8("key"), utf8("data"));
    const signature = rsaSignRaw(server.privateKey, digest);
    expect(rsaVerifyRaw(server.publicKey, digest, signature)).toBe(true);
    expect(rsaVerifyRaw(server.publicKey, hmacSha1(utf8("key"), utf8("datA")), signature)).toBe(false);
    expect(rsaVerifyRaw(otherServer.publicKey, digest, signature)).toBe(false);
    expect(rsaVerifyRaw(server.publicKey, digest, new Uint8Array(256))).toBe(false);
  });
});

describe("one AES context per direction for a whole session (spec B.3)", () => {
  it("gives the ciphertexts and plaintexts of a fresh context per message, over a chained stream", () => {
    const key = randomBytes(16);
    const iv = randomBytes(16);
    const fresh = {
      send: new ChainedCipher({ key, iv, aes: createNodeAesCbc() }),
      receive: new ChainedCipher({ key, iv, aes: createNodeAesCbc() }),
    };
    const reused = createSessionAesCbc(key);
    const send = new ChainedCipher({ key, iv, aes: reused });
    const receive = new ChainedCipher({ key, iv, aes: createSessionAesCbc(key) });
    for (let index = 0; index < 200; index += 1) {
      // One to five blocks: the protocol's IV is the first block of the previous message, not the last.
      const plain = randomBytes(index % 80);
      const expected = fresh.send.encrypt(plain);
      const actual = send.encrypt(plain);
      expect(toHex(actual)).toBe(toHex(expected));
      expect(toHex(receive.decrypt(actual))).toBe(toHex(fresh.receive.decrypt(expected)));
    }
  });

  it("keeps decrypting in step after a message whose padding is refused", () => {
    const key = randomBytes(16);
    const iv = randomBytes(16);
    const send = new ChainedCipher({ key, iv, aes: createNodeAesCbc() });
    const receive = new ChainedCipher({ key, iv, aes: createSessionAesCbc(key) });
    // Two blocks that decrypt to zeros under the receive IV: pad length 0, refused.
    const zeros = createNodeAesCbc().encrypt(key, iv, new Uint8Array(32));
    expect(() => receive.decrypt(zeros)).toThrow(MalformedFrameError);
    // The chain did not move: the sender's first message is still the one expected.
    expect(toHex(receive.decrypt(send.encrypt(utf8("after a bad frame"))))).toBe(
      toHex(utf8("after a bad frame")),
    );
    expect(toHex(receive.decrypt(send.encrypt(utf8("and the next"))))).toBe(toHex(utf8("and the next")));
  });

  it("refuses another key and data that is not whole blocks", () => {
    const aes = createSessionAesCbc(randomBytes(16));
    expect(() => aes.encrypt(randomBytes(16), randomBytes(16), randomBytes(16))).toThrow(RangeError);
    expect(() =>
      createSessionAesCbc(randomBytes(16)).decrypt(randomBytes(16), randomBytes(16), randomBytes(15)),
    ).toThrow(RangeError);
  });
});

describe("full handshake between device and server (spec B.2, B.3)", () => {
  it("agrees on credentials and exchanges encrypted, framed CoAP messages in both directions", () => {
    // Step 1: the server sends a nonce.
    const nonce = randomBytes(40);
    // Step 2: the device encrypts nonce || id || its public key under the server key.
    const ciphertext = createHandshakeCiphertext({
      serverPublicKey: server.publicKey,
      nonce,
      deviceId: DEVICE_ID,
      devicePublicKey: exportPublicKeyDer(device.publicKey),
    });
    expect(ciphertext).toHaveLength(HANDSHAKE_CIPHERTEXT_LENGTH);
    // Step 3: the server decrypts it (constant-time unpadding) and checks the nonce.
    const plaintext = openHandshakeCiphertext({ ciphertext, serverPrivateKey: server.privateKey, nonce });
    expect(plaintext.deviceId).toBe(DEVICE_ID);
    const devicePublicKey = parseDevicePublicKey(plaintext.devicePublicKey ?? new Uint8Array(0));
    // Step 4: the server replies with C || S.
    const serverCredentials = credentials();
    const reply = createHandshakeReply({
      devicePublicKey,
      serverPrivateKey: server.privateKey,
      credentials: serverCredentials,
    });
    expect(reply).toHaveLength(HANDSHAKE_REPLY_LENGTH);
    // Step 5: the device, holding only its stored PKCS#1 DER and the server DER, decrypts and verifies.
    const deviceCredentials = openHandshakeReply({
      reply,
      devicePrivateKey: importPrivateKey(exportPrivateKeyDer(device.privateKey)),
      serverPublicKey: parseServerPublicKey(exportPublicKeyDer(server.publicKey)),
    });
    expect(deviceCredentials).toEqual(serverCredentials);

    // Step 6 and B.3: both switch to AES with independent chains per direction.
    const deviceSide = createSessionCiphers(deviceCredentials);
    const serverSide = createSessionCiphers(serverCredentials);
    const serverSplitter = new FrameSplitter();
    const deviceSplitter = new FrameSplitter();
    const hello = {
      kind: "hello",
      messageId: 1,
      confirmable: false,
      hello: { layout: "2.x", productId: 6, productVersion: 1, flags: 0x36, platformId: 6 },
    } as const;
    const event = {
      kind: "event",
      messageId: 2,
      confirmable: false,
      visibility: "private",
      name: "spark/hardware/ota_chunk_size",
      ttl: 60,
      data: "512",
    } as const;
    const wire = [hello, event].map((m) => encodeFrame(deviceSide.send.encrypt(encodeMessage(m))));
    const received = serverSplitter
      .push(new Uint8Array(Buffer.concat(wire)))
      .map((body) => decodeMessage(serverSide.receive.decrypt(body), "device"));
    expect(received).toEqual([hello, event]);

    const serverHello = { kind: "server-hello", messageId: 0x4242, confirmable: false } as const;
    const call = { kind: "function-call", messageId: 0x4243, token: 1, name: "led", argument: "on" } as const;
    const back = [serverHello, call].flatMap((m) =>
      deviceSplitter.push(encodeFrame(serverSide.send.encrypt(encodeMessage(m)))),
    );
    expect(back.map((body) => decodeMessage(deviceSide.receive.decrypt(body), "server"))).toEqual([
      serverHello,
      call,
    ]);
  });

  describe("failures", () => {
    function deviceCiphertext(nonce: Uint8Array): Uint8Array {
      return createHandshakeCiphertext({
        serverPublicKey: server.publicKey,
        nonce,
        deviceId: DEVICE_ID,
        devicePublicKey: exportPublicKeyDer(device.publicKey),
      });
    }

    it("rejects a device ciphertext that echoes another nonce", () => {
      const ciphertext = deviceCiphertext(randomBytes(40));
      expect(() =>
        openHandshakeCiphertext({ ciphertext, serverPrivateKey: server.privateKey, nonce: randomBytes(40) }),
      ).toThrow(MalformedFrameError);
    });

    it("rejects a device ciphertext encrypted for another server key", () => {
      const nonce = randomBytes(40);
      const ciphertext = deviceCiphertext(nonce);
      expect(() =>
        openHandshakeCiphertext({ ciphertext, serverPrivateKey: otherServer.privateKey, nonce }),
      ).toThrow(MalformedFrameError);
    });

    it("rejects a device ciphertext that is not 256 bytes", () => {
      expect(() =>
        openHandshakeCiphertext({
          ciphertext: new Uint8Array(128),
          serverPrivateKey: server.privateKey,
          nonce: randomBytes(40),
        }),
      ).toThrow(MalformedFrameError);
    });

    function reply(serverKey: RsaKeyPair = server): Uint8Array {
      return createHandshakeReply({
        devicePublicKey: device.publicKey,
        serverPrivateKey: serverKey.privateKey,
        credentials: credentials(),
      });
    }

    it.each([
      ["a tampered signature", () => reply().map((b, i) => (i === 200 ? b ^ 1 : b)), /signature/],
      ["a tampered credential ciphertext", () => reply().map((b, i) => (i === 5 ? b ^ 1 : b)), /./],
      ["a reply signed by another server key", () => reply(otherServer), /signature/],
      ["a reply of 383 bytes", () => reply().subarray(0, 383), /handshake reply/],
    ])("makes the device reject %s", (_name, makeReply, reason) => {
      const open = (): SessionCredentials =>
        openHandshakeReply({
          reply: makeReply(),
          devicePrivateKey: device.privateKey,
          serverPublicKey: server.publicKey,
        });
      expect(open).toThrow(reason);
      expect(open).toThrow(Error);
    });

    it("rejects a reply opened with another device's private key", async () => {
      const stranger = await generateDeviceKeyPair();
      expect(() =>
        openHandshakeReply({
          reply: reply(),
          devicePrivateKey: stranger.privateKey,
          serverPublicKey: server.publicKey,
        }),
      ).toThrow(MalformedFrameError);
    });

    it("refuses to build a reply for a device key that is not RSA-1024", () => {
      expect(() =>
        createHandshakeReply({
          devicePublicKey: server.publicKey,
          serverPrivateKey: server.privateKey,
          credentials: credentials(),
        }),
      ).toThrow(/RSA-1024/);
    });
  });
});
