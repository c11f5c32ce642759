// JSON.parse keeps the last of two equal keys, other parsers the first or neither: a signed
// payload with a duplicate key means different things to different readers, so it must mean
// nothing to us. JSON.parse cannot tell (the duplicate is gone by then), hence this scan.

/**
 * The first key that occurs twice in one object of `text`, compared after unescaping
 * (`"a-b"` and `"a\u002db"` are one key); `undefined` when there is none. Iterative, linear in
 * the text: meant for text JSON.parse has already accepted (on anything else the answer is moot).
 */
export function firstDuplicateKey(text: string): string | undefined {
  /** One entry per open container: the keys seen so far in an object, `null` for an array. */
  const open: (Set<string> | null)[] = []
  let expectingKey = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22 /* " */) {
      let end = i + 1
      let escaped = false
      while (end < text.length && text.charCodeAt(end) !== 0x22) {
        if (text.charCodeAt(end) === 0x5c /* \ */) {
          escaped = true
          end++
        }
        end++
      }
      const keys = open.at(-1)
      if (expectingKey && keys) {
        const raw = text.slice(i, end + 1)
        const key = escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1)
        if (keys.has(key)) return key
        keys.add(key)
        expectingKey = false
      }
      i = end
    } else if (c === 0x7b /* { */) {
      open.push(new Set())
      expectingKey = true
    } else if (c === 0x5b /* [ */) {
      open.push(null)
      expectingKey = false
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      open.pop()
      expectingKey = false
    } else if (c === 0x2c /* , */) {
      expectingKey = open.at(-1) != null
    }
  }
  return undefined
}
