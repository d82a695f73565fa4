import type { Migration, MigrationProvider } from 'kysely'
import * as initial from './20261129T0800_initial.ts'

// Listed statically so migrations load the same under tsx, tests and any bundler.
// Names sort by time; append new ones, never edit old ones.
export const migrations: Record<string, Migration> = {
  '20261129T0800_initial': initial
}

export const migrationProvider: MigrationProvider = {
  async getMigrations () { return migrations }
}
