// The one parser of PEM public keys (policy `key` authorities, key files, CIP documents,
// `verify-bundle --key`), with cosign's acceptance rules: RSA 2048–4096 bits, ECDSA P-256/P-384/
// P-521, Ed25519. Threat: a weak or odd key (RSA-1024, P-224, secp256k1, RSA-PSS) accepted as a
// trust anchor, or a private key pasted where the public one belongs.
import { createHash, createPublicKey, type KeyObject } from 'node:crypto'
import { CodedError } from '../errors.ts'

export type KeyErrorCode = 'KEY_NOT_PEM' | 'KEY_PRIVATE' | 'KEY_UNREADABLE' | 'KEY_MULTIPLE' | 'KEY_RSA_SIZE' | 'KEY_EC_CURVE' | 'KEY_TYPE'

export class KeyError extends CodedError<KeyErrorCode> {
  override name = 'KeyError'
}

export interface PublicKey {
  key: KeyObject
  /** base64 SHA-256 of the key's SubjectPublicKeyInfo: how bundles, verdicts and logs name the key. */
  hint: string
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n[\s\S]*?-----END \1-----/g
const RSA_MIN_BITS = 2048
const RSA_MAX_BITS = 4096
/** OpenSSL's names of P-256, P-384 and P-521, with the names people know them by. */
const CURVES: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' }
const CURVE_ALIASES: Record<string, string> = { secp224r1: 'P-224', prime192v1: 'P-192' }

/** Every `PUBLIC KEY` block in `pem` (a file may hold several keys); throws KeyError naming the problem. */
export function parsePublicKeys(pem: string): PublicKey[] {
  const blocks = [...pem.matchAll(PEM_BLOCK)]
  if (blocks.length === 0) throw new KeyError('KEY_NOT_PEM', 'not a PEM public key (expected -----BEGIN PUBLIC KEY-----)')
  return blocks.map((block) => {
    const label = block[1]!
    if (label.includes('PRIVATE')) throw new KeyError('KEY_PRIVATE', 'this is a private key: give the public key (cosign.pub)')
    if (label !== 'PUBLIC KEY' && label !== 'RSA PUBLIC KEY') throw new KeyError('KEY_NOT_PEM', `unexpected PEM block "${label}": expected PUBLIC KEY`)
    let key: KeyObject
    try {
      key = createPublicKey(block[0])
    } catch (err) {
      throw new KeyError('KEY_UNREADABLE', `unreadable public key: ${(err as Error).message}`, { cause: err })
    }
    checkAccepted(key)
    return { key, hint: keyHint(key) }
  })
}

/** Exactly one accepted public key (`--key cosign.pub`). */
export function parsePublicKey(pem: string): KeyObject {
  const keys = parsePublicKeys(pem)
  if (keys.length > 1) throw new KeyError('KEY_MULTIPLE', `${keys.length} public keys given where one is expected`)
  return keys[0]!.key
}

function checkAccepted(key: KeyObject): void {
  const details = key.asymmetricKeyDetails ?? {}
  switch (key.asymmetricKeyType) {
    case 'ed25519':
      return
    case 'rsa': {
      const bits = details.modulusLength ?? 0
      if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) throw new KeyError('KEY_RSA_SIZE', `key is RSA-${bits}; RSA keys must be ${RSA_MIN_BITS}–${RSA_MAX_BITS} bits`)
      return
    }
    case 'ec': {
      const curve = details.namedCurve ?? '(unknown)'
      if (CURVES[curve] === undefined) {
        const known = CURVE_ALIASES[curve]
        throw new KeyError('KEY_EC_CURVE', `key is ECDSA on ${curve}${known ? ` (${known})` : ''}; ECDSA keys must use P-256, P-384 or P-521`)
      }
      return
    }
    default:
      throw new KeyError('KEY_TYPE', `key is ${key.asymmetricKeyType ?? '(unknown type)'}; accepted keys are RSA (2048–4096 bits), ECDSA (P-256, P-384, P-521) and Ed25519`)
  }
}

const hints = new WeakMap<KeyObject, string>()

/** base64(sha256(SubjectPublicKeyInfo DER)): the hint cosign writes into bundles, and ours in evidence. */
export function keyHint(key: KeyObject): string {
  let hint = hints.get(key)
  if (hint === undefined) {
    hint = createHash('sha256')
      .update(key.export({ format: 'der', type: 'spki' }))
      .digest('base64')
    hints.set(key, hint)
  }
  return hint
}
