// Notation's trust store layout, read as notation reads it: `x509/<type>/<name>/` holds PEM or DER
// certificate files. Threat: a store that silently trusts less (or more) than the operator meant;
// a file that is not a certificate, or a symbolic link, stops start-up naming the path;
// sub-directories are ignored, as notation ignores them.
import { X509Certificate } from 'node:crypto'
import { lstatSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { codedError } from '../../errors.ts'

export class TrustStoreError extends codedError('TRUST_STORE_INVALID', 'TrustStoreError') {}

export function parseCertificates(bytes: Buffer, where: string): X509Certificate[] {
  const text = bytes.toString('latin1')
  const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)
  try {
    if (pems) return pems.map((p) => new X509Certificate(p))
    return [new X509Certificate(bytes)]
  } catch {
    throw new TrustStoreError(`${where}: not a certificate`)
  }
}

/** The certificates of trust store `type:name` (type ca, signingAuthority or tsa) under `root`. */
export function loadTrustStore(root: string, type: string, name: string): X509Certificate[] {
  const dir = join(root, 'x509', type, name)
  let entries: string[]
  try {
    entries = readdirSync(dir)
  } catch {
    throw new TrustStoreError(`trust store ${type}:${name}: ${dir} does not exist`)
  }
  const certs: X509Certificate[] = []
  for (const f of entries.sort()) {
    const path = join(dir, f)
    const st = lstatSync(path)
    if (st.isSymbolicLink()) throw new TrustStoreError(`trust store ${type}:${name}: ${path} is a symbolic link, which notation refuses`)
    if (st.isDirectory()) continue
    if (!st.isFile()) throw new TrustStoreError(`trust store ${type}:${name}: ${path} is not a regular file`)
    certs.push(...parseCertificates(readFileSync(path), path))
  }
  if (certs.length === 0) throw new TrustStoreError(`trust store ${type}:${name} holds no certificate`)
  return certs
}
