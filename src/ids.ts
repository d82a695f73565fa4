import { monotonicFactory } from 'ulid'

export type IdPrefix = 'usr' | 'org' | 'mem' | 'key' | 'ses' | 'evt' | 'inv' | 'wh' | 'del' | 'mail'

const nextUlid = monotonicFactory()

/** A prefixed, time-sortable id: `usr_01J…` (ULID body, monotonic within a millisecond). */
export function newId (prefix: IdPrefix): string {
  return `${prefix}_${nextUlid()}`
}

/** The shape of an id of that kind; used to reject malformed ids without a query. */
export function idPattern (prefix: IdPrefix): string {
  return `^${prefix}_[0-9A-HJKMNP-TV-Z]{26}$`
}
