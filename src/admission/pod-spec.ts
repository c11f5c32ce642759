// Where the images of an admitted object are: Pods, and every kind that carries a pod template.
// An image the webhook does not find is an image it does not judge, so every container list of
// a pod spec is read (containers, initContainers, ephemeralContainers), and each image carries
// the JSON Pointer a patch pinning it must replace.

/** Where the pod spec sits in each kind the webhook judges. */
const POD_SPEC_PATHS: Readonly<Record<string, readonly string[]>> = {
  Pod: ['spec'],
  Deployment: ['spec', 'template', 'spec'],
  ReplicaSet: ['spec', 'template', 'spec'],
  StatefulSet: ['spec', 'template', 'spec'],
  DaemonSet: ['spec', 'template', 'spec'],
  Job: ['spec', 'template', 'spec'],
  ReplicationController: ['spec', 'template', 'spec'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template', 'spec'],
}

const CONTAINER_LISTS = ['initContainers', 'containers', 'ephemeralContainers'] as const

export interface ContainerImage {
  /** `containers`, `initContainers` or `ephemeralContainers`. */
  list: (typeof CONTAINER_LISTS)[number]
  container: string
  /** The image string exactly as written (may be anything: it is parsed later). */
  image: unknown
  /** JSON Pointer of the `image` field, e.g. /spec/template/spec/containers/0/image. */
  pointer: string
}

export function judgesKind(kind: string): boolean {
  return Object.hasOwn(POD_SPEC_PATHS, kind)
}

/**
 * Every container image of `object` (of kind `kind`), or undefined for a kind that carries no pod
 * spec. A judged kind without a pod spec where one belongs (a ReplicationController without a
 * template) has no images: nothing runs from it.
 */
export function containerImages(kind: string, object: unknown): ContainerImage[] | undefined {
  const path = POD_SPEC_PATHS[kind]
  if (!path) return undefined
  let spec: unknown = object
  for (const key of path) spec = isRecord(spec) ? spec[key] : undefined
  if (!isRecord(spec)) return []
  const base = '/' + path.join('/')
  const images: ContainerImage[] = []
  for (const list of CONTAINER_LISTS) {
    const containers = spec[list]
    if (!Array.isArray(containers)) continue
    containers.forEach((c: unknown, i) => {
      const container = isRecord(c) ? c : {}
      images.push({ list, container: typeof container.name === 'string' ? container.name : `#${i}`, image: container.image, pointer: `${base}/${list}/${i}/image` })
    })
  }
  return images
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
