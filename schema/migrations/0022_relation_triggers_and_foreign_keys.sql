-- What changed since a batch's normal runs, beyond indexes (issue 20): a relation's triggers and
-- foreign keys. An audit trigger added to a table the batch writes, or a foreign key whose
-- checks now run for each row it inserts (or, on the referenced side, for each row it deletes),
-- make the same statements slower at the same work. NULL in rows read before this column
-- existed: unknown, never a change.
ALTER TABLE telemetry.relation_states ADD COLUMN IF NOT EXISTS triggers jsonb;     -- [{name, table, definition, enabled}], by name
ALTER TABLE telemetry.relation_states ADD COLUMN IF NOT EXISTS foreign_keys jsonb; -- [{name, table, references, definition}]: its own and those referencing it
-- An index's and a trigger's definitions are deparsed with their table opened: they are not
-- read (NULL: unknown) while another session holds or awaits ACCESS EXCLUSIVE on the table.
ALTER TABLE telemetry.relation_states ALTER COLUMN indexes DROP NOT NULL;
