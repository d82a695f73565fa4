/**
 * Strings the stores cannot hold: PostgreSQL's text and jsonb refuse U+0000, and a lone UTF-16
 * surrogate (half of a pair, "\ud800") is no Unicode character at all — PostgreSQL's json input
 * refuses it (a 500 on the audit row), and the embedded database stores it as U+FFFD, silently
 * changing what the client sent. §1: refused with 400 validation_failed naming the field.
 */
// In a /u regular expression a surrogate pair is one code point, so the range matches only lone halves.
// eslint-disable-next-line no-control-regex -- U+0000 is exactly what this looks for
const UNSTORABLE = /[\u0000\ud800-\udfff]/u

export function isStorable (value: string): boolean {
  return !UNSTORABLE.test(value)
}

export const NOT_STORABLE = 'must not contain U+0000 or a lone surrogate (an unpaired \\ud800-\\udfff)'

/**
 * The path (`name`, `items.2.label`) of the first string or property name in a parsed value the
 * stores cannot hold, or null. `prefix` is where the value came from (`body`, `querystring`).
 */
export function unstorablePath (value: unknown, prefix: string): string | null {
  if (typeof value === 'string') return isStorable(value) ? null : prefix
  if (typeof value !== 'object' || value === null) return null
  for (const [key, item] of Object.entries(value)) {
    const path = `${prefix}.${isStorable(key) ? key : JSON.stringify(key)}`
    if (!isStorable(key)) return path
    const found = unstorablePath(item, path)
    if (found !== null) return found
  }
  return null
}
