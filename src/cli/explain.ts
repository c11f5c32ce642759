// `trustpull explain CODE`: what a reason code means and its usual fix. This table is the one
// source for every code trustpull produces (OCI error bodies, DENIED details, audit lines, CLI
// errors, copy reports): its type makes TypeScript refuse a code missing from it or one that
// does not exist, and README.md's reason-code table is checked against it
// (test/cli/explain.test.ts). Threat: an operator guessing at a refusal and loosening a policy
// where a signature, a key or a clock was wrong.
import type { ErrorCode } from '../errors.ts'
import type { CopyErrorCode } from '../copy/errors.ts'
import type { TrustRootError } from '../verify/errors.ts'
import type { KeyErrorCode } from '../verify/keys.ts'
import type { NotationCode } from '../verify/notation/codes.ts'
import type { VerifyCode } from '../verify/types.ts'

/** Where a code shows up. */
export type Seen = 'HTTP' | 'verification' | 'key' | 'trust root' | 'notation' | 'copy'

export interface Reason {
  seen: Seen
  meaning: string
  fix: string
}

/** A verification outcome with no more specific code (the audit line's fallback). */
type Fallback = 'FAILED'
export type ReasonCode = ErrorCode | VerifyCode | KeyErrorCode | NotationCode | CopyErrorCode | TrustRootError['code'] | Fallback

