// Work done once per certificate instead of once per signature.
//
// Measured on @sigstore/verify 4.1.3 with a public-good bundle: ~6.5 ms per verification, of which
// about half is re-encoding certificates to DER (`X509Certificate.equals` and `verify` re-encode the
// whole ASN.1 tree on every call) and a third is ECDSA P-384 checks of the chain — the same
// intermediate-by-root and root-by-itself checks for every signature. A certificate instance here
// remembers its own DER encoding and the outcome of each signature check on it, keyed by the exact
// bytes of the issuer's public key. Instances that are never mutated are the only ones memoised: the
// trust root's certificates (built once per root) and signing certificates (shared through a cache
// keyed by their exact DER bytes). sigstore-js still makes every decision: a memoised answer is the
// answer it computed earlier for identical inputs, and verification has no time-dependent input
// here (signing times come from the bundle, never from the clock).
import { createHash } from 'node:crypto'
import { X509Certificate } from '@sigstore/core'
import { LRUCache } from 'lru-cache'
import type { TrustMaterial } from '@sigstore/verify'

/** Per-certificate bound: only trust-root certificates and a leaf's issuer are expected as keys. */
const MAX_CHECKS_PER_CERTIFICATE = 32

const memoised = new WeakSet<X509Certificate>()

/** Makes `cert` (an instance nothing will mutate) remember its encoding and its signature checks. */
export function memoiseCertificate(cert: X509Certificate): X509Certificate {
  if (memoised.has(cert)) return cert
  const der = cert.root.toDER()
  cert.root.toDER = () => der

  const checks = new Map<string, boolean>()
  const verify = cert.verify.bind(cert)
  cert.verify = (issuer?: X509Certificate): boolean => {
    // X509Certificate.verify uses exactly the issuer's SubjectPublicKeyInfo (or its own when
    // self-signed): that is the whole input besides this certificate's bytes.
    const key = issuer === undefined ? 'self' : issuer.publicKey.toString('base64')
    const known = checks.get(key)
    if (known !== undefined) return known
    const result = verify(issuer)
    if (checks.size < MAX_CHECKS_PER_CERTIFICATE) checks.set(key, result)
    return result
  }
  memoised.add(cert)
  return cert
}

/** Memoises every certificate of the trust material's CAs and TSAs (they live as long as the root). */
export function memoiseTrustMaterial(material: TrustMaterial): TrustMaterial {
  for (const authority of [...material.certificateAuthorities, ...material.timestampAuthorities]) {
    authority.certChain.forEach(memoiseCertificate)
  }
  return material
}

interface CachedLeaf {
  der: Buffer
  cert: X509Certificate
}

const leaves = new LRUCache<string, CachedLeaf>({ max: 2048 })

/**
 * The signing certificate for these exact DER bytes, parsed once and memoised: cosign signs every
 * manifest of a multi-arch image (`--recursive`) with one certificate, and a signature is checked
 * again against each authority of each matching policy.
 */
export function signingCertificate(der: Buffer): X509Certificate {
  const key = createHash('sha256').update(der).digest('base64')
  const hit = leaves.get(key)
  if (hit && hit.der.equals(der)) return hit.cert
  const cert = memoiseCertificate(X509Certificate.parse(Buffer.from(der)))
  leaves.set(key, { der: Buffer.from(der), cert })
  return cert
}

/** How many signing certificates are cached (tests, metrics). */
export function cachedSigningCertificates(): number {
  return leaves.size
}

/** Forgets cached signing certificates (benchmarks of the cold path; memory pressure). */
export function clearSigningCertificates(): void {
  leaves.clear()
}
