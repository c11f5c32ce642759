// COSE_Sign1 (RFC 9052) structure, as Notation's COSE envelope carries it: a CBOR array of
// protected header bytes, unprotected header map, payload bytes and signature bytes, optionally
// under tag 18. Input is hostile: the whole buffer must be exactly one such structure, so a
// binary blob that merely starts like one (or a tar carrying one) is not taken for a signature.
import { decode, Tag } from 'cbor2'

/** Maps stay Maps (COSE keys are integers); anything after the first item is an error. */
const decodeCbor = (bytes: Uint8Array): unknown => decode(bytes, { preferMap: true })

export interface CoseSign1 {
  protectedBytes: Uint8Array
  unprotected: Map<unknown, unknown>
  payload: Uint8Array | null
  signature: Uint8Array
}

const COSE_SIGN1_TAG = 18

/** The COSE_Sign1 in `bytes`, or undefined when the bytes are anything else (trailing data included). */
export function parseCoseSign1(bytes: Uint8Array): CoseSign1 | undefined {
  let item: unknown
  try {
    item = decodeCbor(bytes)
  } catch {
    return undefined
  }
  if (item instanceof Tag) {
    if (item.tag !== COSE_SIGN1_TAG) return undefined
    item = item.contents
  }
  if (!Array.isArray(item) || item.length !== 4) return undefined
  const [protectedBytes, unprotected, payload, signature] = item as unknown[]
  if (!(protectedBytes instanceof Uint8Array) || !(unprotected instanceof Map) || !(signature instanceof Uint8Array)) return undefined
  if (payload !== null && !(payload instanceof Uint8Array)) return undefined
  return { protectedBytes, unprotected, payload, signature }
}
