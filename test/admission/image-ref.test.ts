// Kubernetes image references read as the kubelet reads them: the table below is Docker's
// normalisation (registry, library/, :latest, tag+digest), and what it refuses.
import t from 'tap'
import { parseImageReference } from '../../src/admission/image-ref.ts'

const D = `sha256:${'a'.repeat(64)}`

t.test('names are read as the kubelet reads them', async (t) => {
  const cases: [string, { registry: string; path: string; reference: unknown }, string][] = [
    ['nginx', { registry: 'docker.io', path: 'library/nginx', reference: { kind: 'tag', tag: 'latest' } }, `nginx@${D}`],
    ['nginx:1.25', { registry: 'docker.io', path: 'library/nginx', reference: { kind: 'tag', tag: '1.25' } }, `nginx:1.25@${D}`],
    ['user/app:v1', { registry: 'docker.io', path: 'user/app', reference: { kind: 'tag', tag: 'v1' } }, `user/app:v1@${D}`],
    ['docker.io/library/nginx', { registry: 'docker.io', path: 'library/nginx', reference: { kind: 'tag', tag: 'latest' } }, `docker.io/library/nginx@${D}`],
    ['ghcr.io/org/app:v2', { registry: 'ghcr.io', path: 'org/app', reference: { kind: 'tag', tag: 'v2' } }, `ghcr.io/org/app:v2@${D}`],
    ['localhost:5000/app', { registry: 'localhost:5000', path: 'app', reference: { kind: 'tag', tag: 'latest' } }, `localhost:5000/app@${D}`],
    ['localhost/app:1', { registry: 'localhost', path: 'app', reference: { kind: 'tag', tag: '1' } }, `localhost/app:1@${D}`],
    ['127.0.0.1:5000/a/b/c:x', { registry: '127.0.0.1:5000', path: 'a/b/c', reference: { kind: 'tag', tag: 'x' } }, `127.0.0.1:5000/a/b/c:x@${D}`],
    [`nginx:1.25@${D}`, { registry: 'docker.io', path: 'library/nginx', reference: { kind: 'digest', digest: D } }, `nginx:1.25@${D}`],
    [`quay.io/org/app@${D}`, { registry: 'quay.io', path: 'org/app', reference: { kind: 'digest', digest: D } }, `quay.io/org/app@${D}`],
  ]
  for (const [image, want, pinned] of cases) {
    const ref = parseImageReference(image)
    t.match(ref, want, image)
    t.equal(ref?.pinned(D), pinned, `${image} pinned`)
  }
})

t.test('what the kubelet could not pull is refused', async (t) => {
  for (const image of [
    '',
    ' nginx',
    'nginx ',
    'Nginx',
    'ghcr.io/Org/app',
    'nginx:',
    'nginx@sha256:short',
    'nginx:bad tag',
    'a//b',
    '/nginx',
    'nginx:1:2',
    `nginx@md5:${'a'.repeat(32)}`,
    'x'.repeat(5000),
  ]) {
    t.equal(parseImageReference(image), undefined, JSON.stringify(image.slice(0, 40)))
  }
})
