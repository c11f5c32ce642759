// Parser for `WWW-Authenticate` challenges (RFC 7235), as registries send them:
//   Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:x:pull"

export interface Challenge {
  scheme: string
  params: Record<string, string>
}

const TOKEN = /[!#$%&'*+\-.^_`|~0-9A-Za-z]+/y

/** Parses the first challenge of a header value; `undefined` when it is not a well-formed challenge. */
export function parseChallenge(header: string): Challenge | undefined {
  if (header.length > 8192) return undefined
  let i = 0
  const skipSpace = () => {
    while (i < header.length && (header[i] === ' ' || header[i] === '\t')) i++
  }
  const token = (): string | undefined => {
    TOKEN.lastIndex = i
    const m = TOKEN.exec(header)
    if (!m) return undefined
    i = TOKEN.lastIndex
    return m[0]
  }
  skipSpace()
  const scheme = token()
  if (!scheme) return undefined
  const params: Record<string, string> = Object.create(null)
  skipSpace()
  while (i < header.length) {
    const key = token()
    if (!key) return undefined
    skipSpace()
    if (header[i] !== '=') {
      // `Bearer realm="a", Basic realm="b"`: a second challenge starts; the first one is complete.
      if (Object.keys(params).length > 0) break
      return undefined
    }
    i++
    skipSpace()
    let value: string | undefined
    if (header[i] === '"') {
      i++
      value = ''
      while (i < header.length && header[i] !== '"') {
        if (header[i] === '\\' && i + 1 < header.length) i++
        value += header[i]
        i++
      }
      if (header[i] !== '"') return undefined
      i++
    } else {
      value = token()
      if (value === undefined) return undefined
    }
    params[key.toLowerCase()] = value
    skipSpace()
    if (i < header.length) {
      if (header[i] !== ',') return undefined
      i++
      skipSpace()
    }
  }
  return { scheme: scheme.toLowerCase(), params }
}
