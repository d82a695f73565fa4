import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely'
import type { ApiKeyScope } from '../src/api-key-settings.ts'
import type { EventType } from './queries/events.ts'

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>

export interface OrganizationsTable {
  id: string
  slug: string
  name: string
  plan: Generated<string>
  status: Generated<'active' | 'suspended'>
  app_url: string | null
  /** the org's budget per API key (§9); both null: the service default */
  rate_limit_max: number | null
  rate_limit_window_seconds: number | null
  created_at: Timestamp
  updated_at: Timestamp
}

export interface UsersTable {
  id: string
  email: string
  name: string
  role: Generated<string>
  is_email_verified: Generated<boolean>
  password_hash: string
  created_at: Timestamp
  updated_at: Timestamp
}

export interface MembershipsTable {
  id: string
  org_id: string
  user_id: string
  role: Generated<'org_admin' | 'member'>
  status: Generated<'active' | 'suspended'>
  joined_at: Timestamp
  updated_at: Timestamp
}

export interface SessionsTable {
  id: string
  org_id: string
  user_id: string
  created_at: Timestamp
  expires_at: Timestamp
  revoked_at: NullableTimestamp
  revoked_reason: string | null
  ip: string | null
  user_agent: string | null
}

export interface RefreshTokensTable {
  token_hash: string
  session_id: string
  created_at: Timestamp
  expires_at: Timestamp
  used_at: NullableTimestamp
}

export interface ApiKeysTable {
  id: string
  org_id: string
  name: string
  prefix: string
  key_hash: string
  created_by: string | null
  created_at: Timestamp
  expires_at: NullableTimestamp
  last_used_at: NullableTimestamp
  revoked_at: NullableTimestamp
  revoked_by: string | null
  description: string | null
  scopes: ColumnType<ApiKeyScope[], ApiKeyScope[] | undefined, ApiKeyScope[]>
  /** the key's own budget (§9); both null: the org's, else the service default */
  rate_limit_max: number | null
  rate_limit_window_seconds: number | null
  /** normalised addresses and CIDR blocks; empty: any address */
  allowed_ips: ColumnType<string[], string[] | undefined, string[]>
  rotated_from_id: string | null
  rotated_to_id: string | null
  created_by_type: Generated<'user' | 'admin' | 'system'>
}

export interface AuditEventsTable {
  id: string
  org_id: string | null
  type: string
  actor_type: 'user' | 'admin' | 'system'
  actor_id: string | null
  actor_email: string | null
  target_type: string
  target_id: string
  data: ColumnType<Record<string, unknown>, string | undefined, string>
  /** the client address of the request that caused the event, or null */
  ip: string | null
  created_at: Timestamp
}

/** Counts are bigint: pg returns them as strings, so queries cast them to int when read. */
export interface ApiKeyUsageTable {
  key_id: string
  hour: Timestamp
  total: ColumnType<string, number, number>
  success: ColumnType<string, number, number>
  client_error: ColumnType<string, number, number>
  forbidden: ColumnType<string, number, number>
  rate_limited: ColumnType<string, number, number>
  tokens_valid: ColumnType<string, number, number>
  tokens_invalid: ColumnType<string, number, number>
}

export interface WebhooksTable {
  id: string
  org_id: string
  url: string
  events: ColumnType<string[], string[], string[]>
  description: string | null
  is_active: Generated<boolean>
  /** AES-256-GCM under a key derived from the pepper (plugins/webhooks/secrets.ts), never the raw secret */
  secret_ciphertext: string
  previous_secret_ciphertext: string | null
  previous_secret_expires_at: NullableTimestamp
  created_at: Timestamp
  updated_at: Timestamp
}

export type OutboxStatus = 'pending' | 'succeeded' | 'failed'

/** The columns of an outbox table, which src/outbox-worker.ts claims, leases and settles rows by. */
interface OutboxColumns<Status extends string> {
  status: Generated<Status>
  attempts: Generated<number>
  next_attempt_at: Timestamp
  lease_id: string | null
  leased_until: NullableTimestamp
  last_attempt_at: NullableTimestamp
  last_error: string | null
}

export interface WebhookDeliveriesTable extends OutboxColumns<OutboxStatus> {
  id: string
  webhook_id: string
  org_id: string
  event_id: string
  /** a catalogue type of §10, or webhook.test (the test event of §11) */
  event_type: EventType | 'webhook.test'
  /** the exact request body */
  payload: string
  /** null: as many attempts as the retry schedule has */
  attempt_limit: number | null
  last_response_status: number | null
  created_at: Timestamp
}

export interface InvitesTable {
  id: string
  org_id: string
  /** as invited, trimmed and lower-cased */
  email: string
  role: 'org_admin' | 'member'
  /** 'pending' until accepted or revoked; 'expired' once the email is invited again after it lapsed */
  status: Generated<'pending' | 'accepted' | 'revoked' | 'expired'>
  /** SHA-256 hex of the current token; a resend replaces it */
  token_hash: string
  /** how the current token was delivered: by mail, or in the API answer (no mailer) */
  delivery: 'email' | 'api'
  invited_by: string
  expires_at: Timestamp
  created_at: Timestamp
  updated_at: Timestamp
  accepted_at: NullableTimestamp
  accepted_by: string | null
  revoked_at: NullableTimestamp
  revoked_by: string | null
}

/** The outbox of invitation mail. */
export interface MailOutboxTable extends OutboxColumns<OutboxStatus | 'cancelled'> {
  id: string
  org_id: string
  invite_id: string
  recipient: string
  /** the invitation token, sealed (AES-256-GCM); null once the row is no longer pending */
  sealed_token: string | null
  created_at: Timestamp
  sent_at: NullableTimestamp
}

export interface Database {
  organizations: OrganizationsTable
  users: UsersTable
  memberships: MembershipsTable
  sessions: SessionsTable
  refresh_tokens: RefreshTokensTable
  api_keys: ApiKeysTable
  audit_events: AuditEventsTable
  api_key_usage: ApiKeyUsageTable
  webhooks: WebhooksTable
  webhook_deliveries: WebhookDeliveriesTable
  invites: InvitesTable
  mail_outbox: MailOutboxTable
}

export type OrganizationRow = Selectable<OrganizationsTable>
export type NewOrganization = Insertable<OrganizationsTable>
export type OrganizationUpdate = Updateable<OrganizationsTable>
export type UserRow = Selectable<UsersTable>
export type MembershipRow = Selectable<MembershipsTable>
export type SessionRow = Selectable<SessionsTable>
export type ApiKeyRow = Selectable<ApiKeysTable>
export type WebhookRow = Selectable<WebhooksTable>
export type WebhookDeliveryRow = Selectable<WebhookDeliveriesTable>
export type NewApiKey = Insertable<ApiKeysTable>
export type ApiKeyUpdate = Updateable<ApiKeysTable>
export type InviteRow = Selectable<InvitesTable>
export type MailOutboxRow = Selectable<MailOutboxTable>
