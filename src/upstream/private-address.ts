// Addresses an upstream redirect, token realm or connection must not lead to when
// `refusePrivateRedirects` is set. Threat: SSRF — a hostile upstream redirecting the proxy to
// loopback, the cluster network or cloud metadata (169.254.169.254), directly or through a
// spelling that reaches a private host anyway (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo).
// Rule: only global unicast passes. IPv4 must be ipaddr.js `unicast` (which leaves out private,
// loopback, link-local, CGNAT, multicast, broadcast, reserved 240/4, 192.0.0.0/24, benchmarking,
// documentation, 6to4 relay, AS112, AMT); IPv6 must lie in 2000::/3 (so ::/8 with loopback,
// unspecified, mapped, compatible and NAT64, 100::/64 discard, fc00::/7, fe80::/10, fec0::/10 and
// ff00::/8 are all outside) and be ipaddr.js `unicast` there (not 6to4, Teredo, documentation,
// ORCHID, benchmarking, AMT, AS112). The extra tables cover what a library version may miss.
import ipaddr from 'ipaddr.js'
import { BlockList, isIP } from 'node:net'
import { lookup } from 'node:dns/promises'
import { lookup as lookupCallback, type LookupAddress, type LookupOptions } from 'node:dns'

const extra = new BlockList()
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  extra.addSubnet(net, prefix, 'ipv4')
const globalUnicast6 = new BlockList()
globalUnicast6.addSubnet('2000::', 3, 'ipv6')
const extra6 = new BlockList()
for (const [net, prefix] of [
  ['2001::', 23],
  ['2001:db8::', 32],
  ['2002::', 16],
  ['3fff::', 20],
] as const)
  extra6.addSubnet(net, prefix, 'ipv6')

/** True for every address that is not global unicast (see the module comment); false for a non-address. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address)
  if (family === 0) return false
  let parsed: ipaddr.IPv4 | ipaddr.IPv6
  try {
    parsed = ipaddr.parse(address)
  } catch {
    return true // Node calls it an address and the library cannot read it: fail closed.
  }
  if (parsed.kind() === 'ipv4') return parsed.range() !== 'unicast' || extra.check(parsed.toString(), 'ipv4')
  const normal = (parsed as ipaddr.IPv6).toNormalizedString().replace(/%.*$/, '')
  if (!globalUnicast6.check(normal, 'ipv6')) return true
  return parsed.range() !== 'unicast' || extra6.check(normal, 'ipv6')
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
