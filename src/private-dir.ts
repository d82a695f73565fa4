import { chmodSync, lstatSync, mkdirSync, readdirSync } from 'node:fs'
import { join } from 'node:path'

export interface MadePrivate { path: string, mode: number }

/**
 * DATA_DIR holds the embedded database (emails and password hashes, in its tables and its WAL) and
 * the generated secrets: nobody but the service's user may read any of it. From this call on the
 * process creates files for its user only (umask 077: PGlite writes its files with 0644 otherwise),
 * and whatever is already in the directory and readable by others (an earlier version's files, a
 * copied secrets.json) is made private. Returns what it changed, with the mode it had.
 */
export function makePrivateDir (dir: string): MadePrivate[] {
  process.umask(0o077)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const changed: MadePrivate[] = []
  const visit = (path: string): void => {
    const stat = lstatSync(path)
    if (stat.isSymbolicLink()) return
    if ((stat.mode & 0o077) !== 0) {
      chmodSync(path, stat.mode & 0o700)
      changed.push({ path, mode: stat.mode & 0o777 })
    }
    if (stat.isDirectory()) for (const entry of readdirSync(path)) visit(join(path, entry))
  }
  visit(dir)
  return changed
}
