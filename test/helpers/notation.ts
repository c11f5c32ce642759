// A Notation signer for tests (no notation CLI installs here): a test PKI made with the openssl
// CLI (root CA, leaves with or without the code-signing EKU), JWS and COSE_Sign1 envelopes built
// per the Notary Project envelope specifications, and signature manifests pushed as notation
// pushes them (artifactType, `subject`, the referrers fallback tag kept up to date). Checked
// against notation-core-go's conformance vectors in test/verify/notation-signer.test.ts.
import { execFileSync } from 'node:child_process'
import { constants, createHash, createPrivateKey, sign, X509Certificate, type KeyObject } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { encode, Tag } from 'cbor2'
import { MediaTypes, pushBlob, pushManifest, sha256 } from './images.ts'
import { request } from 'undici'

export const NOTARY_SIGNATURE = 'application/vnd.cncf.notary.signature'
export const PAYLOAD_TYPE = 'application/vnd.cncf.notary.payload.v1+json'
export type EnvelopeType = 'application/jose+json' | 'application/cose'

export interface Pem {
  name: string
  cert: X509Certificate
  pem: string
  key: KeyObject
  keyPath: string
  certPath: string
}

export type KeySpec = 'ec-p256' | 'rsa-3072'

/** `C=US, ST=WA, O=Test, CN=<name>`: notation's trusted identities must name C, ST and O. */
export const subjectFor = (cn: string) => `/C=US/ST=WA/O=Trustpull Test/CN=${cn}`
export const identityFor = (cn: string) => `x509.subject:C=US, ST=WA, O=Trustpull Test, CN=${cn}`

export class TestPki {
  readonly dir: string
  constructor(dir: string) {
    this.dir = dir
  }

  #ossl(...args: string[]): void {
    execFileSync('openssl', args, { cwd: this.dir, stdio: 'pipe' })
  }

  #keyArgs(spec: KeySpec): string[] {
    return spec === 'ec-p256' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:3072']
  }

  #load(name: string): Pem {
    const certPath = join(this.dir, `${name}.pem`)
    const keyPath = join(this.dir, `${name}.key`)
    const pem = readFileSync(certPath, 'utf8')
    return { name, cert: new X509Certificate(pem), pem, key: createPrivateKey(readFileSync(keyPath)), keyPath, certPath }
  }

  ca(name: string, spec: KeySpec = 'ec-p256'): Pem {
    this.#ossl(
      'req',
      '-x509',
      ...this.#keyArgs(spec),
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-subj',
      subjectFor(name),
      '-days',
      '30',
      '-sha256',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    )
    return this.#load(name)
  }

  leaf(name: string, issuer: Pem, opts: { spec?: KeySpec; eku?: string; days?: string; extra?: string } = {}): Pem {
    this.#ossl('req', ...this.#keyArgs(opts.spec ?? 'ec-p256'), '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subjectFor(name))
    writeFileSync(
      join(this.dir, `${name}.ext`),
      `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${opts.eku ?? 'codeSigning'}\n${opts.extra ?? ''}`,
    )
    this.#ossl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      issuer.certPath,
      '-CAkey',
      issuer.keyPath,
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      opts.days ?? '10',
      '-extfile',
      `${name}.ext`,
      '-sha256',
    )
    return this.#load(name)
  }

  /** notation's trust store layout: `<root>/x509/<type>/<store>/<name>.pem`. */
  writeStore(root: string, type: 'ca' | 'signingAuthority' | 'tsa', store: string, certs: Pem[]): void {
    const dir = join(root, 'x509', type, store)
    execFileSync('mkdir', ['-p', dir])
    for (const c of certs) writeFileSync(join(dir, `${c.name}.pem`), c.pem)
  }
}

export interface SignRequest {
  payload: Buffer
  signingTime: Date
  expiry?: Date
  /** Extended signed attributes, in order; `critical` ones are listed in `crit`. */
  extended?: { key: string; value: string; critical?: boolean }[]
  signingAgent?: string
}

export interface Signer {
  key: KeyObject
  /** Leaf first. */
  chain: X509Certificate[]
}

/** The Notary Project payload for a target manifest. */
export function notaryPayload(target: { mediaType: string; digest: string; size: number }): Buffer {
  return Buffer.from(JSON.stringify({ targetArtifact: { mediaType: target.mediaType, digest: target.digest, size: target.size } }))
}

function algOf(key: KeyObject): { jws: string; cose: number; hash: string; pss: boolean } {
  const d = key.asymmetricKeyDetails ?? {}
  if (key.asymmetricKeyType === 'ec') {
    const bits = d.namedCurve === 'prime256v1' ? 256 : d.namedCurve === 'secp384r1' ? 384 : 512
    return { jws: `ES${bits}`, cose: bits === 256 ? -7 : bits === 384 ? -35 : -36, hash: `sha${bits}`, pss: false }
  }
  const bits = d.modulusLength === 2048 ? 256 : d.modulusLength === 3072 ? 384 : 512
  return { jws: `PS${bits}`, cose: bits === 256 ? -37 : bits === 384 ? -38 : -39, hash: `sha${bits}`, pss: true }
}

function rawSign(key: KeyObject, hash: string, pss: boolean, data: Buffer): Buffer {
  return pss ? sign(hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(hash.slice(3)) / 8 }) : sign(hash, data, { key, dsaEncoding: 'ieee-p1363' })
}

const rfc3339 = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z')