export const REASONS = {
  // The OCI error body a client sees (HTTP status in parentheses).
  DENIED: {
    seen: 'HTTP',
    meaning:
      "The policy refused the image (403): the message names the image, the policy and the first reason, `detail` lists every reason. Also: an upstream's token service refused trustpull's credentials (the message says so).",
    fix: 'Run `trustpull verify IMAGE` for the whole verdict and `trustpull explain` the first code in it; sign the image or fix the policy that matched (README, "Runbook"). For the upstream case, fix `upstreams[].auth`.',
  },
  UNAUTHORIZED: {
    seen: 'HTTP',
    meaning: 'trustpull requires client authentication (401) and the request carried no valid token, password or client certificate.',
    fix: 'Log the client in (`docker login`, a `hosts.toml` header, a certificate) with a credential from `clients`.',
  },
  TOOMANYREQUESTS: {
    seen: 'HTTP',
    meaning:
      'Too many requests (429): the client exceeded `clients.requestsPerSecond`, an upstream is rate limiting, or `limits.upstreamConnections` / `limits.concurrentVerifications` are all in use.',
    fix: 'Clients retry after `Retry-After`. If it persists, raise the limit named in the message or add upstream credentials (anonymous Docker Hub pulls are rate limited).',
  },
  UNAVAILABLE: {
    seen: 'HTTP',
    meaning: 'An upstream could not be reached, or content could not be verified right now (503). Never cached; nothing was served.',
    fix: 'Check the upstream (`trustpull_upstream_request_duration_seconds_count` by status) and egress. With the store on, content already stored keeps being served.',
  },
  UPSTREAM_TIMEOUT: {
    seen: 'HTTP',
    meaning: 'The upstream did not answer within `timeouts.connect` / `headers` / `body` (504).',
    fix: 'Check the upstream and the network path; raise the timeout only if the upstream is known to be slow.',
  },
  UPSTREAM_ERROR: {
    seen: 'HTTP',
    meaning:
      'The upstream answered with an error or something trustpull refuses to pass on (502): bytes that do not match their digest, a bad redirect, a body over its size limit.',
    fix: 'Read the message for the upstream and what it sent; retry once the upstream is healthy.',
  },
  INTERNAL: {
    seen: 'HTTP',
    meaning: 'A bug in trustpull (500). Nothing was served.',
    fix: 'Report it with the log line (same request id); the request can be retried.',
  },
  MANIFEST_UNKNOWN: {
    seen: 'HTTP',
    meaning: 'The tag or digest does not exist on the upstream (404).',
    fix: 'Check the image reference and which upstream it was routed to (`ns` parameter or path prefix).',
  },
  BLOB_UNKNOWN: {
    seen: 'HTTP',
    meaning: 'The blob does not exist upstream, or no allowed manifest references it (404; `blobs.requireAllowedManifest`).',
    fix: 'Pull the image by tag or digest first (clients do); a blob of a refused image is never served.',
  },
  NAME_UNKNOWN: {
    seen: 'HTTP',
    meaning: 'The repository does not exist on the upstream (404, tag listing).',
    fix: 'Check the repository name and the upstream it was routed to.',
  },
  NAME_INVALID: {
    seen: 'HTTP',
    meaning: 'The repository name is not a valid OCI name, or the path has encoded characters, dot or empty segments (400).',
    fix: 'Use a lowercase `namespace/repo` in a plain path, as `docker pull` sends it.',
  },
  MANIFEST_INVALID: {
    seen: 'HTTP',
    meaning: 'The tag or digest in the request is not a valid reference (400).',
    fix: 'A tag is up to 128 of `A-Za-z0-9_.-`; a digest is `sha256:` and 64 hex digits.',
  },
  DIGEST_INVALID: {
    seen: 'HTTP',
    meaning: 'A blob or referrers digest in the request is malformed (400).',
    fix: 'Use `sha256:` and 64 lowercase hex digits.',
  },
  RANGE_INVALID: {
    seen: 'HTTP',
    meaning: 'The `Range` header cannot be satisfied for this blob (416).',
    fix: 'A client bug or a changed blob; retry without `Range`.',
  },
  SIZE_INVALID: {
    seen: 'HTTP',
    meaning: 'An OCI push error; trustpull accepts no pushes, so it does not send it.',
    fix: 'Push to the registry itself, not through trustpull.',
  },
  UNSUPPORTED: {
    seen: 'HTTP',
    meaning: 'Push, delete and other writes (405): trustpull is a read-only proxy.',
    fix: 'Push to the upstream registry; import verified copies with `trustpull copy`.',
  },
  BAD_REQUEST: {
    seen: 'HTTP',
    meaning: 'A malformed request (400): two `ns` parameters, a bad `n` or `last`.',
    fix: 'Fix the client request as the message says.',
  },
  NOT_FOUND: {
    seen: 'HTTP',
    meaning: 'No such endpoint, or the upstream has no referrers API (404); in `trustpull copy`, the source (tag, digest, archive) does not exist or a layout holds no image.',
    fix: 'Check the URL or the source reference.',
  },

  // Reasons inside a verdict (DENIED detail, audit line, `trustpull verify`).
  NO_SIGNATURES: {
    seen: 'verification',
    meaning:
      'No signature or attestation for this digest where the authority looks (referrers, `sha256-…` tags, `source.oci`); the reason reads "no signatures found for sha256:…".',
    fix: 'Sign the digest that is pulled (a re-pushed tag has a new digest); with `source.oci`, check the signature repository.',
  },
  DIGEST_MISMATCH: {
    seen: 'verification',
    meaning: 'The signature or attestation is for another digest than the one served.',
    fix: 'Sign the image again after its last push; multi-arch: sign the index (or every platform with `requirePlatformSignatures`).',
  },
  UNTRUSTED_KEY: {
    seen: 'verification',
    meaning: 'The signature does not verify with any key of the authority.',
    fix: "Check the policy's `key` against `cosign public-key` of the signing key; a rotated key needs a second key or authority during the change.",
  },
  IDENTITY_MISMATCH: {
    seen: 'verification',
    meaning: "A keyless certificate's issuer or subject is not the one the policy names.",
    fix: "Compare the audit line's signer identity with `identities` (an exact subject is matched exactly: a new workflow path or ref is a new identity).",
  },
  SIGNATURE_INVALID: {
    seen: 'verification',
    meaning: 'The signature bytes do not verify over the payload.',
    fix: 'The signature or payload was altered or is corrupt: sign again; investigate if it keeps happening.',
  },
  CERTIFICATE_INVALID: {
    seen: 'verification',
    meaning: "The signing certificate does not chain to the trust root's Fulcio CA, or is malformed.",
    fix: 'Use the trust root the signature was made against (`trustRootRef`: public-good or your own Sigstore).',
  },
  CERTIFICATE_EXPIRED: {
    seen: 'verification',
    meaning: 'The certificate chains, but was not valid at any verified signing time (transparency log or timestamp).',
    fix: 'Sign again; check that the signer uploads to the transparency log or gets an RFC 3161 timestamp.',
  },
  TLOG_INVALID: {
    seen: 'verification',
    meaning: 'The transparency-log entry (SET, inclusion proof, checkpoint) does not verify.',
    fix: 'Check that the trust root has the Rekor key the entry was made with (a private Rekor needs its own trust root).',
  },
  TLOG_MISSING: {
    seen: 'verification',
    meaning: 'The authority needs a transparency-log entry (keyless, or `ctlog` set) and the signature has none.',
    fix: 'Sign with the log upload on, or (keys only) drop `ctlog` from the authority for `--tlog-upload=false` signatures.',
  },
  TIMESTAMP_INVALID: {
    seen: 'verification',
    meaning: "The RFC 3161 timestamp does not verify against the trust root's timestamp authorities.",
    fix: "Add the TSA's certificate chain to the trust root, or sign again.",
  },
  PAYLOAD_INVALID: {
    seen: 'verification',
    meaning: 'The signed payload is not a valid simple-signing or in-toto document (not JSON, duplicate keys, wrong type).',
    fix: "Sign with cosign (or a tool producing cosign's payload format); duplicate keys are refused on purpose.",
  },
  REFERENCE_MISMATCH: {
    seen: 'verification',
    meaning: "The simple-signing payload's `docker-reference` names another repository than the one pulled.",
    fix: 'Sign the image under the name it is pulled by, or pull it by the signed name.',
  },
  PREDICATE_TYPE_MISMATCH: {
    seen: 'verification',
    meaning: "An attestation's predicate type is not the one the policy asks for.",
    fix: 'Check `predicateType` in the policy (cosign short names or full URIs) against `cosign download attestation`.',
  },
  LIMIT_EXCEEDED: {
    seen: 'verification',
    meaning: 'A signature manifest, layer, bundle or the number of signatures/referrers exceeds `limits.*`.',
    fix: 'Raise the limit the message names if the artifact is legitimate; otherwise the upstream is sending junk.',
  },
  MALFORMED: {
    seen: 'verification',
    meaning: 'A signature or bundle that cannot be parsed.',
    fix: 'Sign again with a current cosign; report the artifact if a current cosign produced it.',
  },
  TRUST_ROOT_UNKNOWN: {
    seen: 'trust root',
    meaning: 'A `trustRootRef` names no configured trust root, or a check needs one and none was given.',
    fix: 'Add the trust root under `trustRoots` (or fix the name); `public-good` is always there.',
  },
  DISCOVERY_FAILED: {
    seen: 'verification',
    meaning: 'Looking up signatures failed (upstream 5xx, timeout): the one that would pass may be the one not seen. Not a deny; the pull gets a 5xx.',
    fix: 'Fix the upstream or network; nothing is cached, the next pull tries again.',
  },
  FAILED: {
    seen: 'verification',
    meaning: 'A candidate signature failed without a more specific code.',
    fix: 'Read the reason text after the code; run `trustpull verify IMAGE --json` for the evidence.',
  },

  // Start-up and CLI errors about keys and trust roots.
  KEY_NOT_PEM: { seen: 'key', meaning: 'The key is not a PEM `PUBLIC KEY` block.', fix: 'Use `cosign public-key` output (`-----BEGIN PUBLIC KEY-----`).' },
  KEY_PRIVATE: { seen: 'key', meaning: 'A private key was given where a public key belongs.', fix: 'Give the public half; rotate the private key if it was shared.' },
  KEY_UNREADABLE: {
    seen: 'key',
    meaning: 'The PEM block does not decode as a public key.',
    fix: 'Export the key again (`cosign public-key --key …`); check it was not truncated or re-wrapped.',
  },
  KEY_MULTIPLE: {
    seen: 'key',
    meaning: 'More keys than this place accepts (e.g. `verify-bundle --key` takes one).',
    fix: 'Give one key, or use a policy with several `key` authorities.',
  },
  KEY_RSA_SIZE: { seen: 'key', meaning: 'An RSA key outside 2048–4096 bits.', fix: 'Use an RSA 2048–4096, ECDSA P-256/P-384/P-521 or Ed25519 key.' },
  KEY_EC_CURVE: { seen: 'key', meaning: 'An ECDSA key on a curve other than P-256, P-384 or P-521.', fix: "Use P-256 (cosign's default), P-384 or P-521." },
  KEY_TYPE: { seen: 'key', meaning: 'A key type cosign does not accept (DSA, RSA-PSS, X25519, …).', fix: 'Use RSA, ECDSA or Ed25519.' },
  TRUST_ROOT_INVALID: {
    seen: 'trust root',
    meaning: 'A `trusted_root.json` is not a valid Sigstore TrustedRoot, or has unusable keys or certificates.',
    fix: "Regenerate it (`cosign trusted-root create`, or your Sigstore's TUF repository).",
  },
  TRUST_ROOT_UNAVAILABLE: {
    seen: 'trust root',
    meaning: 'The trust root cannot be read (missing file, TUF mirror unreachable at start-up).',
    fix: 'Check the path or the mirror and its egress; start-up stops rather than verifying without it.',
  },

  // Notation (Notary Project) signatures.
  NOTATION_MALFORMED: { seen: 'notation', meaning: 'The Notation envelope (JWS or COSE) or its payload cannot be parsed.', fix: 'Sign again with a current notation.' },
  NOTATION_UNKNOWN_CRIT: {
    seen: 'notation',
    meaning: 'The envelope marks a header critical that trustpull does not understand.',
    fix: 'Sign without the extension, or wait for support.',
  },
  NOTATION_PLUGIN_UNSUPPORTED: {
    seen: 'notation',
    meaning: 'The signature needs a verification plugin; trustpull runs none and never passes it.',
    fix: 'Sign without a plugin, or verify those images elsewhere.',
  },
  NOTATION_ALG_MISMATCH: { seen: 'notation', meaning: "The envelope's algorithm does not match the signing key.", fix: 'Sign again; the signer is misconfigured.' },
  NOTATION_SIGNATURE_INVALID: {
    seen: 'notation',
    meaning: 'The signature does not verify with the signing certificate.',
    fix: 'The envelope was altered or is corrupt: sign again.',
  },
  NOTATION_EXPIRED: { seen: 'notation', meaning: "The signature's expiry time has passed.", fix: 'Sign again (with a longer `--expiry` if intended).' },
  NOTATION_CERT_EXPIRED: {
    seen: 'notation',
    meaning: 'A certificate of the chain is not valid now (no timestamp support yet, so no grace).',
    fix: 'Renew the signing certificate and sign again.',
  },
  NOTATION_TARGET_DIGEST_MISMATCH: { seen: 'notation', meaning: "The signed target digest is not this manifest's.", fix: 'Sign the digest that is pulled.' },
  NOTATION_TARGET_MEDIA_TYPE_MISMATCH: { seen: 'notation', meaning: "The signed target media type is not this manifest's.", fix: 'Sign the manifest as it is served.' },
  NOTATION_TARGET_SIZE_MISMATCH: { seen: 'notation', meaning: "The signed target size is not this manifest's.", fix: 'Sign the manifest as it is served.' },
  NOTATION_CHAIN_INVALID: {
    seen: 'notation',
    meaning: 'The certificate chain is broken: a link not signed by the next, a non-CA intermediate, SHA-1, or a leaf without code-signing EKU.',
    fix: 'Fix the signing certificate chain (x5c / x5chain).',
  },
  NOTATION_UNTRUSTED_CHAIN: {
    seen: 'notation',
    meaning: 'No certificate of the chain is in the trust store.',
    fix: 'Add the signing CA to the trust store (`x509/<type>/<name>/`).',
  },
  NOTATION_UNTRUSTED_IDENTITY: {
    seen: 'notation',
    meaning: "The signing certificate's subject is not a trusted identity.",
    fix: 'Add its `x509.subject:` to the trusted identities, or sign with the expected certificate.',
  },
  NOTATION_NO_TRUST_POLICY: {
    seen: 'notation',
    meaning: 'The trust policy has no statement whose registryScopes cover the image (`<upstream name>/<repository>`), and no `*` statement.',
    fix: "Add the repository to a statement's registryScopes, or add a `*` statement.",
  },
  NOTATION_REVOCATION_UNCHECKED: {
    seen: 'notation',
    meaning: 'The signing chain names OCSP or CRL services, which trustpull never contacts, and the trust policy level enforces revocation.',
    fix: 'Set `notation.revocation: offline` on the authority (an explicit air-gap choice), or relax revocation in the trust policy (`override: {revocation: log}` or `skip`).',
  },

  // `trustpull copy` reports.
  BAD_ENDPOINT: {
    seen: 'copy',
    meaning: 'SRC or DST cannot be parsed, or cannot be used that way round.',
    fix: 'See `trustpull copy --help` for the accepted forms (`docker://`, `oci:`, `oci-archive:`).',
  },
  REFUSED: { seen: 'copy', meaning: 'The policy denied the image: nothing of it was written.', fix: 'As for `DENIED`: `trustpull verify SRC` shows why.' },
  UNVERIFIED: {
    seen: 'copy',
    meaning: 'The image could not be verified (upstream or trust-material trouble): nothing was written.',
    fix: 'Fix the cause in the message and run the copy again (it resumes).',
  },
  SOURCE_ERROR: { seen: 'copy', meaning: 'Reading the source failed (registry error, digest mismatch, size limit).', fix: 'Check the source registry or archive; run again.' },
  DESTINATION_ERROR: {
    seen: 'copy',
    meaning: 'The destination refused or failed a write.',
    fix: 'Check the destination registry or path (space, permissions, TLS: `--dest-cert-dir`).',
  },
  DESTINATION_DENIED: {
    seen: 'copy',
    meaning: 'The destination asked for credentials that were not given, or refused them.',
    fix: 'Log in to the destination (`--authfile`, `$REGISTRY_AUTH_FILE`, docker config, credential helpers).',
  },
  LAYOUT_INVALID: {
    seen: 'copy',
    meaning: 'An OCI layout or archive is malformed: no `oci-layout` or `index.json`, not JSON, an unsupported layout version, an unreadable tar.',
    fix: 'Recreate the layout or archive with `trustpull copy` or skopeo.',
  },
} as const satisfies Record<ReasonCode, Reason>

/** The entry for `code` (any case), or undefined. */
export function lookupReason(code: string): (Reason & { code: ReasonCode }) | undefined {
  const key = code.trim().toUpperCase()
  if (!Object.hasOwn(REASONS, key)) return undefined
  return { code: key as ReasonCode, ...REASONS[key as ReasonCode] }
}

/** `trustpull explain CODE`: 0 and the explanation for a known code, 2 for an unknown one. */
export function explainCommand(code: string, options: { json?: boolean } = {}): number {
  const reason = lookupReason(code)
  if (!reason) {
    console.error(`trustpull: unknown reason code "${code}"; known codes: ${Object.keys(REASONS).sort().join(', ')}`)
    return 2 // the usage exit code of src/cli/main.ts
  }
  if (options.json) {
    console.log(JSON.stringify(reason))
  } else {
    console.log(`${reason.code} (${reason.seen})\n  meaning: ${reason.meaning}\n  usual fix: ${reason.fix}`)
  }
  return 0
}
