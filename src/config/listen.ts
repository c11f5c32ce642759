// `HOST:PORT` listen addresses (validated by the schema's pattern) split for node's listen();
// `[::1]:5000` loses its brackets.
export function splitHostPort(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':')
  return { host: listen.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(listen.slice(i + 1)) }
}
