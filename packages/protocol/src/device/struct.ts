import { MalformedFrameError, TruncatedFrameError } from "../errors.js";
import { copyBytes } from "./bytes.js";

/**
 * One fixed-width field of a binary layout: its size in bytes and how to read and write it at an offset.
 * All multi-byte integers of the Gen 2 protocol are big-endian (spec/device-protocols.md B.4).
 */
export interface FieldCodec<TValue> {
  /** Width on the wire, in bytes. */
  readonly size: number;
  /** Reads the field; the caller has checked that `size` bytes are available at `offset`. */
  read(view: DataView, offset: number): TValue;
  /** Writes the field, throwing {@link MalformedFrameError} when `value` does not fit. */
  write(view: DataView, offset: number, value: TValue): void;
}

function unsigned(size: 1 | 2 | 4): FieldCodec<number> {
  const max = 2 ** (8 * size) - 1;
  return {
    size,
    read(view, offset) {
      if (size === 1) return view.getUint8(offset);
      return size === 2 ? view.getUint16(offset) : view.getUint32(offset);
    },
    write(view, offset, value) {
      if (!Number.isInteger(value) || value < 0 || value > max) {
        throw new MalformedFrameError(`${value} does not fit an unsigned ${8 * size}-bit field`);
      }
      if (size === 1) view.setUint8(offset, value);
      else if (size === 2) view.setUint16(offset, value);
      else view.setUint32(offset, value);
    },
  };
}

/** An unsigned 8-bit integer. */
export const u8: FieldCodec<number> = unsigned(1);

/** An unsigned 16-bit big-endian integer. */
export const u16: FieldCodec<number> = unsigned(2);

/** An unsigned 32-bit big-endian integer. */
export const u32: FieldCodec<number> = unsigned(4);

/** A run of exactly `size` raw bytes (read as a copy, so it never aliases the input). */
export function bytes(size: number): FieldCodec<Uint8Array> {
  return {
    size,
    read(view, offset) {
      return new Uint8Array(view.buffer, view.byteOffset + offset, size).slice();
    },
    write(view, offset, value) {
      if (value.length !== size) {
        throw new MalformedFrameError(`expected ${size} bytes, got ${value.length}`);
      }
      new Uint8Array(view.buffer, view.byteOffset + offset, size).set(value);
    },
  };
}

/** A layout schema: field names in wire order, each with its codec. */
export type StructSchema = Readonly<Record<string, FieldCodec<unknown>>>;

/** The plain object a {@link StructSchema} decodes to, inferred from the schema. */
export type StructValue<TSchema extends StructSchema> = {
  -readonly [K in keyof TSchema]: TSchema[K] extends FieldCodec<infer TValue> ? TValue : never;
};

/** A fixed-size binary layout built by {@link defineStruct}. */
export interface Struct<TSchema extends StructSchema> {
  /** Name used in error messages. */
  readonly name: string;
  /** The schema the layout was built from. */
  readonly schema: TSchema;
  /** Total size in bytes, the sum of the field sizes. */
  readonly size: number;
  /** Writes `value` into a new array of exactly {@link Struct.size} bytes. */
  encode(value: StructValue<TSchema>): Uint8Array;
  /** Reads exactly {@link Struct.size} bytes; shorter input is truncated, longer input is malformed. */
  decode(input: Uint8Array): StructValue<TSchema>;
  /** Reads the layout from the start of `input` and returns the bytes after it as `rest` (a copy). */
  decodePrefix(input: Uint8Array): { value: StructValue<TSchema>; rest: Uint8Array };
}

function viewOf(input: Uint8Array): DataView {
  return new DataView(input.buffer, input.byteOffset, input.byteLength);
}

/**
 * Declares a fixed binary layout as a schema value; its TypeScript type is inferred from the schema, so the
 * layout and the type cannot drift apart (STYLE B.11). Fields are laid out in the schema's key order.
 */
export function defineStruct<TSchema extends StructSchema>(name: string, schema: TSchema): Struct<TSchema> {
  const fields = Object.entries(schema);
  const size = fields.reduce((sum, [, field]) => sum + field.size, 0);

  function read(input: Uint8Array): StructValue<TSchema> {
    if (input.length < size) {
      throw new TruncatedFrameError(`${name}: need ${size} bytes, got ${input.length}`);
    }
    const view = viewOf(input);
    const value: Record<string, unknown> = {};
    let offset = 0;
    for (const [key, field] of fields) {
      value[key] = field.read(view, offset);
      offset += field.size;
    }
    return value as StructValue<TSchema>;
  }

  return {
    name,
    schema,
    size,
    encode(value) {
      const out = new Uint8Array(size);
      const view = viewOf(out);
      const record = value as Record<string, unknown>;
      let offset = 0;
      for (const [key, field] of fields) {
        try {
          field.write(view, offset, record[key]);
        } catch (error) {
          const reason = error instanceof Error ? error.message : String(error);
          throw new MalformedFrameError(`${name}: field ${key}: ${reason}`);
        }
        offset += field.size;
      }
      return out;
    },
    decode(input) {
      if (input.length > size) {
        throw new MalformedFrameError(`${name}: expected ${size} bytes, got ${input.length}`);
      }
      return read(input);
    },
    decodePrefix(input) {
      return { value: read(input), rest: copyBytes(input, size) };
    },
  };
}
