// Addresses an upstream redirect must not lead to when `refusePrivateRedirects` is set:
// loopback, private ranges, link-local (cloud metadata at 169.254.169.254), unique-local, unspecified.
import { BlockList, isIP } from 'node:net'
import { lookup } from 'node:dns/promises'
import { lookup as lookupCallback, type LookupAddress, type LookupOptions } from 'node:dns'

const blocked = new BlockList()
for (const [net, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
  ['172.16.0.0', 12], ['192.168.0.0', 16], ['198.18.0.0', 15],
] as const) blocked.addSubnet(net, prefix, 'ipv4')
for (const [net, prefix] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['::ffff:0:0', 96]] as const) {
  blocked.addSubnet(net, prefix, 'ipv6')
}

export function isPrivateAddress(address: string): boolean {
  const family = isIP(address)
  if (family === 0) return false
  return blocked.check(address, family === 4 ? 'ipv4' : 'ipv6')
}

/** True when the host is, or resolves to, any private address. */
export async function resolvesToPrivate(hostname: string): Promise<boolean> {
  const host = hostname.replace(/^\[|\]$/g, '')
  if (isIP(host)) return isPrivateAddress(host)
  if (host === 'localhost' || host.endsWith('.localhost')) return true
  const addresses = await lookup(host, { all: true })
  return addresses.some((a) => isPrivateAddress(a.address))
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void

/**
 * A DNS lookup for the connections themselves (undici `connect.lookup`): any host but `ownHost`
 * that resolves to a private address fails at connect time. Checking names before a request is
 * not enough: the name could resolve differently a moment later (DNS rebinding).
 */
export function privateRefusingLookup(ownHost: string) {
  return function lookupRefusingPrivate(hostname: string, options: LookupOptions, callback: LookupCallback): void {
    lookupCallback(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, [])
      const list = addresses as LookupAddress[]
      if (hostname !== ownHost && list.some((a) => isPrivateAddress(a.address))) {
        const refused: NodeJS.ErrnoException = new Error(`${hostname} resolves to a private address; refused`)
        refused.code = 'EPRIVATEADDRESS'
        return callback(refused, [])
      }
      if (options.all) return callback(null, list)
      callback(null, list[0]!.address, list[0]!.family)
    })
  }
}
