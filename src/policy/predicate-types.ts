// cosign's short names for attestation predicate types (`cosign attest --type ...`), as
// policy-controller and `cosign verify-attestation --type` resolve them.

export const PREDICATE_TYPES: Readonly<Record<string, string>> = {
  custom: 'https://cosign.sigstore.dev/attestation/v1',
  slsaprovenance: 'https://slsa.dev/provenance/v0.2',
  slsaprovenance02: 'https://slsa.dev/provenance/v0.2',
  slsaprovenance1: 'https://slsa.dev/provenance/v1',
  spdx: 'https://spdx.dev/Document',
  spdxjson: 'https://spdx.dev/Document',
  cyclonedx: 'https://cyclonedx.org/bom',
  link: 'https://in-toto.io/Link/v1',
  vuln: 'https://cosign.sigstore.dev/attestation/vuln/v1',
  openvex: 'https://openvex.dev/ns',
}

/**
 * The full predicate type URI for a short name or a URI. `undefined` for anything else, so a
 * typo such as `slsaprovanance` is refused at start-up instead of never matching.
 */
export function resolvePredicateType(value: string): string | undefined {
  if (Object.hasOwn(PREDICATE_TYPES, value)) return PREDICATE_TYPES[value]
  return /^[a-z][a-z0-9+.-]*:\S+$/i.test(value) ? value : undefined
}
