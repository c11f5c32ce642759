// Public keys for tests of the key parser, generated fresh with node:crypto: every kind cosign
// accepts and every kind it refuses (weak RSA, odd curves, RSA-PSS, garbage), with the code and
// the message each refusal must carry.
import { generateKeyPairSync, type KeyObject } from 'node:crypto'

export function pem(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'spki' }).toString()
}

export interface KeyCase {
  name: string
  pem: string
}
export interface RefusedKeyCase extends KeyCase {
  code: string
  message: RegExp
}

export function acceptedKeys(): KeyCase[] {
  const cases: [string, KeyObject][] = [
    ['Ed25519', generateKeyPairSync('ed25519').publicKey],
    ['ECDSA P-256', generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey],
    ['ECDSA P-384', generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey],
    ['ECDSA P-521', generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey],
    ['RSA 2048', generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey],
    ['RSA 3072', generateKeyPairSync('rsa', { modulusLength: 3072 }).publicKey],
    ['RSA 4096', generateKeyPairSync('rsa', { modulusLength: 4096 }).publicKey],
  ]
  return cases.map(([name, key]) => ({ name, pem: pem(key) }))
}

/** RSA-8192 takes seconds to generate: call once per test file. */
export function refusedKeys(): RefusedKeyCase[] {
  const rsa = (bits: number) => pem(generateKeyPairSync('rsa', { modulusLength: bits }).publicKey)
  const ec = (curve: string) => pem(generateKeyPairSync('ec', { namedCurve: curve }).publicKey)
  return [
    { name: 'RSA 1024', pem: rsa(1024), code: 'KEY_RSA_SIZE', message: /key is RSA-1024; RSA keys must be 2048–4096 bits/ },
    { name: 'RSA 8192', pem: rsa(8192), code: 'KEY_RSA_SIZE', message: /key is RSA-8192; RSA keys must be 2048–4096 bits/ },
    { name: 'P-224', pem: ec('secp224r1'), code: 'KEY_EC_CURVE', message: /key is ECDSA on secp224r1 \(P-224\); ECDSA keys must use P-256, P-384 or P-521/ },
    { name: 'secp256k1', pem: ec('secp256k1'), code: 'KEY_EC_CURVE', message: /key is ECDSA on secp256k1; ECDSA keys must use P-256, P-384 or P-521/ },
    { name: 'RSA-PSS', pem: pem(generateKeyPairSync('rsa-pss', { modulusLength: 2048 }).publicKey), code: 'KEY_TYPE', message: /key is rsa-pss; accepted keys are RSA/ },
    { name: 'X25519', pem: pem(generateKeyPairSync('x25519').publicKey), code: 'KEY_TYPE', message: /key is x25519; accepted keys are/ },
    { name: 'garbage PEM', pem: '-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n', code: 'KEY_UNREADABLE', message: /unreadable public key/ },
    { name: 'not PEM at all', pem: 'not a key', code: 'KEY_NOT_PEM', message: /not a PEM public key/ },
    {
      name: 'a private key',
      pem: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      code: 'KEY_PRIVATE',
      message: /this is a private key: give the public key/,
    },
  ]
}
