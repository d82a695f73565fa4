import type { EventPosition } from '../db/queries/events.ts'

// A cursor is the position of the last event of a page, made opaque: base64url of
// "<time to the microsecond>|<id>". Clients pass it back untouched; a forged one can only name a
// position, and every page is still filtered by what the caller may see.
const POSITION = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z)\|([a-z]{2,5}_[0-9A-Za-z]{1,40})$/

export function encodeCursor (position: EventPosition): string {
  return Buffer.from(`${position.createdAt}|${position.id}`).toString('base64url')
}

/** The position a cursor holds, or null for anything this API did not make. */
export function decodeCursor (cursor: string): EventPosition | null {
  const match = POSITION.exec(Buffer.from(cursor, 'base64url').toString('latin1'))
  if (match === null || Number.isNaN(Date.parse(match[1]))) return null
  return { createdAt: match[1], id: match[2] }
}