/** The JWS protected header, keys sorted as Go's encoding/json writes a map. */
export function jwsProtected(req: SignRequest, alg: string): Buffer {
  const crit = ['io.cncf.notary.signingScheme', ...(req.extended ?? []).filter((e) => e.critical).map((e) => e.key), ...(req.expiry ? ['io.cncf.notary.expiry'] : [])]
  const hdr: Record<string, unknown> = { alg, crit, cty: PAYLOAD_TYPE, 'io.cncf.notary.signingScheme': 'notary.x509', 'io.cncf.notary.signingTime': rfc3339(req.signingTime) }
  if (req.expiry) hdr['io.cncf.notary.expiry'] = rfc3339(req.expiry)
  for (const e of req.extended ?? []) hdr[e.key] = e.value
  const sorted = Object.fromEntries(Object.entries(hdr).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
  return Buffer.from(JSON.stringify(sorted))
}

export function signJws(req: SignRequest, signer: Signer, over: { alg?: string } = {}): Buffer {
  const a = algOf(signer.key)
  const p = jwsProtected(req, over.alg ?? a.jws).toString('base64url')
  const pl = req.payload.toString('base64url')
  const sig = rawSign(signer.key, a.hash, a.pss, Buffer.from(`${p}.${pl}`))
  const header = { 'io.cncf.notary.signingAgent': req.signingAgent ?? 'trustpull-test/1', x5c: signer.chain.map((c) => c.raw.toString('base64')) }
  return Buffer.from(JSON.stringify({ payload: pl, protected: p, header, signature: sig.toString('base64url') }))
}

/** CBOR's canonical key order (RFC 7049 §3.9: shorter encodings first, then bytewise), as go-cose writes. */
function canonicalMap(entries: [string | number, unknown][]): Map<string | number, unknown> {
  const keyed = entries.map(([k, v]) => ({ k, v, enc: Buffer.from(encode(k)) }))
  keyed.sort((x, y) => x.enc.length - y.enc.length || Buffer.compare(x.enc, y.enc))
  return new Map(keyed.map(({ k, v }) => [k, v]))
}

/** The COSE protected header bytes. */
export function coseProtected(req: SignRequest, alg: number): Uint8Array {
  const crit = ['io.cncf.notary.signingScheme', ...(req.expiry ? ['io.cncf.notary.expiry'] : []), ...(req.extended ?? []).filter((e) => e.critical).map((e) => e.key)]
  const entries: [string | number, unknown][] = [
    [1, alg],
    [2, crit],
    [3, PAYLOAD_TYPE],
    ['io.cncf.notary.signingScheme', 'notary.x509'],
    ['io.cncf.notary.signingTime', new Tag(1, Math.floor(req.signingTime.getTime() / 1000))],
  ]
  if (req.expiry) entries.push(['io.cncf.notary.expiry', new Tag(1, Math.floor(req.expiry.getTime() / 1000))])
  for (const e of req.extended ?? []) entries.push([e.key, e.value])
  return encode(canonicalMap(entries))
}

export function signCose(req: SignRequest, signer: Signer): Buffer {
  const a = algOf(signer.key)
  const protectedBytes = coseProtected(req, a.cose)
  const payload = Uint8Array.from(req.payload)
  const toBeSigned = Buffer.from(encode(['Signature1', protectedBytes, new Uint8Array(0), payload]))
  const sig = rawSign(signer.key, a.hash, a.pss, toBeSigned)
  const unprotected = new Map<string | number, unknown>([
    [33, signer.chain.map((c) => Uint8Array.from(c.raw))],
    ['io.cncf.notary.signingAgent', req.signingAgent ?? 'trustpull-test/1'],
  ])
  return Buffer.from(encode(new Tag(18, [protectedBytes, unprotected, payload, Uint8Array.from(sig)])))
}

export interface Subject {
  mediaType: string
  digest: string
  size: number
}

/**
 * Pushes a signature manifest (`subject` = the image) with its envelope, then adds it to the
 * referrers fallback index `sha256-<hex>` (creating it, or rewriting it with the new entry), as
 * notation does against a registry without the referrers API.
 */
export async function pushNotationSignature(
  registryUrl: string,
  repo: string,
  subject: Subject,
  envelope: Buffer,
  envelopeType: EnvelopeType,
  chain: X509Certificate[],
): Promise<{ digest: string; size: number }> {
  const empty = await pushBlob(registryUrl, repo, '{}')
  const layer = await pushBlob(registryUrl, repo, envelope)
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    artifactType: NOTARY_SIGNATURE,
    config: { mediaType: 'application/vnd.oci.empty.v1+json', ...empty },
    layers: [{ mediaType: envelopeType, ...layer }],
    subject,
    annotations: { 'io.cncf.notary.x509chain.thumbprint#S256': JSON.stringify(chain.map((c) => createHash('sha256').update(c.raw).digest('hex'))) },
  }
  const pushed = await pushManifest(registryUrl, repo, sha256(JSON.stringify(manifest)), manifest, MediaTypes.ociManifest)
  const tag = subject.digest.replace(':', '-')
  const res = await request(`${registryUrl}/v2/${repo}/manifests/${tag}`, { headers: { accept: MediaTypes.ociIndex } })
  const existing = res.statusCode === 200 ? ((await res.body.json()) as { manifests: unknown[] }).manifests : (await res.body.dump(), [])
  const entry = { mediaType: MediaTypes.ociManifest, digest: pushed.digest, size: pushed.size, artifactType: NOTARY_SIGNATURE, annotations: manifest.annotations }
  await pushManifest(registryUrl, repo, tag, { schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [...existing, entry] }, MediaTypes.ociIndex)
  return { digest: pushed.digest, size: pushed.size }
}
