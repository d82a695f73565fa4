import type { Migration, MigrationProvider } from 'kysely'
import * as initial from './20261129T0800_initial.ts'
import * as auditLog from './20261130T1000_audit_log.ts'
import * as apiKeySettings from './20261130T1010_api_key_settings.ts'
import * as auditIndexes from './20261130T1100_audit_indexes.ts'
import * as webhooks from './20261130T1200_webhooks.ts'
import * as invites from './20261130T1300_invites.ts'
import * as apiKeyUsage from './20261130T1400_api_key_usage.ts'
import * as auditEventsWithoutOrgFkey from './20261130T1500_audit_events_without_org_fkey.ts'
import * as auditOrgTypeActor from './20261130T1800_audit_org_type_actor.ts'
import * as auditTargetOrg from './20261130T1810_audit_target_org.ts'
import * as auditOrgActor from './20261130T2300_audit_org_actor.ts'

// Listed statically so migrations load the same under tsx, tests and any bundler.
// Names sort by time; append new ones, never edit old ones.
export const migrations: Record<string, Migration> = {
  '20261129T0800_initial': initial,
  '20261130T1000_audit_log': auditLog,
  '20261130T1010_api_key_settings': apiKeySettings,
  '20261130T1100_audit_indexes': auditIndexes,
  '20261130T1200_webhooks': webhooks,
  '20261130T1300_invites': invites,
  '20261130T1400_api_key_usage': apiKeyUsage,
  '20261130T1500_audit_events_without_org_fkey': auditEventsWithoutOrgFkey,
  '20261130T1800_audit_org_type_actor': auditOrgTypeActor,
  '20261130T1810_audit_target_org': auditTargetOrg,
  '20261130T2300_audit_org_actor': auditOrgActor
}

export const migrationProvider: MigrationProvider = {
  async getMigrations () { return migrations }
}
