// `trustpull verify-bundle`: one Sigstore bundle against one artifact, following the
// sigstore-conformance CLI contract (docs/cli_protocol.md there), like `cosign verify-blob`:
//   verify-bundle --bundle FILE (--certificate-identity ID --certificate-oidc-issuer URL | --key PEM)
//                 [--trusted-root FILE] FILE_OR_DIGEST
// Exit 0 only when verified; 1 when refused (the reason and its code on stderr); 2 for bad usage.
// It runs the same engine as the proxy: ../verify/bundle.ts, ../verify/payload.ts, ../verify/trust-root.ts.
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { HashAlgorithm } from '@sigstore/protobuf-specs'
import { Command, CommanderError } from 'commander'
import { parseDigest, type Digest } from '../oci/digest.ts'
import { parseBundle, verifyBundle } from '../verify/bundle.ts'
import { toVerifyFailure, TrustRootError, VerifyFailure } from '../verify/errors.ts'
import { identityProblem } from '../verify/identity.ts'
import { KeyError, parsePublicKey } from '../verify/keys.ts'
import { checkSubject, parseStatement } from '../verify/payload.ts'
import { loadTrustRootFile, publicGoodTrustRoot } from '../verify/trust-root.ts'
import type { AuthorityMaterial, Identity, LoadedTrustRoot } from '../verify/types.ts'
import { codedError } from '../errors.ts'

/** A bundle is a few KiB; this bounds what a mistaken --bundle argument can make us parse. */
const MAX_BUNDLE_BYTES = 16 * 1024 * 1024
const DIGEST_ARGUMENT = /^sha(256|512):[0-9a-f]+$/

const MESSAGE_HASH: Partial<Record<HashAlgorithm, 'sha256' | 'sha384' | 'sha512'>> = {
  [HashAlgorithm.SHA2_256]: 'sha256',
  [HashAlgorithm.SHA2_384]: 'sha384',
  [HashAlgorithm.SHA2_512]: 'sha512',
}

export interface VerifyBundleIO {
  stdout: (text: string) => void
  stderr: (text: string) => void
}

interface Options {
  bundle: string
  certificateIdentity?: string
  certificateIdentityRegexp?: string
  certificateOidcIssuer?: string
  certificateOidcIssuerRegexp?: string
  key?: string
  trustedRoot?: string
}

class UsageError extends codedError('USAGE', 'UsageError') {}

const defaultIO: VerifyBundleIO = {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
}

/** Runs `verify-bundle` with `argv` (the arguments after the command name). Resolves the exit code. */
export async function runVerifyBundle(argv: string[], io: VerifyBundleIO = defaultIO): Promise<number> {
  const command = new Command('verify-bundle')
    .description('verify a Sigstore bundle against an artifact (a file, or sha256:<hex>)')
    .requiredOption('--bundle <file>', 'the Sigstore bundle (JSON)')
    .option('--certificate-identity <id>', 'exact certificate subject (SAN)')
    .option('--certificate-identity-regexp <re>', 'certificate subject as a regular expression (unanchored)')
    .option('--certificate-oidc-issuer <url>', 'exact OIDC issuer')
    .option('--certificate-oidc-issuer-regexp <re>', 'OIDC issuer as a regular expression (unanchored)')
    .option('--key <pem-file>', 'verify with this public key instead of a certificate identity')
    .option('--trusted-root <file>', 'Sigstore trusted_root.json (default: the public-good root embedded in trustpull)')
    .argument('<file-or-digest>', 'the signed artifact, or its digest as sha256:<hex>')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })

  let options: Options
  let subject: string
  try {
    await command.parseAsync(argv, { from: 'user' })
    options = command.opts<Options>()
    subject = command.args[0]!
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2
    throw err
  }

  try {
    const summary = await verifyBundleFile(options, subject)
    io.stdout(`OK: ${summary}\n`)
    return 0
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`verify-bundle: ${err.message}\n`)
      return 2
    }
    if (err instanceof TrustRootError) {
      io.stderr(`FAIL [${err.code}]: ${err.message}\n`)
      return 1
    }
    const failure = toVerifyFailure(err)
    io.stderr(`FAIL [${failure.code}]: ${failure.message}\n`)
    return 1
  }
}

