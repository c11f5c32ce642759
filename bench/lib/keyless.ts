// Keyless signatures for the benchmarks, from the tests' in-process Sigstore mock
// (test/helpers/mock-sigstore.ts: @sigstore/mock's Fulcio and Rekor over loopback HTTP, signed by
// @sigstore/sign). Each image gets what cosign 3 writes by default: a Sigstore bundle v0.3 (DSSE,
// predicate https://sigstore.dev/cosign/sign/v1) as an OCI referrer in the `sha256-<hex>` fallback
// index, since docker-registry 2.8 has no referrers API.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { PushedImage } from '../../test/helpers/images.ts'
import { MOCK_ISSUER, pushBundleReferrer, startMockSigstore } from '../../test/helpers/mock-sigstore.ts'
import type { Scope } from './harness.ts'

export const KEYLESS_ISSUER = MOCK_ISSUER
export const KEYLESS_SUBJECT = 'https://github.com/bench-org/app/.github/workflows/release.yml@refs/heads/main'
const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1'

export interface KeylessSigner {
  /** A trusted_root.json with the mock's CA and log keys, for trustpull's `trustRoots[].file`. */
  trustRootFile: string
  /** Signs `image` keylessly and stores the bundle beside it in the registry. */
  sign(registryUrl: string, image: PushedImage): Promise<void>
}

export async function startKeylessSigner(scope: Scope): Promise<KeylessSigner> {
  // No TSA: its clock is fixed at start-up, and the bench signs for a while after.
  const sigstore = await startMockSigstore(scope, { tsa: false })
  const dir = await scope.tempDir('trustpull-bench-keyless-')
  const trustRootFile = join(dir, 'trusted_root.json')
  writeFileSync(trustRootFile, JSON.stringify(sigstore.trustedRoot))
  return {
    trustRootFile,
    async sign(registryUrl, image) {
      const statement = {
        _type: 'https://in-toto.io/Statement/v1',
        subject: [{ name: image.repo, digest: { sha256: image.digest.slice(7) } }],
        predicateType: COSIGN_SIGN_PREDICATE,
        predicate: {},
      }
      await pushBundleReferrer(registryUrl, image.repo, image, await sigstore.signStatement(statement, KEYLESS_SUBJECT))
    },
  }
}

/** A policy for images under `glob`: keyless, by the bench's CI identity, under the mock's root. */
export function keylessPolicy(glob: string, trustRootRef = 'bench-sigstore'): Record<string, unknown> {
  return {
    name: 'keyless-ci',
    images: [{ glob }],
    authorities: [{ name: 'release-workflow', keyless: { trustRootRef, identities: [{ issuer: KEYLESS_ISSUER, subject: KEYLESS_SUBJECT }] } }],
  }
}
