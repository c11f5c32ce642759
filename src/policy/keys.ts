// Public keys of `key` authorities: PEM text, parsed once at start-up.
import { createHash, createPublicKey, type KeyObject } from 'node:crypto'

export interface PolicyKey {
  key: KeyObject
  /** base64 SHA-256 of the key's SubjectPublicKeyInfo (as src/verify names keys): how verdicts and logs name the key. */
  hint: string
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n[\s\S]*?-----END \1-----/g
const ACCEPTED_TYPES = new Set(['ec', 'ed25519', 'rsa', 'rsa-pss'])

/** Every `PUBLIC KEY` block in `pem` (a file may hold several keys); throws with a readable reason. */
export function parsePublicKeys(pem: string): PolicyKey[] {
  const blocks = [...pem.matchAll(PEM_BLOCK)]
  if (blocks.length === 0) throw new Error('not a PEM public key (expected -----BEGIN PUBLIC KEY-----)')
  return blocks.map((block) => {
    const label = block[1]!
    if (label.includes('PRIVATE')) throw new Error('this is a private key: give the public key (cosign.pub)')
    if (label !== 'PUBLIC KEY' && label !== 'RSA PUBLIC KEY') throw new Error(`unexpected PEM block "${label}": expected PUBLIC KEY`)
    let key: KeyObject
    try {
      key = createPublicKey(block[0])
    } catch (err) {
      throw new Error(`unreadable public key: ${(err as Error).message}`, { cause: err })
    }
    if (!ACCEPTED_TYPES.has(key.asymmetricKeyType ?? '')) {
      throw new Error(`unsupported key type "${key.asymmetricKeyType}": expected ECDSA, Ed25519 or RSA`)
    }
    return { key, hint: keyHint(key) }
  })
}

export function keyHint(key: KeyObject): string {
  return createHash('sha256').update(key.export({ type: 'spki', format: 'der' })).digest('base64')
}
