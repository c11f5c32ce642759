// What `trustpull serve` runs with no --config: four public registries and the policies for the
// public images whose projects publish their signing identities. Everything else follows
// noMatchPolicy (deny). The identities are the projects' own, from their documentation:
// - Kubernetes release images on registry.k8s.io: "Verify Signed Kubernetes Artifacts"
//   (kubernetes.io/docs/tasks/administer-cluster/verify-signed-artifacts/): issuer
//   https://accounts.google.com, identity krel-trust@k8s-releng-prod.iam.gserviceaccount.com.
// - Chainguard's free images on cgr.dev/chainguard: "Verifying Chainguard Containers ... with
//   Cosign" (edu.chainguard.dev) and chainguard-images/images' README (published by its
//   release.yaml workflow on main): issuer https://token.actions.githubusercontent.com, identity
//   https://github.com/chainguard-images/images/.github/workflows/release.yaml@refs/heads/main.
// Both are keyless and verified against the embedded public-good Sigstore trust root (no network
// for trust material). A wrong identity here would refuse those images, never admit others.

export const EMBEDDED_DEFAULTS = {
  upstreams: [
    { name: 'docker.io', url: 'https://registry-1.docker.io', default: true },
    { name: 'ghcr.io', url: 'https://ghcr.io' },
    { name: 'registry.k8s.io', url: 'https://registry.k8s.io' },
    { name: 'cgr.dev', url: 'https://cgr.dev' },
  ],
  policies: [
    {
      name: 'kubernetes-release-images',
      images: [{ glob: 'registry.k8s.io/**' }],
      authorities: [
        {
          keyless: {
            identities: [{ issuer: 'https://accounts.google.com', subject: 'krel-trust@k8s-releng-prod.iam.gserviceaccount.com' }],
          },
        },
      ],
    },
    {
      name: 'chainguard-images',
      images: [{ glob: 'cgr.dev/chainguard/**' }],
      authorities: [
        {
          keyless: {
            identities: [
              {
                issuer: 'https://token.actions.githubusercontent.com',
                subject: 'https://github.com/chainguard-images/images/.github/workflows/release.yaml@refs/heads/main',
              },
            ],
          },
        },
      ],
    },
  ],
} as const

/** The start-up line for a proxy running on the embedded defaults. */
export const EMBEDDED_HINT =
  'running on the embedded defaults: docker.io, ghcr.io, registry.k8s.io and cgr.dev; Kubernetes release images and Chainguard images are verified, every other image is refused (noMatchPolicy: deny). Add your own policy with --config FILE (see config.example.yaml)'
