-- The change log is stored once: each version's row keeps its state without the log, and the
-- log entries that version added (a JSON array). Reads rebuild the log from the rows up to the
-- version. Rows of earlier schemas are converted when the store opens (NULL: a row whose state
-- still carries its whole log, which then stands for the log up to it).
ALTER TABLE config_versions ADD COLUMN log_entries TEXT;
