/**
 * A minimal Parquet writer for one test: a REQUIRED INT32 `id` column and a REQUIRED INT96 timestamp column, PLAIN
 * encoded and uncompressed, laid out the way Spark/Databricks write legacy timestamps (8 bytes nanoseconds of the day,
 * then 4 bytes Julian day, little-endian). DuckDB cannot write INT96, and no Parquet writer here can, so the test
 * builds the bytes itself — Thrift compact protocol for the metadata.
 */

class CompactWriter {
  readonly bytes: number[] = [];
  #lastField: number[] = [0];

  varint(n: bigint): void {
    let v = n;
    while (v >= 0x80n) {
      this.bytes.push(Number((v & 0x7fn) | 0x80n));
      v >>= 7n;
    }
    this.bytes.push(Number(v));
  }

  zigzag(n: number | bigint): void {
    const v = BigInt(n);
    this.varint(v >= 0n ? v << 1n : (-v << 1n) - 1n);
  }

  fieldHeader(id: number, type: number): void {
    const last = this.#lastField.at(-1)!;
    const delta = id - last;
    if (delta > 0 && delta <= 15) this.bytes.push((delta << 4) | type);
    else {
      this.bytes.push(type);
      this.zigzag(id);
    }
    this.#lastField[this.#lastField.length - 1] = id;
  }

  i32(id: number, v: number): void {
    this.fieldHeader(id, 5);
    this.zigzag(v);
  }

  i64(id: number, v: number | bigint): void {
    this.fieldHeader(id, 6);
    this.zigzag(v);
  }

  string(id: number, s: string): void {
    this.fieldHeader(id, 8);
    const b = Buffer.from(s, 'utf8');
    this.varint(BigInt(b.length));
    this.bytes.push(...b);
  }

  listHeader(id: number, elementType: number, size: number): void {
    this.fieldHeader(id, 9);
    if (size < 15) this.bytes.push((size << 4) | elementType);
    else {
      this.bytes.push(0xf0 | elementType);
      this.varint(BigInt(size));
    }
  }

  /** A struct as a field (id) or as a list element (id undefined). */
  struct(id: number | undefined, body: () => void): void {
    if (id !== undefined) this.fieldHeader(id, 12);
    this.#lastField.push(0);
    body();
    this.bytes.push(0);
    this.#lastField.pop();
  }

  stop(): void {
    this.bytes.push(0);
  }
}

const JULIAN_DAY_OF_UNIX_EPOCH = 2440588;

/** INT96 bytes of a UTC instant given as whole microseconds since the Unix epoch. */
export function int96(epochMicros: bigint): Buffer {
  const dayMicros = 86_400_000_000n;
  const day = epochMicros >= 0n ? epochMicros / dayMicros : (epochMicros - dayMicros + 1n) / dayMicros;
  const nanosOfDay = (epochMicros - day * dayMicros) * 1000n;
  const out = Buffer.alloc(12);
  out.writeBigInt64LE(nanosOfDay, 0);
  out.writeInt32LE(Number(day) + JULIAN_DAY_OF_UNIX_EPOCH, 8);
  return out;
}

/** Writes `rows` as a Parquet file with columns `id INT32` and `<name> INT96`. */
export function int96ParquetFile(name: string, rows: ReadonlyArray<{ id: number; epochMicros: bigint }>): Buffer {
  const chunks: Buffer[] = [Buffer.from('PAR1')];
  let offset = 4;
  const columns: Array<{ path: string; type: number; offset: number; size: number }> = [];
  const page = (path: string, type: number, data: Buffer) => {
    const header = new CompactWriter();
    header.i32(1, 0); // DATA_PAGE
    header.i32(2, data.length);
    header.i32(3, data.length);
    header.struct(5, () => {
      header.i32(1, rows.length);
      header.i32(2, 0); // PLAIN
      header.i32(3, 3); // RLE (no levels: REQUIRED column)
      header.i32(4, 3);
    });
    header.stop();
    const bytes = Buffer.concat([Buffer.from(header.bytes), data]);
    columns.push({ path, type, offset, size: bytes.length });
    chunks.push(bytes);
    offset += bytes.length;
  };
  const ids = Buffer.alloc(4 * rows.length);
  for (const [i, r] of rows.entries()) ids.writeInt32LE(r.id, i * 4);
  page('id', 1, ids);
  page(name, 3, Buffer.concat(rows.map((r) => int96(r.epochMicros))));

  const meta = new CompactWriter();
  meta.i32(1, 1); // version
  meta.listHeader(2, 12, 3);
  meta.struct(undefined, () => {
    meta.string(4, 'schema');
    meta.i32(5, 2);
  });
  for (const c of columns) {
    meta.struct(undefined, () => {
      meta.i32(1, c.type);
      meta.i32(3, 0); // REQUIRED
      meta.string(4, c.path);
    });
  }
  meta.i64(3, rows.length);
  meta.listHeader(4, 12, 1);
  meta.struct(undefined, () => {
    meta.listHeader(1, 12, columns.length);
    for (const c of columns) {
      meta.struct(undefined, () => {
        meta.i64(2, c.offset);
        meta.struct(3, () => {
          meta.i32(1, c.type);
          meta.listHeader(2, 5, 1);
          meta.zigzag(0); // PLAIN
          meta.listHeader(3, 8, 1);
          const p = Buffer.from(c.path);
          meta.varint(BigInt(p.length));
          meta.bytes.push(...p);
          meta.i32(4, 0); // UNCOMPRESSED
          meta.i64(5, rows.length);
          meta.i64(6, c.size);
          meta.i64(7, c.size);
          meta.i64(9, c.offset);
        });
      });
    }
    meta.i64(
      2,
      columns.reduce((n, c) => n + c.size, 0),
    );
    meta.i64(3, rows.length);
  });
  meta.string(6, 'ferry test INT96 writer (Spark layout)');
  meta.stop();
  const footer = Buffer.from(meta.bytes);
  const length = Buffer.alloc(4);
  length.writeUInt32LE(footer.length, 0);
  chunks.push(footer, length, Buffer.from('PAR1'));
  return Buffer.concat(chunks);
}
