-- Group calls (Segment's `group`): the account or company a user belongs to, for B2B shops.
--
-- The id is a column of the events table, empty for every other type, like `event` for
-- anything but track events; the group's traits are the event's `traits`. No new table: a
-- group call is an event of the user's journey, and the account's latest traits are
-- `argMax(traits, timestamp)` over its group events.
ALTER TABLE {database}.events ADD COLUMN IF NOT EXISTS group_id String DEFAULT '';
