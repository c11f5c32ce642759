// Public keys of key-based authorities: PEM in, a KeyObject of a supported type out.
import { createHash, createPublicKey, type KeyObject } from 'node:crypto'

export class KeyError extends Error {
  override name = 'KeyError'
}

const SUPPORTED_CURVES = new Set(['prime256v1', 'secp384r1', 'secp521r1'])

/** Parses a PEM public key: ECDSA P-256/P-384/P-521, Ed25519 or RSA (at least 2048 bits). */
export function parsePublicKey(pem: string): KeyObject {
  let key: KeyObject
  try {
    key = createPublicKey(pem)
  } catch (err) {
    throw new KeyError(`not a PEM public key: ${(err as Error).message}`)
  }
  const details = key.asymmetricKeyDetails ?? {}
  switch (key.asymmetricKeyType) {
    case 'ec':
      if (!SUPPORTED_CURVES.has(details.namedCurve ?? '')) throw new KeyError(`unsupported EC curve ${details.namedCurve ?? '(unknown)'}`)
      return key
    case 'ed25519':
      return key
    case 'rsa':
      if ((details.modulusLength ?? 0) < 2048) throw new KeyError(`RSA key of ${details.modulusLength} bits is too short (2048 at least)`)
      return key
    default:
      throw new KeyError(`unsupported key type ${key.asymmetricKeyType ?? '(unknown)'}`)
  }
}

const hints = new WeakMap<KeyObject, string>()

/** base64(sha256(SubjectPublicKeyInfo DER)): the hint cosign writes into bundles, and ours in evidence. */
export function keyHint(key: KeyObject): string {
  let hint = hints.get(key)
  if (hint === undefined) {
    hint = createHash('sha256').update(key.export({ format: 'der', type: 'spki' })).digest('base64')
    hints.set(key, hint)
  }
  return hint
}