async function verifyBundleFile(options: Options, subject: string): Promise<string> {
  const trustRoot = options.trustedRoot ? await loadTrustRootFile('cli', options.trustedRoot) : publicGoodTrustRoot()
  const material = await authority(options, trustRoot)

  const bundleBytes = await readInput(options.bundle, 'bundle')
  if (bundleBytes.length > MAX_BUNDLE_BYTES) throw new VerifyFailure('LIMIT_EXCEEDED', `bundle is larger than ${MAX_BUNDLE_BYTES} bytes`)
  let document: unknown
  try {
    document = JSON.parse(bundleBytes.toString('utf8'))
  } catch (err) {
    throw new VerifyFailure('MALFORMED', `bundle is not JSON: ${(err as Error).message}`)
  }
  const bundle = parseBundle(document)

  // The artifact: its bytes (a file), or only its digest.
  let artifact: Buffer | undefined
  let digest: Digest
  if (DIGEST_ARGUMENT.test(subject)) {
    try {
      digest = parseDigest(subject)
    } catch (err) {
      throw new UsageError((err as Error).message)
    }
  } else {
    artifact = await readInput(subject, 'artifact')
    digest = { algorithm: 'sha256', hex: createHash('sha256').update(artifact).digest('hex') }
  }

  if (bundle.content.$case === 'dsseEnvelope') {
    // sigstore-js checks the envelope's signature, not what the statement is about: the artifact
    // must be one of the statement's subjects.
    const envelope = bundle.content.dsseEnvelope
    const statement = parseStatement(envelope.payloadType, envelope.payload)
    checkSubject(statement, digest)
    const result = verifyBundle(bundle, undefined, material)
    return `${statement.predicateType} statement about ${digest.algorithm}:${digest.hex} (${describe(result.signer)}; ${result.checks.join(', ')})`
  }

  const { messageDigest } = bundle.content.messageSignature
  const hash = MESSAGE_HASH[messageDigest.algorithm]
  if (!hash) throw new VerifyFailure('MALFORMED', 'unsupported message digest algorithm')
  const expected = artifact ? createHash(hash).update(artifact).digest() : digest.algorithm === hash ? Buffer.from(digest.hex, 'hex') : undefined
  if (!expected || !expected.equals(messageDigest.digest)) {
    throw new VerifyFailure('DIGEST_MISMATCH', `the bundle signs ${hash}:${messageDigest.digest.toString('hex')}, not this artifact`)
  }
  if (!artifact) {
    // Node's crypto (like OpenSSL's one-shot API) cannot verify ECDSA over a precomputed digest.
    throw new VerifyFailure('MALFORMED', 'a message signature can only be checked against the artifact itself, not its digest')
  }
  const result = verifyBundle(bundle, artifact, material)
  return `message signature over ${hash}:${messageDigest.digest.toString('hex')} (${describe(result.signer)}; ${result.checks.join(', ')})`
}

async function authority(options: Options, trustRoot: LoadedTrustRoot): Promise<AuthorityMaterial> {
  const identityGiven = [options.certificateIdentity, options.certificateIdentityRegexp, options.certificateOidcIssuer, options.certificateOidcIssuerRegexp].some(
    (v) => v !== undefined,
  )
  if (options.key !== undefined) {
    if (identityGiven) throw new UsageError('give either --key or a certificate identity, not both')
    let key
    try {
      key = parsePublicKey((await readInput(options.key, 'key')).toString('utf8'))
    } catch (err) {
      if (err instanceof KeyError) throw new VerifyFailure('MALFORMED', `--key ${options.key}: ${err.message}`)
      throw err
    }
    return { type: 'key', keys: [{ key }], requireTlog: true, trustRoot }
  }
  const identity: Identity = {
    ...(options.certificateOidcIssuer !== undefined ? { issuer: options.certificateOidcIssuer } : {}),
    ...(options.certificateOidcIssuerRegexp !== undefined ? { issuerRegExp: options.certificateOidcIssuerRegexp } : {}),
    ...(options.certificateIdentity !== undefined ? { subject: options.certificateIdentity } : {}),
    ...(options.certificateIdentityRegexp !== undefined ? { subjectRegExp: options.certificateIdentityRegexp } : {}),
  }
  const problem = identityProblem(identity)
  if (problem) throw new UsageError(`${problem} (--certificate-identity[-regexp] and --certificate-oidc-issuer[-regexp]), or --key`)
  return { type: 'keyless', identities: [identity], trustRoot, ignoreSCT: false }
}

async function readInput(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path)
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${path}: ${(err as Error).message}`)
  }
}

function describe(signer: { keyHint?: string; issuer?: string; subject?: string }): string {
  if (signer.keyHint) return `key ${signer.keyHint}`
  return `${signer.subject ?? '?'} from ${signer.issuer ?? '?'}`
}
