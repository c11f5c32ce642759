import t from 'tap'
import { compileGlob, globsMatch, GlobError, imageNames } from '../../src/policy/glob.ts'

function matches(glob: string, upstream: string, repository: string, upstreamNames: string[] = []): boolean {
  return globsMatch([compileGlob(glob)], imageNames(upstream, repository, upstreamNames)) !== undefined
}

// [upstream, repository, glob, expected]: policy-controller's own glob table, with its images
// spelled as trustpull sees them (`foo` pulled from Docker Hub is repository library/foo).
const table: [string, string, string, boolean][] = [
  ['docker.io', 'library/foo', 'index.docker.io/library/foo', true],
  ['docker.io', 'library/foo', 'index.docker.io/library/foo:latest', true],
  ['docker.io', 'library/foo', 'index.docker.io/library/foo:*', true],
  ['docker.io', 'library/foo', 'index.docker.io/library/*', true],
  ['docker.io', 'library/foo', 'index.docker.io/library/*:latest', true],
  ['docker.io', 'library/foo', 'index.docker.io/*/*', true],
  ['docker.io', 'library/foo', 'index.docker.io/**', true],
  ['docker.io', 'library/foo', 'index.docker.**', true],
  ['docker.io', 'library/foo', 'inde**', true],
  ['docker.io', 'library/foo', '**', true],
  ['docker.io', 'library/foo', 'foo', true],
  ['docker.io', 'library/foo', 'foo*', true],
  ['docker.io', 'library/foo', 'foo**', true],
  ['docker.io', 'library/foo', '*', true],
  ['docker.io', 'foo', 'index.docker.io/library/foo', true],
  ['docker.io', 'myuser/myapp', 'index.docker.io/myuser/myapp:latest', true],
  ['docker.io', 'myuser/myapp', 'index.docker.io/myuser/*', true],
  ['docker.io', 'myuser/myapp', 'index.docker.io/*/*', true],
  ['docker.io', 'myuser/myapp', 'myuser/myapp', true],
  ['docker.io', 'myuser/myapp', 'myuser/myapp*', true],
  ['docker.io', 'myuser/myapp', '*/*', true],
  ['docker.io', 'myuser/myapp', '*', false],
  ['docker.io', 'myuser/myapp', 'index.docker.io/library/*', false],
  ['ghcr.io', 'foo/bar', 'ghcr.io/*/*', true],
  ['ghcr.io', 'foo/bar', 'ghcr.io/**', true],
  ['ghcr.io', 'foo', 'ghcr.io/*/*', false],
  ['ghcr.io', 'foo', 'ghcr.io/**', true],
  ['ghcr.io', 'foo', 'ghc**', true],
  ['ghcr.io', 'foo', '*/**', true],
  ['ghcr.io', 'foo', 'ghcr.io/foo*', true],
  ['ghcr.io', 'foo-suffix', 'ghcr.io/foo', false],
  ['ghcrxio', 'foo', 'ghcr.io/**', false],
  ['ghcr.io', 'foo/bar', 'ghcr.io/foo', false],
  ['ghcr.io', 'foo/bar', 'ghcr.io/*', false],
  ['ghcr.io', 'foo/bar/baz', 'ghcr.io/foo/**', true],
  ['ghcr.io', 'foo/bar/baz', 'ghcr.io/foo/*', false],
  // Docker Hub's three names are one registry.
  ['docker.io', 'library/nginx', 'docker.io/library/nginx', true],
  ['docker.io', 'library/nginx', 'registry-1.docker.io/library/nginx', true],
  ['index.docker.io', 'library/nginx', 'docker.io/library/*', true],
  ['registry-1.docker.io', 'nginx', 'nginx', true],
  // Short names belong to Docker Hub only.
  ['ghcr.io', 'library/foo', 'foo', false],
  ['ghcr.io', 'library/foo', '*', false],
  ['ghcr.io', 'myuser/myapp', 'myuser/myapp', false],
  ['ghcr.io', 'myuser/myapp', '*/*', false],
  // Registries with ports, and CIP e2e globs.
  ['registry.local:5000', 'policy-controller/demo', 'registry.local:5000/policy-controller/demo', true],
  ['registry.local:5000', 'policy-controller/demo', '**demo**', true],
  ['registry.local:5000', 'policy-controller/other', '**demo**', false],
  ['127.0.0.1:5000', 'app', '127.0.0.1:5000/*', true],
  ['quay.io', 'jetstack/cert-manager-acmesolver', 'quay.io/jetstack/cert-manager-acmesolver:*', true],
  ['quay.io', 'jetstack/cert-manager-controller', 'quay.io/jetstack/cert-manager-acmesolver:*', false],
  ['ghcr.io', 'sigstore/timestamp-server', 'ghcr.io/sigstore/timestamp-server**', true],
]

t.test('globs match image names as policy-controller does', async (t) => {
  for (const [upstream, repository, glob, expected] of table) {
    t.equal(matches(glob, upstream, repository), expected, `${glob} ${expected ? 'matches' : 'does not match'} ${upstream}/${repository}`)
  }
})

t.test('invalid globs are refused with the glob named', async (t) => {
  for (const glob of ['[', '.+', '[a-z]*', 'ghcr.io/foo@sha256:abc', 'ghcr.io/foo bar', 'ghcr.io/foo:', 'ghcr.io/foo:a:b']) {
    t.throws(() => compileGlob(glob), GlobError, glob)
    t.throws(() => compileGlob(glob), { message: new RegExp(`invalid glob "${glob.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"`) })
  }
})

t.test('a tag in a glob is reported, "any tag" is not', async (t) => {
  t.equal(compileGlob('ghcr.io/sgtcodfish/ace:0.5').tag, '0.5')
  t.equal(compileGlob('index.docker.io/library/foo:latest').tag, 'latest')
  t.equal(compileGlob('quay.io/jetstack/cert-manager-acmesolver:*').tag, undefined)
  t.equal(compileGlob('ghcr.io/org/**').tag, undefined)
  t.equal(compileGlob('registry.local:5000/app').tag, undefined, 'a port is not a tag')
  t.ok(matches('ghcr.io/sgtcodfish/ace:0.5', 'ghcr.io', 'sgtcodfish/ace'), 'applies to the repository')
})

t.test('a Docker Hub short name never shadows a configured upstream of that name', async (t) => {
  t.ok(matches('corp/app', 'docker.io', 'corp/app'), 'without an upstream named corp, corp/app is Docker Hub')
  t.notOk(matches('corp/app', 'docker.io', 'corp/app', ['docker.io', 'corp']), 'with one, Docker Hub corp/app does not answer to it')
  t.ok(matches('corp/app', 'corp', 'app', ['docker.io', 'corp']), 'the upstream corp does')
  t.ok(matches('index.docker.io/corp/app', 'docker.io', 'corp/app', ['docker.io', 'corp']), 'the full name still matches')
})

t.test('image names', async (t) => {
  t.same(imageNames('docker.io', 'nginx'), ['index.docker.io/library/nginx', 'docker.io/library/nginx', 'registry-1.docker.io/library/nginx', 'library/nginx', 'nginx'])
  t.same(imageNames('GHCR.io', 'org/app'), ['ghcr.io/org/app'])
})
