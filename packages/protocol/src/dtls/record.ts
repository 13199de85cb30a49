/**
 * DTLS 1.2 records: the 13-byte header (type, version, epoch, 48-bit sequence number, length), the Connection
 * ID form of the draft Particle's mbedTLS implements (type 25, the CID between sequence number and length),
 * Device OS's two ways of saying "this is a resumed session from a new address" (type 253, and the
 * move-session record 254 with the device ID appended), and DTLSInnerPlaintext.
 * @see RFC 6347 §4.1, draft-ietf-tls-dtls-connection-id-05 §4, docs/gen3-wire-format.md §2
 */
import { MalformedFrameError, TruncatedFrameError } from "../errors.js";
import {
  CID_PADDING_GRANULARITY,
  CONTENT_TYPE,
  MOVE_SESSION_DEVICE_ID_LENGTH,
  RECORD_HEADER_LENGTH,
} from "./constants.js";
import { WireReader, WireWriter } from "./wire.js";

/** One record as on the wire; `fragment` is still encrypted when `epoch` > 0. */
export interface DtlsRecord {
  /** The content type in the header (25 for a CID record; 253 is read as 25 with `afterResume`). */
  readonly type: number;
  readonly version: number;
  readonly epoch: number;
  /** 48-bit record sequence number. */
  readonly sequenceNumber: number;
  /** The Connection ID, for type 25 records. */
  readonly cid?: Uint8Array;
  readonly fragment: Uint8Array;
  /** Sent as type 253: the device resumed a persisted session (Device OS ≥ 4.0) and may have a new address. */
  readonly afterResume?: boolean;
}

/** A datagram's records, and the device ID of a move-session datagram (Device OS < 3.1). */
export interface DtlsDatagram {
  readonly records: DtlsRecord[];
  /** Set for a move-session datagram: the 12-byte device ID the device appended (its one record is type 23). */
  readonly moveSessionDeviceId?: Uint8Array;
}

/** Options of {@link decodeDatagram}. */
export interface DecodeDatagramOptions {
  /** Length of the Connection IDs this side assigned (records of type 25 carry one). @default 8 */
  readonly cidLength?: number;
}

/**
 * Splits a datagram into its records. A datagram may hold several records (a whole flight), but a move-session
 * datagram holds one application-data record followed by the device ID and its length (12).
 */
export function decodeDatagram(datagram: Uint8Array, options: DecodeDatagramOptions = {}): DtlsDatagram {
  const { cidLength = 8 } = options;
  if (datagram[0] === CONTENT_TYPE.moveSession) {
    // Device OS v2.3.1 DTLSMessageChannel::send: type byte 23 → 254, then device ID, then its length.
    const idLength = datagram[datagram.length - 1];
    if (idLength !== MOVE_SESSION_DEVICE_ID_LENGTH)
      throw new MalformedFrameError(`a move-session record must end with the ID length 12, not ${idLength}`);
    const end = datagram.length - 1 - MOVE_SESSION_DEVICE_ID_LENGTH;
    if (end < RECORD_HEADER_LENGTH) throw new TruncatedFrameError("move-session record too short");
    const record = Uint8Array.from(datagram.subarray(0, end));
    record[0] = CONTENT_TYPE.applicationData;
    const { records } = decodeDatagram(record, options);
    if (records.length !== 1) throw new MalformedFrameError("a move-session datagram holds one record");
    return { records, moveSessionDeviceId: datagram.slice(end, end + MOVE_SESSION_DEVICE_ID_LENGTH) };
  }
  const reader = new WireReader(datagram);
  const records: DtlsRecord[] = [];
  while (reader.remaining > 0) {
    let type = reader.uint(1, "record type");
    const afterResume = type === CONTENT_TYPE.cidAfterResume;
    if (afterResume) type = CONTENT_TYPE.cid;
    const version = reader.uint(2, "record version");
    if (version >> 8 !== 0xfe)
      throw new MalformedFrameError(`not a DTLS record version: 0x${version.toString(16)}`);
    const epoch = reader.uint(2, "record epoch");
    const sequenceNumber = reader.uint(6, "record sequence number");
    const cid = type === CONTENT_TYPE.cid ? reader.bytes(cidLength, "connection ID") : undefined;
    const fragment = reader.vector(2, "record fragment");
    records.push({
      type,
      version,
      epoch,
      sequenceNumber,
      fragment,
      ...(cid ? { cid } : {}),
      ...(afterResume ? { afterResume } : {}),
    });
  }
  return { records };
}

/** Encodes one record (with its CID when `cid` is given, as type 25, or 253 with `afterResume`). */
export function encodeRecord(record: DtlsRecord): Uint8Array {
  const writer = new WireWriter();
  const type = record.cid && record.afterResume ? CONTENT_TYPE.cidAfterResume : record.type;
  writer.uint(1, type).uint(2, record.version).uint(2, record.epoch).uint(6, record.sequenceNumber);
  if (record.cid) writer.bytes(record.cid);
  return writer.vector(2, record.fragment).finish();
}

/** Turns an encoded application-data record into a move-session datagram (what Device OS < 3.1 sends). */
export function encodeMoveSession(record: Uint8Array, deviceId: Uint8Array): Uint8Array {
  if (record[0] !== CONTENT_TYPE.applicationData)
    throw new MalformedFrameError("only application-data records are sent as move-session records");
  if (deviceId.length !== MOVE_SESSION_DEVICE_ID_LENGTH)
    throw new MalformedFrameError("a device ID is 12 bytes");
  const out = new Uint8Array(record.length + MOVE_SESSION_DEVICE_ID_LENGTH + 1);
  out.set(record);
  out[0] = CONTENT_TYPE.moveSession;
  out.set(deviceId, record.length);
  out[out.length - 1] = MOVE_SESSION_DEVICE_ID_LENGTH;
  return out;
}

/**
 * DTLSInnerPlaintext: content, the real type, zeros to a multiple of 16 (as mbedTLS pads).
 * @see draft-ietf-tls-dtls-connection-id-05 §4, mbedTLS ssl_cid_build_inner_plaintext
 */
export function encodeInnerPlaintext(content: Uint8Array, type: number): Uint8Array {
  const padding =
    (CID_PADDING_GRANULARITY - ((content.length + 1) % CID_PADDING_GRANULARITY)) % CID_PADDING_GRANULARITY;
  const out = new Uint8Array(content.length + 1 + padding);
  out.set(content);
  out[content.length] = type;
  return out;
}

/** Reads DTLSInnerPlaintext: the last non-zero byte is the real type, the zeros after it are padding. */
export function decodeInnerPlaintext(inner: Uint8Array): { type: number; content: Uint8Array } {
  let end = inner.length;
  while (end > 0 && inner[end - 1] === 0) end--;
  if (end === 0) throw new MalformedFrameError("DTLSInnerPlaintext without a content type");
  return { type: inner[end - 1] ?? 0, content: inner.slice(0, end - 1) };
}
