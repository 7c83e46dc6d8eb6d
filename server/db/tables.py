"""Table definitions, once, as SQLAlchemy Core metadata; migrations are the history of this file.

Every index names the query it serves (module.query) so an index without a user is easy to spot;
`GET /api/admin/db` lists indexes the database reports as unused. Lists are paginated by keyset
(`id`/`offset` comparisons), never OFFSET, so every list index ends with its ordering key.
"""

from __future__ import annotations

import sqlalchemy as sa

from server.db.types import BigId, Json, UtcDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)


def _id() -> sa.Column[int]:
    return sa.Column("id", BigId, primary_key=True, autoincrement=True)


def _user_fk(name: str = "user_id", *, nullable: bool = False, ondelete: str = "CASCADE") -> sa.Column[int]:
    return sa.Column(name, BigId, sa.ForeignKey("users.id", ondelete=ondelete), nullable=nullable)


def _created() -> sa.Column[object]:
    return sa.Column("created_at", UtcDateTime(), nullable=False)


app_meta = sa.Table(
    "app_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
)

# --- accounts ----------------------------------------------------------------------------

users = sa.Table(
    "users",
    metadata,
    _id(),
    sa.Column("username", sa.String(32), nullable=False),
    # The address the account owns: confirmed through a mailed link (or provider-verified), unique;
    # sign-in by email and reset mails use only this. Rows older than migration 0017 may hold an
    # unconfirmed one (email_verified_at NULL), claimed under the old unique rule.
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("email_verified_at", UtcDateTime(), nullable=True),
    # The address typed at sign-up, until its link is opened; not unique, so registering never
    # reveals whether an address has an account (docs: README "Accounts").
    sa.Column("pending_email", sa.String(254), nullable=True),
    sa.Column("password_hash", sa.String(255), nullable=True),  # NULL: OAuth-only or bot
    sa.Column("display_name", sa.String(64), nullable=True),
    sa.Column("avatar_url", sa.String(512), nullable=True),
    sa.Column("bio", sa.Text(), nullable=True),
    sa.Column("role", sa.String(16), nullable=False, server_default="member"),
    sa.Column("status", sa.String(16), nullable=False, server_default="active"),
    sa.Column("minecraft_username", sa.String(16), nullable=True),
    sa.Column("minecraft_uuid", sa.String(36), nullable=True),
    sa.Column("xp", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("level", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("totp_secret", sa.Text(), nullable=True),  # encrypted at rest (Fernet, SECRET_KEY)
    sa.Column("totp_enabled_at", UtcDateTime(), nullable=True),
    sa.Column("totp_last_step", sa.BigInteger(), nullable=True),  # replay protection
    sa.Column("locked_until", UtcDateTime(), nullable=True),
    sa.Column("last_seen_at", UtcDateTime(), nullable=True),
    sa.Column("dm_policy", sa.String(16), nullable=False, server_default="everyone"),
    sa.Column("rank_id", BigId, nullable=True),  # ranks.id; no foreign key: a deleted rank just stops showing
    _created(),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint("role IN ('admin','moderator','member','bot')", name="role"),
    sa.CheckConstraint("status IN ('active','suspended','deleted')", name="status"),
)
# serves users.by_login, users.username_taken: case-insensitive unique lookups
sa.Index("uq_users_username_lower", sa.func.lower(users.c.username), unique=True)
sa.Index("uq_users_email_lower", sa.func.lower(users.c.email), unique=True)
sa.Index("uq_users_minecraft_uuid", users.c.minecraft_uuid, unique=True)
sa.Index("ix_users_xp", users.c.xp)  # serves leaderboard.all_time (embedded mode, and rebuilding Redis's)

oauth_accounts = sa.Table(
    "oauth_accounts",
    metadata,
    _id(),
    _user_fk(),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("provider_user_id", sa.String(255), nullable=False),
    sa.Column("email", sa.String(254), nullable=True),
    _created(),
    sa.UniqueConstraint("provider", "provider_user_id"),  # serves oauth.by_provider_id
)
sa.Index("ix_oauth_accounts_user_id", oauth_accounts.c.user_id)  # serves oauth.for_user

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # public id; also the refresh-token family
    _user_fk(),
    _created(),
    sa.Column("last_active_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
    sa.Column("revoked_reason", sa.String(32), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("user_agent", sa.String(512), nullable=True),
    sa.Column("device", sa.String(64), nullable=True),
    sa.Column("mfa", sa.Boolean(), nullable=False, server_default=sa.false()),
)
# serves sessions.for_user (list, revoke all others), ordered by recency
sa.Index("ix_sessions_user_id_created_at", sessions.c.user_id, sessions.c.created_at)
sa.Index("ix_sessions_expires_at", sessions.c.expires_at)  # serves maintenance.expired_sessions

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    _id(),
    sa.Column("session_id", sa.String(32), sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),
    _created(),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Column("used_at", UtcDateTime(), nullable=True),
    sa.UniqueConstraint("token_hash"),  # serves sessions.refresh_by_hash (session lookup)
)
sa.Index("ix_refresh_tokens_session_id", refresh_tokens.c.session_id)

login_attempts = sa.Table(
    "login_attempts",
    metadata,
    _id(),
    _user_fk(nullable=True, ondelete="SET NULL"),
    sa.Column("login", sa.String(254), nullable=False),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("success", sa.Boolean(), nullable=False),
    _created(),
)
# serves lockout.failures_for_user and lockout.failures_for_ip within a window
sa.Index("ix_login_attempts_user_id_created_at", login_attempts.c.user_id, login_attempts.c.created_at)
sa.Index("ix_login_attempts_ip_created_at", login_attempts.c.ip, login_attempts.c.created_at)
sa.Index("ix_login_attempts_login_created_at", login_attempts.c.login, login_attempts.c.created_at)

lockouts = sa.Table(
    "lockouts",
    metadata,
    _id(),
    _user_fk(nullable=True),
    sa.Column("login", sa.String(254), nullable=True),  # unknown accounts lock by the name tried
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("locked_until", UtcDateTime(), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    _created(),
)
sa.Index("ix_lockouts_user_id_locked_until", lockouts.c.user_id, lockouts.c.locked_until)
sa.Index("ix_lockouts_login_locked_until", lockouts.c.login, lockouts.c.locked_until)
sa.Index("ix_lockouts_ip_locked_until", lockouts.c.ip, lockouts.c.locked_until)

user_tokens = sa.Table(  # single-use mailed tokens: password reset, email verification
    "user_tokens",
    metadata,
    _id(),
    _user_fk(),
    sa.Column("purpose", sa.String(16), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),
    _created(),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Column("used_at", UtcDateTime(), nullable=True),
    sa.UniqueConstraint("token_hash"),  # serves tokens.by_hash
    sa.CheckConstraint("purpose IN ('reset','verify')", name="purpose"),
)
sa.Index("ix_user_tokens_user_id", user_tokens.c.user_id)
sa.Index("ix_user_tokens_expires_at", user_tokens.c.expires_at)  # serves maintenance.expired_tokens

recovery_codes = sa.Table(
    "recovery_codes",
    metadata,
    _id(),
    _user_fk(),
    sa.Column("code_hash", sa.String(255), nullable=False),
    _created(),
    sa.Column("used_at", UtcDateTime(), nullable=True),
)
sa.Index("ix_recovery_codes_user_id", recovery_codes.c.user_id)  # serves mfa.recovery_codes

bots = sa.Table(
    "bots",
    metadata,
    _id(),
    _user_fk(),  # the bot's own account (role 'bot')
    _user_fk("owner_id", nullable=True, ondelete="SET NULL"),
    sa.Column("name", sa.String(32), nullable=False),
    sa.Column("scopes", Json, nullable=False),
    _created(),
    sa.UniqueConstraint("user_id"),
)
sa.Index("uq_bots_name_lower", sa.func.lower(bots.c.name), unique=True)

bot_tokens = sa.Table(
    "bot_tokens",
    metadata,
    _id(),
    sa.Column("bot_id", BigId, sa.ForeignKey("bots.id", ondelete="CASCADE"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),
    _created(),
    sa.Column("last_used_at", UtcDateTime(), nullable=True),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
    sa.UniqueConstraint("token_hash"),  # serves bots.by_token_hash
)
sa.Index("ix_bot_tokens_bot_id", bot_tokens.c.bot_id)

# --- community -----------------------------------------------------------------------------

channels = sa.Table(
    "channels",
    metadata,
    _id(),
    sa.Column("name", sa.String(160), nullable=False),  # full channel name: "room:general"
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("title", sa.String(120), nullable=True),
    sa.Column("topic", sa.Text(), nullable=True),
    sa.Column("parent_id", BigId, sa.ForeignKey("channels.id", ondelete="CASCADE"), nullable=True),
    _user_fk("owner_id", nullable=True, ondelete="SET NULL"),
    sa.Column("last_offset", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("slow_mode_seconds", sa.Integer(), nullable=False, server_default="0"),  # 0: off
    _created(),
    sa.Column("archived_at", UtcDateTime(), nullable=True),
    sa.UniqueConstraint("name"),  # serves channels.by_name
    sa.CheckConstraint("kind IN ('room','private_room','dm','thread')", name="kind"),
)
sa.Index("ix_channels_parent_id_id", channels.c.parent_id, channels.c.id)  # serves forum.threads

channel_members = sa.Table(
    "channel_members",
    metadata,
    sa.Column("channel_id", BigId, sa.ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False, server_default="member"),
    sa.Column("muted_until", UtcDateTime(), nullable=True),
    sa.Column("last_read_offset", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("joined_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint("role IN ('owner','moderator','member')", name="role"),
)
# serves channels.for_user (room list with unread counts)
sa.Index("ix_channel_members_user_id_channel_id", channel_members.c.user_id, channel_members.c.channel_id)

messages = sa.Table(
    "messages",
    metadata,
    _id(),
    sa.Column("channel_id", BigId, sa.ForeignKey("channels.id", ondelete="CASCADE"), nullable=False),
    sa.Column("offset", sa.BigInteger(), nullable=False),
    _user_fk("author_id", nullable=True, ondelete="SET NULL"),
    sa.Column("body", sa.Text(), nullable=True),
    sa.Column("data", Json, nullable=True),
    sa.Column("reply_to_id", BigId, nullable=True),
    sa.Column("nonce", sa.String(64), nullable=True),
    _created(),
    sa.Column("edited_at", UtcDateTime(), nullable=True),
    sa.Column("deleted_at", UtcDateTime(), nullable=True),
    sa.Column("revision", sa.BigInteger(), nullable=False, server_default="0"),  # offset of the last event on it
    # serves messages.history_page / history_since: keyset by (channel, offset)
    sa.UniqueConstraint("channel_id", "offset"),
)
sa.Index("ix_messages_created_at", messages.c.created_at)  # serves maintenance.archive_batch
sa.Index("uq_messages_author_id_nonce", messages.c.author_id, messages.c.nonce, unique=True,
         postgresql_where=messages.c.nonce.isnot(None), sqlite_where=messages.c.nonce.isnot(None))

messages_archive = sa.Table(
    "messages_archive",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=False),
    sa.Column("channel_id", BigId, nullable=False),
    sa.Column("offset", sa.BigInteger(), nullable=False),
    sa.Column("author_id", BigId, nullable=True),
    sa.Column("body", sa.Text(), nullable=True),
    sa.Column("data", Json, nullable=True),
    sa.Column("reply_to_id", BigId, nullable=True),
    sa.Column("nonce", sa.String(64), nullable=True),
    _created(),
    sa.Column("edited_at", UtcDateTime(), nullable=True),
    sa.Column("deleted_at", UtcDateTime(), nullable=True),
    sa.Column("revision", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("archived_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("channel_id", "offset"),  # serves messages.history_page past the archive age
)

message_edits = sa.Table(  # what a message said before each edit or delete: for moderators
    "message_edits",
    metadata,
    _id(),
    sa.Column("message_id", BigId, sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    _user_fk("editor_id", nullable=True, ondelete="SET NULL"),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("data", Json, nullable=True),
    _created(),
    sa.CheckConstraint("action IN ('edit','delete')", name="action"),
)
sa.Index("ix_message_edits_message_id", message_edits.c.message_id)  # serves messages.edits

reactions = sa.Table(
    "reactions",
    metadata,
    sa.Column("message_id", BigId, sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("emoji", sa.String(32), primary_key=True),
    _created(),
)

notifications = sa.Table(
    "notifications",
    metadata,
    _id(),
    _user_fk(),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(160), nullable=True),
    sa.Column("message_offset", sa.BigInteger(), nullable=True),
    sa.Column("actor_id", BigId, nullable=True),
    sa.Column("data", Json, nullable=False),
    _created(),
    sa.Column("read_at", UtcDateTime(), nullable=True),
)
# serves notifications.list (keyset by id, newest first) and maintenance.old_notifications
sa.Index("ix_notifications_user_id_id", notifications.c.user_id, notifications.c.id)
# serves notifications.unread_count: only unread rows are indexed
sa.Index("ix_notifications_unread", notifications.c.user_id,
         postgresql_where=notifications.c.read_at.is_(None),
         sqlite_where=notifications.c.read_at.is_(None))
sa.Index("ix_notifications_created_at", notifications.c.created_at)

push_subscriptions = sa.Table(
    "push_subscriptions",
    metadata,
    _id(),
    _user_fk(),
    sa.Column("endpoint", sa.String(1024), nullable=False),
    sa.Column("p256dh", sa.String(255), nullable=False),
    sa.Column("auth", sa.String(255), nullable=False),
    sa.Column("user_agent", sa.String(512), nullable=True),
    _created(),
    sa.Column("last_success_at", UtcDateTime(), nullable=True),
    sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
    sa.UniqueConstraint("endpoint"),
)
sa.Index("ix_push_subscriptions_user_id", push_subscriptions.c.user_id)  # serves push.for_user

friendships = sa.Table(  # one row per direction once accepted: friends-of-user is one range scan
    "friendships",
    metadata,
    sa.Column("user_id", BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("friend_id", BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    _created(),
    sa.Column("accepted_at", UtcDateTime(), nullable=True),
    sa.CheckConstraint("status IN ('pending','accepted','blocked')", name="status"),
    sa.CheckConstraint("user_id <> friend_id", name="not_self"),
)
# serves friends.incoming and blocks.between: rows pointing at a user, by status
sa.Index("ix_friendships_friend_id_status", friendships.c.friend_id, friendships.c.status)

sanctions = sa.Table(  # mutes and bans: channel_id NULL is site-wide, until NULL permanent
    "sanctions",
    metadata,
    _id(),
    sa.Column("kind", sa.String(8), nullable=False),
    _user_fk(),
    sa.Column("channel_id", BigId, sa.ForeignKey("channels.id", ondelete="CASCADE"), nullable=True),
    sa.Column("until", UtcDateTime(), nullable=True),
    sa.Column("reason", sa.String(500), nullable=False),
    _user_fk("created_by", nullable=True, ondelete="SET NULL"),
    _created(),
    sa.Column("lifted_at", UtcDateTime(), nullable=True),
    _user_fk("lifted_by", nullable=True, ondelete="SET NULL"),
    sa.CheckConstraint("kind IN ('mute','ban')", name="kind"),
)
sa.Index("ix_sanctions_user_id_lifted_at", sanctions.c.user_id, sanctions.c.lifted_at)  # serves sanctions.active

reports = sa.Table(  # members reporting a message or a member; moderators work the open ones
    "reports",
    metadata,
    _id(),
    _user_fk("reporter_id", nullable=True, ondelete="SET NULL"),
    _user_fk("target_user_id", nullable=True, ondelete="SET NULL"),
    sa.Column("channel_id", BigId, sa.ForeignKey("channels.id", ondelete="CASCADE"), nullable=True),
    sa.Column("message_offset", sa.BigInteger(), nullable=True),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="open"),
    sa.Column("resolution", sa.String(16), nullable=True),
    _user_fk("resolved_by", nullable=True, ondelete="SET NULL"),
    sa.Column("resolved_at", UtcDateTime(), nullable=True),
    _created(),
    sa.CheckConstraint("status IN ('open','resolved')", name="status"),
)
sa.Index("ix_reports_status_id", reports.c.status, reports.c.id)  # serves reports.queue

xp_transactions = sa.Table(  # the truth of XP: one row per award, idempotent per (user, action, source)
    "xp_transactions",
    metadata,
    _id(),
    _user_fk(),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("source_id", sa.String(64), nullable=False),
    sa.Column("amount", sa.Integer(), nullable=False),
    _created(),
    sa.UniqueConstraint("user_id", "action", "source_id"),  # serves xp.award (idempotency) and daily caps
)
sa.Index("ix_xp_transactions_created_at_user_id", xp_transactions.c.created_at, xp_transactions.c.user_id)

ranks = sa.Table(  # donor ranks and the like: shown beside names, assigned by admins
    "ranks",
    metadata,
    _id(),
    sa.Column("name", sa.String(32), nullable=False),
    sa.Column("colour", sa.String(7), nullable=False),
    sa.Column("badge", sa.String(16), nullable=True),
    _created(),
    sa.UniqueConstraint("name"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    _id(),
    _user_fk("actor_id", nullable=True, ondelete="SET NULL"),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target_type", sa.String(32), nullable=True),
    sa.Column("target_id", sa.String(64), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("data", Json, nullable=True),
    _created(),
)
sa.Index("ix_audit_log_actor_id_id", audit_log.c.actor_id, audit_log.c.id)  # serves audit.for_actor

error_events = sa.Table(  # grouped by fingerprint (type + location); counts and a sample
    "error_events",
    metadata,
    _id(),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # server | client
    sa.Column("error_type", sa.String(128), nullable=False),
    sa.Column("location", sa.String(255), nullable=True),
    sa.Column("message", sa.Text(), nullable=True),
    sa.Column("sample", Json, nullable=True),
    sa.Column("count", sa.BigInteger(), nullable=False, server_default="1"),
    sa.Column("first_seen", UtcDateTime(), nullable=False),
    sa.Column("last_seen", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("fingerprint"),  # serves errors.record (upsert)
)
sa.Index("ix_error_events_last_seen", error_events.c.last_seen)  # serves errors.list

maintenance_runs = sa.Table(
    "maintenance_runs",
    metadata,
    _id(),
    sa.Column("task", sa.String(32), nullable=False),
    sa.Column("instance", sa.String(64), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("finished_at", UtcDateTime(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("counts", Json, nullable=True),
)
sa.Index("ix_maintenance_runs_task_id", maintenance_runs.c.task, maintenance_runs.c.id)

# The community areas keep their tables in their own modules, registered on this metadata; imported
# here so that anything that reads `metadata` (migrations' checks, reports) sees every table.
from server.db import (  # noqa: E402, F401
    tables_feed,
    tables_forum,
    tables_groups,
    tables_linking,
    tables_minecraft,
    tables_passkeys,
)
