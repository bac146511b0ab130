// Bytes as lowercase hex: how the JSON-carrying statements take data
// (decode(..., 'hex') on the server) and how the CLI prints bytes that are
// not text. One place for it, shared by the store, the batcher, the test
// harness and the CLI.

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** `bytes` as lowercase hex, two digits per byte. */
export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += HEX[bytes[i]];
  return out;
}
